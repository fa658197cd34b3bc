"""Standard (non-portfolio) option margin and the option trading fee.

Formulas from ``docs/margin-rules.md``:

* ``deribit`` — Deribit standard margin for coin-settled (inverse) options, §7.3 [DB8], in coin
  per 1-coin option (``U`` underlying mark in USD, ``mark`` option mark in coin):

  - short call: ``IM = max(0.15 − OTM/U, 0.10) + mark``, ``MM = 0.075 + mark``;
  - short put: ``MM = max(0.075, 0.075·mark) + mark``,
    ``IM = max(max(0.15 − OTM/U, 0.10) + mark, MM)``;
  - ``OTM_call = max(0, K − U)``, ``OTM_put = max(0, U − K)``.

* ``linear`` — the same form for quote-settled options, multiplied by ``U`` (Bit.com USD/USDT
  margined options, §7.3 [X14]), in quote per 1 unit: ``IM_call = max(0.15U − OTM, 0.10U) + mark``,
  ``MM_call = 0.075U + mark``, ``MM_put = max(0.075U, 0.075·mark) + mark``,
  ``IM_put = max(max(0.15U − OTM, 0.10U) + mark, MM_put)``.

* ``bybit`` — Bybit USDC options, §5.4 [BY8][BY9]:
  ``MM = max(f·U, f·mark) + mark + liquidation_fee_rate·U`` (``U`` = index);
  ``IM = max(max(0.15U − OTM, 0.10U) + mark, MM)`` from the older help text, whose exact bracket
  placement is garbled in the source (⚠); the text's ``max(AvgPrice, Mark)`` is taken as the mark
  (no entry price here) and its ``+ fee − premium`` order-level terms are left to the caller.

Long options need no margin (the premium is paid up front). Amounts are for the whole position,
``|qty| × contract_size`` units of the underlying, in the option's settle currency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from backtester.errors import ConfigError
from backtester.margin import kernel

if TYPE_CHECKING:
    from backtester.instruments import Instrument
    from backtester.margin.profile import Profile

__all__ = [
    "DEFAULT_BYBIT_LIQUIDATION_FEE_RATE",
    "DEFAULT_BYBIT_MAINTENANCE_RATE",
    "DEFAULT_MAINTENANCE_RATE",
    "OptionRequirement",
    "OptionStyle",
    "default_maintenance_rate",
    "option_fee",
    "option_requirement",
    "option_requirements",
    "style_for_profile",
]

OptionStyle = Literal["deribit", "linear", "bybit"]

#: Deribit / Bit.com short-option maintenance rate (fraction of the underlying) [DB8][X14].
DEFAULT_MAINTENANCE_RATE = 0.075
#: Bybit short-option maintenance rate ``f``: the 3 % of the worked example [BY9] (dated example).
DEFAULT_BYBIT_MAINTENANCE_RATE = 0.03
#: Bybit liquidation fee rate of the worked example, 0.2 % of the index [BY9] (dated example).
DEFAULT_BYBIT_LIQUIDATION_FEE_RATE = 0.002


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionRequirement:
    """Initial and maintenance margin of one option position.

    Parameters
    ----------
    initial_margin, maintenance_margin
        Whole-position amounts in the option's settle currency (coin for ``deribit``, quote for
        ``linear``/``bybit``); zero for long positions.
    """

    initial_margin: float
    maintenance_margin: float


def _finite(name: str, value: float, *, positive: bool) -> None:
    if not math.isfinite(value) or (value <= 0 if positive else value < 0):
        need = "> 0" if positive else ">= 0"
        msg = f"{name} must be finite and {need}, got {value!r}"
        raise ConfigError(msg)


def option_requirements(*, style: OptionStyle, option_type: Literal["call", "put"],
                        strike: float, underlying: float, mark: float, qty: float,
                        contract_size: float = 1.0, maintenance_rate: float | None = None,
                        liquidation_fee_rate: float | None = None) -> OptionRequirement:
    """Return the standard-margin requirement of an option position.

    Parameters
    ----------
    style
        ``deribit`` (coin-settled, amounts in coin), ``linear`` (Bit.com form, quote) or
        ``bybit`` (USDC options, quote); see the module docstring for the formulas.
    option_type
        ``call`` or ``put``.
    strike, underlying
        Strike and the underlying's mark/index price, in USD (quote).
    mark
        The option's mark price per 1 unit of underlying in its premium currency (coin for
        ``deribit``, quote otherwise).
    qty
        Signed contracts: positive long (no margin), negative short.
    contract_size
        Units of underlying per contract (Deribit BTC options: 1).
    maintenance_rate
        The short-option maintenance rate: Deribit/Bit.com 0.075 by default; Bybit ``f``,
        default :data:`DEFAULT_BYBIT_MAINTENANCE_RATE`.
    liquidation_fee_rate
        Fraction of the underlying added to the maintenance margin: Bybit default
        :data:`DEFAULT_BYBIT_LIQUIDATION_FEE_RATE`; 0 for the other styles unless given.

    Returns
    -------
    OptionRequirement
        Whole-position amounts (per-unit amount × ``|qty| × contract_size``).

    Examples
    --------
    Bybit §5.4: f = 3 %, liquidation fee 0.2 %, index 30,000, mark 300, one short option:
    ``max(900, 9) + 300 + 60 = 1,260`` USDC.

    >>> r = option_requirements(style="bybit", option_type="call", strike=32_000.0,
    ...                         underlying=30_000.0, mark=300.0, qty=-1.0)
    >>> round(r.maintenance_margin, 6)
    1260.0

    Deribit short call, 2,000 OTM on U = 10,000, mark 0.02 BTC: IM = max(0.15 − 0.2, 0.10)
    + 0.02 = 0.12 BTC, MM = 0.075 + 0.02 = 0.095 BTC.

    >>> r = option_requirements(style="deribit", option_type="call", strike=12_000.0,
    ...                         underlying=10_000.0, mark=0.02, qty=-1.0)
    >>> (round(r.initial_margin, 10), round(r.maintenance_margin, 10))
    (0.12, 0.095)
    """
    if style not in ("deribit", "linear", "bybit"):
        msg = f"style must be 'deribit', 'linear' or 'bybit', got {style!r}"
        raise ConfigError(msg)
    if option_type not in ("call", "put"):
        msg = f"option_type must be 'call' or 'put', got {option_type!r}"
        raise ConfigError(msg)
    _finite("strike", strike, positive=True)
    _finite("underlying", underlying, positive=True)
    _finite("mark", mark, positive=False)
    _finite("contract_size", contract_size, positive=True)
    if not math.isfinite(qty):
        msg = f"qty must be finite, got {qty!r}"
        raise ConfigError(msg)
    if qty >= 0:
        return OptionRequirement(initial_margin=0.0, maintenance_margin=0.0)
    default_mm = DEFAULT_BYBIT_MAINTENANCE_RATE if style == "bybit" else DEFAULT_MAINTENANCE_RATE
    default_liq = DEFAULT_BYBIT_LIQUIDATION_FEE_RATE if style == "bybit" else 0.0
    mm_rate = default_mm if maintenance_rate is None else maintenance_rate
    liq_rate = default_liq if liquidation_fee_rate is None else liquidation_fee_rate
    _finite("maintenance_rate", mm_rate, positive=False)
    _finite("liquidation_fee_rate", liq_rate, positive=False)

    im, mm = kernel.short_option_margin(
        {"deribit": kernel.OSTYLE_DERIBIT, "linear": kernel.OSTYLE_LINEAR,
         "bybit": kernel.OSTYLE_BYBIT}[style], option_type == "call", strike, underlying, mark,
        abs(qty) * contract_size, mm_rate, liq_rate)
    return OptionRequirement(initial_margin=float(im), maintenance_margin=float(mm))


def option_fee(*, index: float, option_price: float, qty: float, taker_rate: float,
               cap_rate: float = 0.125, contract_size: float = 1.0) -> float:
    """Return the option trading fee ``min(taker_rate·index, cap_rate·option_price)·|size|``.

    The fee is charged on the underlying (index) but capped at a fraction of the premium
    (Bybit and Deribit: 12.5 %). Amount in the premium currency; never negative.

    Parameters
    ----------
    index
        Underlying index price (quote); for coin-quoted premiums pass 1.0 (fee in coin per coin).
    option_price
        Premium per 1 unit of underlying.
    qty
        Contracts (sign ignored).
    taker_rate, cap_rate
        Fee rate on the index and the cap as a fraction of the premium.
    contract_size
        Units of underlying per contract.

    Examples
    --------
    Bybit §5.4: 0.3 BTC call at 3,500, index 42,000, taker 0.03 %:
    ``min(12.6, 437.5) × 0.3 = 3.78`` USDC (premium 1,050, total cost 1,053.78).

    >>> round(option_fee(index=42_000.0, option_price=3_500.0, qty=0.3, taker_rate=0.0003), 10)
    3.78
    """
    for name, value in (("index", index), ("option_price", option_price),
                        ("taker_rate", taker_rate), ("cap_rate", cap_rate)):
        _finite(name, value, positive=False)
    _finite("contract_size", contract_size, positive=True)
    if not math.isfinite(qty):
        msg = f"qty must be finite, got {qty!r}"
        raise ConfigError(msg)
    return min(taker_rate * index, cap_rate * option_price) * abs(qty) * contract_size


def style_for_profile(name: str) -> OptionStyle:
    """The standard option-margin formula of a profile: ``deribit`` (coin-settled §7.3),
    ``bybit`` (USDC §5.4), else the linear Bit.com form."""
    if name == "deribit":
        return "deribit"
    if name == "bybit":
        return "bybit"
    return "linear"


def default_maintenance_rate(style: OptionStyle) -> float:
    """The short-option maintenance rate of a formula: Bybit's ``f`` or Deribit/Bit.com 7.5 %."""
    return DEFAULT_BYBIT_MAINTENANCE_RATE if style == "bybit" else DEFAULT_MAINTENANCE_RATE


