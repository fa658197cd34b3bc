"""The Instrument: a frozen contract specification built from a ccxt market dict.

All contract math (notional, PnL, value per point) lives here and nowhere else.

Conventions
-----------
* ``qty`` is in contracts. A positive qty is long, a negative qty short, where a signed qty is
  accepted (PnL functions).
* Linear contracts: one contract is ``contract_size`` units of the base coin; price is quote per
  base; PnL and notional are in the quote (= settle) currency.
* Inverse contracts: one contract is ``contract_size`` USD of face value; PnL and notional are in
  the base coin (= settle currency): ``pnl = qty * contract_size * (1/entry - 1/exit)``.
* Options: price is the premium per one unit of the underlying, in the settle currency (Deribit
  BTC options: BTC per 1 BTC option; linear USDC options: USDC per 1 BTC). Premium PnL is linear in
  the premium for both; the payoff at expiry is computed by :meth:`Instrument.option_payoff`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from backtester.errors import ConfigError
from backtester.instruments import math as _math
from backtester.numeric import ZERO, dec, to_money
from backtester.timeutil import parse_utc_ms

__all__ = [
    "Instrument", "InstrumentKind", "OptionType", "instrument_from_ccxt", "instrument_from_symbol",
    "is_option_symbol", "symbol_underlying",
]

#: Deribit lists perpetuals with a year-3000 expiry; anything beyond this is not a real expiry.
_FAR_FUTURE_MS = 32503680000000 - 86_400_000 * 366
_SYMBOL = re.compile(
    r"^(?P<base>[A-Z0-9]+)/(?P<quote>[A-Z0-9]+)(?::(?P<settle>[A-Z0-9]+)"
    r"(?:-(?P<date>\d{6})(?:-(?P<strike>[0-9.]+)-(?P<cp>[CP]))?)?)?$"
)


class InstrumentKind(StrEnum):
    """What kind of contract an instrument is."""

    SPOT = "spot"
    PERPETUAL = "perpetual"
    FUTURE = "future"
    OPTION = "option"


class OptionType(StrEnum):
    """Call or put."""

    CALL = "call"
    PUT = "put"


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """A tradable contract.

    Parameters
    ----------
    symbol
        ccxt unified symbol, e.g. ``BTC/USDT:USDT``, ``BTC/USD:BTC-261225-100000-C``.
    kind
        Perpetual, dated future, option (or spot).
    base, quote, settle
        Currencies; ``settle`` is the currency PnL, fees and margin are booked in.
    is_linear
        True for quote-settled contracts, False for inverse (coin-settled, USD face) contracts.
    contract_size
        Linear: base units per contract. Inverse: USD face per contract. Options: underlying
        units per contract.
    tick_size, lot_size
        Price increment and quantity increment (contracts).
    min_qty, min_notional
        Smallest order in contracts and in quote currency (0 = no limit).
    maker_rate, taker_rate
        Fee rates as fractions of notional (0.0002 = 2 bps); negative maker = rebate. ``None``
        when the instrument does not state them (a ccxt market without ``maker``/``taker``, or
        one built from the symbol grammar): a run then charges its profile's rates
        (:func:`backtester.margin.sources.resolve_fee_rates`, docs/margin.md "Fees"); the
        fee methods refuse an instrument whose rates were never set.
    expiry_ms
        Expiry time (ms UTC) for futures and options, None for perpetuals.
    strike, option_type
        Options only.
    max_leverage
        The exchange's maximum leverage for the smallest tier, if known.

    The Decimal fields (``contract_size`` to ``taker_rate``) also take ints, numeric strings
    and floats; a float is converted exactly through its shortest repr (``0.001`` becomes
    ``Decimal("0.001")``). Anything else, a non-finite number, or a negative size is a
    :class:`~backtester.errors.ConfigError` naming the field.
    """

    symbol: str
    kind: InstrumentKind
    base: str
    quote: str
    settle: str
    is_linear: bool = True
    contract_size: Decimal = Decimal(1)
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("0.001")
    min_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    maker_rate: Decimal | None = None
    taker_rate: Decimal | None = None
    expiry_ms: int | None = None
    strike: float | None = None
    option_type: OptionType | None = None
    max_leverage: float | None = None
    exchange: str = ""

    def __post_init__(self) -> None:
        for name in _EXACT_FIELDS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_FIELDS:
                continue  # a fee rate not set: the profile's applies (margin.sources)
            if not isinstance(value, Decimal) or not value.is_finite():
                # a frozen value: converted once, here, at construction
                object.__setattr__(self, name, _exact(self.symbol, name, value))
        for name in _EXACT_FIELDS[:5]:
            if getattr(self, name) < 0:
                msg = f"{name} of {self.symbol} must not be negative, got {getattr(self, name)}"
                raise ConfigError(msg)
        if self.contract_size <= 0:
            msg = f"contract_size of {self.symbol} must be positive, got {self.contract_size}"
            raise ConfigError(msg)
        if self.kind in (InstrumentKind.FUTURE, InstrumentKind.OPTION) and self.expiry_ms is None:
            msg = f"{self.kind} {self.symbol} needs an expiry"
            raise ConfigError(msg)
        if self.kind is InstrumentKind.OPTION and (self.strike is None or self.option_type is None):
            msg = f"option {self.symbol} needs strike and option_type"
            raise ConfigError(msg)

    # -- classification -------------------------------------------------------------------
    @property
    def is_inverse(self) -> bool:
        """True for coin-settled contracts with a USD face value."""
        return not self.is_linear

    @property
    def is_option(self) -> bool:
        """True for options."""
        return self.kind is InstrumentKind.OPTION

    @property
    def is_perpetual(self) -> bool:
        """True for perpetual swaps."""
        return self.kind is InstrumentKind.PERPETUAL

    @property
    def underlying(self) -> str:
        """The underlying coin (the base currency), used to group legs that move together."""
        return self.base

    @property
    def cs(self) -> float:
        """``contract_size`` as float, for valuations."""
        return float(self.contract_size)

    # -- valuation (float) ----------------------------------------------------------------
    def notional(self, qty: float, price: float) -> float:
        """Return the absolute position value in the settle currency at ``price``.

        Linear: ``|qty| * contract_size * price`` (quote). Inverse: ``|qty| * contract_size /
        price`` (coin). Options: ``|qty| * contract_size * price`` with ``price`` the underlying
        price (quote), i.e. the notional of the underlying.
        """
        return _math.notional(qty, self.cs, price, self.is_linear or self.is_option)

    def notional_usd(self, qty: float, price: float) -> float:
        """Return the absolute position value in USD (quote) at ``price``.

        Linear: ``|qty| * contract_size * price``; inverse: the USD face ``|qty| * contract_size``.
        """
        return _math.notional_usd(qty, self.cs, price, self.is_linear or self.is_option)

    def pnl(self, qty: float, entry_price: float, exit_price: float) -> float:
        """Return the PnL of a signed ``qty`` moved from ``entry_price`` to ``exit_price``.

        In the settle currency. Linear and options: ``qty * cs * (exit - entry)``; inverse:
        ``qty * cs * (1/entry - 1/exit)`` (coin).

        >>> perp = Instrument(symbol="BTC/USD:BTC", kind=InstrumentKind.PERPETUAL, base="BTC",
        ...                   quote="USD", settle="BTC", is_linear=False, contract_size=Decimal(10))
        >>> round(perp.pnl(100, 50_000.0, 40_000.0), 6)   # 1,000 USD face long, -20% price
        -0.005
        """
        return _math.pnl(qty, self.cs, entry_price, exit_price, self.is_linear or self.is_option)

    def close_value(self, qty: float, entry_price: float, mark: float) -> float:
        """Return what closing a signed ``qty`` at ``mark`` books into the wallet, in the settle
        currency: the PnL for futures and perps (:meth:`pnl`), the market value for options
        (``qty * cs * mark``: sale proceeds of a long, minus the buy-back cost of a short).
        """
        if self.is_option:
            return qty * self.cs * mark
        return self.pnl(qty, entry_price, mark)

    def value_per_point(self, qty: float, price: float) -> float:
        """Return the PnL of a one-unit price rise at ``price`` (derivative of :meth:`pnl`).

        Linear: ``qty * cs``; inverse: ``qty * cs / price**2`` (coin per USD).
        """
        if self.is_linear or self.is_option:
            return qty * self.cs
        return qty * self.cs / (price * price)

    # -- booking (Decimal) ----------------------------------------------------------------
    def notional_exact(self, qty: Decimal, price: Decimal) -> Decimal:
        """Return ``|qty|`` valued at ``price`` in the settle currency, as booked money."""
        q = abs(qty) * self.contract_size
        if self.is_linear or self.is_option:
            return to_money(q * price)
        return to_money(q / price)

    def pnl_exact(self, qty: Decimal, entry_price: Decimal, exit_price: Decimal) -> Decimal:
        """Return :meth:`pnl` in Decimal, quantized as booked money (settle currency)."""
        if self.is_linear or self.is_option:
            return to_money(qty * self.contract_size * (exit_price - entry_price))
        return to_money(qty * self.contract_size * (Decimal(1) / entry_price
                                                    - Decimal(1) / exit_price))

    def fee_rate(self, *, is_maker: bool) -> Decimal:
        """Return the maker or taker fee rate (fraction of notional).

        Raises
        ------
        ConfigError
            When the rate was never set (see ``maker_rate``).
        """
        rate = self.maker_rate if is_maker else self.taker_rate
        if rate is None:
            msg = (f"{self.symbol}: no {'maker' if is_maker else 'taker'} fee rate; set it on "
                   "the instrument or apply a profile's rates "
                   "(backtester.margin.sources.resolve_fee_rates)")
            raise ConfigError(msg)
        return rate

    def fee_exact(self, qty: Decimal, price: Decimal, *, is_maker: bool,
                  underlying_price: Decimal | None = None,
                  option_fee_cap: Decimal | None = None) -> Decimal:
        """Return the trading fee (positive = paid) for a fill, in the settle currency.

        Futures: ``rate * notional``. Options (exchange rule ``min(rate * index, cap * premium)``
        per unit): when ``underlying_price`` is given the fee is
        ``|qty| * cs * min(rate * underlying(, in settle currency), cap * price)``.
        """
        rate = self.fee_rate(is_maker=is_maker)
        if self.is_option and underlying_price is not None:
            per_unit = rate * (underlying_price if self.is_linear else Decimal(1))
            if option_fee_cap is not None:
                per_unit = min(per_unit, option_fee_cap * price)
            return to_money(abs(qty) * self.contract_size * per_unit)
        return to_money(self.notional_exact(qty, price) * rate)

    def option_payoff(self, settlement_price: float) -> float:
        """Return the payoff per one unit of the underlying at expiry, in the settle currency.

        Linear: ``max(0, S - K)`` (call) / ``max(0, K - S)`` (put). Inverse (coin-settled):
        the same divided by ``S``.

        >>> opt = instrument_from_symbol("BTC/USD:BTC-240628-10000-C", is_linear=False)
        >>> opt.option_payoff(12_500.0)
        0.2
        """
        if self.strike is None or self.option_type is None:
            msg = f"{self.symbol} is not an option"
            raise ConfigError(msg)
        k = self.strike
        s = settlement_price
        intrinsic = max(0.0, s - k) if self.option_type is OptionType.CALL else max(0.0, k - s)
        return intrinsic if self.is_linear else intrinsic / s

    def is_expired(self, ts_ms: int) -> bool:
        """True when ``ts_ms`` is at or after the expiry."""
        return self.expiry_ms is not None and ts_ms >= self.expiry_ms


#: the contract fields booked as exact Decimal (sizes first, then the signed fee rates)
_EXACT_FIELDS = ("contract_size", "tick_size", "lot_size", "min_qty", "min_notional",
                 "maker_rate", "taker_rate")
#: the fields that may be None (unset: the fee-rate precedence fills them)
_OPTIONAL_FIELDS = ("maker_rate", "taker_rate")


def _exact(symbol: str, name: str, value: Any) -> Decimal:
    # ints and numeric strings exactly; floats through their shortest repr (``0.001`` is
    # Decimal("0.001"), not the binary fraction); anything else is an error naming the field
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        msg = (f"{name} of {symbol}: expected a number (Decimal, int, float or numeric "
               f"string), got {type(value).__name__} {value!r}")
        raise ConfigError(msg)
    try:
        d = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except ArithmeticError:
        d = Decimal("NaN")
    if not d.is_finite():
        msg = f"{name} of {symbol}: expected a finite number, got {value!r}"
        raise ConfigError(msg)
    return d


def symbol_underlying(symbol: str) -> str:
    """Return the base coin of a ccxt symbol (``ETH/USDT:USDT`` → ``ETH``)."""
    return symbol.split("/", 1)[0]


def is_option_symbol(symbol: str) -> bool:
    """Return True when ``symbol`` names an option in the ccxt grammar (``…-YYMMDD-K-C|P``).

    >>> is_option_symbol("BTC/USD:BTC-261225-100000-C"), is_option_symbol("BTC/USDT:USDT")
    (True, False)
    """
    m = _SYMBOL.match(symbol)
    return m is not None and m.group("strike") is not None


def _tick(value: Any, precision_mode: int) -> Decimal:
    if value is None:
        return Decimal("0.00000001")
    d = dec(value)
    # ccxt precisionMode 2 = DECIMAL_PLACES (value = number of decimals); 4 = TICK_SIZE.
    if precision_mode == 2:
        return Decimal(1).scaleb(-int(d))
    return d


def _rate(value: Any) -> Decimal | None:
    # a market without the rate leaves it unset (the run applies its profile's rate)
    return dec(float(value)) if value is not None else None


def instrument_from_ccxt(market: dict[str, Any], *, exchange: str = "",
                         precision_mode: int = 4) -> Instrument:
    """Build an :class:`Instrument` from a ccxt unified market dict.

    Perpetuals are detected by ``market["swap"]`` / ``type == "swap"``, never by a missing expiry
    (Deribit perps carry a year-3000 expiry).
    """
    symbol = market.get("symbol")
    if not symbol:
        msg = "ccxt market has no 'symbol'"
        raise ConfigError(msg)
    mtype = market.get("type")
    if market.get("swap") or mtype == "swap":
        kind = InstrumentKind.PERPETUAL
    elif market.get("option") or mtype == "option":
        kind = InstrumentKind.OPTION
    elif market.get("future") or mtype in ("future", "delivery"):
        kind = InstrumentKind.FUTURE
    elif market.get("spot") or mtype == "spot":
        kind = InstrumentKind.SPOT
    else:
        msg = f"market {symbol}: unknown type {mtype!r}"
        raise ConfigError(msg)
    expiry = market.get("expiry")
    expiry_ms = None if kind in (InstrumentKind.PERPETUAL, InstrumentKind.SPOT) else (
        int(expiry) if expiry is not None else None)
    if expiry_ms is not None and expiry_ms > _FAR_FUTURE_MS:
        expiry_ms = None
        kind = InstrumentKind.PERPETUAL
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    amount_limits = limits.get("amount") or {}
    cost_limits = limits.get("cost") or {}
    leverage_limits = limits.get("leverage") or {}
    option_type = market.get("optionType")
    lot = _tick(precision.get("amount"), precision_mode)
    is_linear = bool(market.get("linear", True)) if kind is not InstrumentKind.SPOT else True
    if market.get("inverse") and kind is not InstrumentKind.SPOT:
        is_linear = False
    return Instrument(
        symbol=symbol,
        kind=kind,
        base=str(market.get("base") or symbol_underlying(symbol)),
        quote=str(market.get("quote") or ""),
        settle=str(market.get("settle") or market.get("quote") or ""),
        is_linear=is_linear,
        contract_size=dec(market.get("contractSize") or 1),
        tick_size=_tick(precision.get("price"), precision_mode),
        lot_size=lot,
        min_qty=dec(amount_limits.get("min") or 0),
        min_notional=dec(cost_limits.get("min") or 0),
        maker_rate=_rate(market.get("maker")),
        taker_rate=_rate(market.get("taker")),
        expiry_ms=expiry_ms,
        strike=float(market["strike"]) if market.get("strike") not in (None, "") else None,
        option_type=OptionType(option_type) if option_type else None,
        max_leverage=float(leverage_limits["max"]) if leverage_limits.get("max") else None,
        exchange=exchange,
    )


def instrument_from_symbol(symbol: str, *, is_linear: bool | None = None,
                           expiry_hour_utc: int = 8, **overrides: Any) -> Instrument:
    """Build an Instrument from the ccxt symbol grammar ``BASE/QUOTE:SETTLE[-YYMMDD[-K-C|P]]``.

    Used for synthetic data and the calculator when no market catalog is at hand. ``is_linear``
    defaults to ``settle != base``. Dated instruments expire at ``expiry_hour_utc`` on the
    date. Fee rates are left unset unless given in ``overrides`` (a run applies its profile's).
    """
    m = _SYMBOL.match(symbol)
    if m is None:
        msg = (f"symbol {symbol!r} does not follow the ccxt grammar "
               "BASE/QUOTE:SETTLE[-YYMMDD[-K-C|P]]")
        raise ConfigError(msg)
    base, quote = m.group("base"), m.group("quote")
    settle = m.group("settle") or quote
    linear = settle != base if is_linear is None else is_linear
    date = m.group("date")
    expiry_ms = None
    kind = InstrumentKind.PERPETUAL if m.group("settle") else InstrumentKind.SPOT
    strike = None
    option_type = None
    if date:
        expiry_ms = parse_utc_ms(f"20{date[:2]}-{date[2:4]}-{date[4:]}T{expiry_hour_utc:02d}:00")
        kind = InstrumentKind.FUTURE
        if m.group("strike"):
            kind = InstrumentKind.OPTION
            strike = float(m.group("strike"))
            option_type = OptionType.CALL if m.group("cp") == "C" else OptionType.PUT
    fields: dict[str, Any] = {
        "symbol": symbol, "kind": kind, "base": base, "quote": quote, "settle": settle,
        "is_linear": linear, "expiry_ms": expiry_ms, "strike": strike,
        "option_type": option_type,
    }
    if not linear and kind is not InstrumentKind.OPTION:
        fields.update(contract_size=Decimal(100 if base == "BTC" else 10), lot_size=Decimal(1))
    fields.update(overrides)
    return Instrument(**fields)