def option_requirement(instrument: Instrument, qty: float, *, mark: float,
                       underlying_price: float | None, iv: float | None, ts_ms: int | None,
                       profile: Profile,
                       option_margin: Mapping[str, float] | None = None) -> OptionRequirement:
    """Standard option margin of a position for the margin calculator.

    The profile picks the formula: ``deribit`` (coin-settled, §7.3), ``bybit`` (USDC, §5.4)
    and the linear Bit.com form for the others. ``option_margin`` may override the short
    rate (``maintenance_rate``, Bybit's ``f``) and ``liquidation_fee``. ``iv`` and ``ts_ms``
    are not needed by the standard formulas (they are for portfolio margin).
    """
    del iv, ts_ms
    if underlying_price is None or instrument.strike is None or instrument.option_type is None:
        msg = f"{instrument.symbol}: options need a strike, a type and prices.underlying"
        raise ConfigError(msg)
    style = style_for_profile(profile.name)
    om = dict(option_margin or {})
    return option_requirements(style=style, option_type=instrument.option_type.value,
                               strike=float(instrument.strike), underlying=underlying_price,
                               mark=mark, qty=qty, contract_size=instrument.cs,
                               maintenance_rate=om.get("maintenance_rate"),
                               liquidation_fee_rate=om.get("liquidation_fee"))
