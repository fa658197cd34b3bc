"""Per-position margin requirements, shared by the calculator and the engine.

Sign and unit conventions
-------------------------
* ``qty`` is signed contracts: positive long, negative short.
* ``mark`` is the contract's mark price (quote per base); ``index_price`` the index.
* Amounts (notional, initial and maintenance margin) are in the contract's **settle currency**:
  quote (USDT/USDC) for linear contracts, the coin for inverse contracts, where the notional is
  ``contracts × contract_size / mark`` (margin-rules §0, §3).

Rules implemented
-----------------
* Tiered (Binance §2.1 [B1], Bybit §5.2 [BY6], OKX §6 [OK5]): ``MM = notional × MMR − cum``
  with the tier of the notional at mark; ``IM = notional / leverage``; a leverage above the
  tier's maximum is flagged (the engine rejects with ``leverage_exceeds_bracket``).
* Size-dependent (Deribit standard §7.2 [DB2][DB5]): ``rate = base + per_coin × size_coin``;
  margin ``= size_coin × rate`` in coin, converted at the index for linear contracts
  (``size_coin = |qty| × contract_size``; inverse ``size_coin = USD face / index``).

Options are not handled here (see ``backtester.margin.options``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backtester.errors import ConfigError
from backtester.margin import kernel
from backtester.margin.profile import MarginRates
from backtester.margin.tiers import TierTable

if TYPE_CHECKING:
    from backtester.instruments import Instrument

__all__ = [
    "LeverageCheck",
    "PositionRequirement",
    "check_leverage",
    "position_requirement",
    "rated_requirement",
    "tiered_requirement",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionRequirement:
    """Margin requirement of one position, in its settle currency.

    Attributes
    ----------
    notional
        Absolute position value at the mark (settle currency).
    tier
        1-based tier used, or None for size-dependent rates.
    initial_margin, maintenance_margin
        Requirements (settle currency, ≥ 0).
    mmr, maintenance_amount
        Rate and deduction that produced ``maintenance_margin`` (``MM = notional × mmr −
        maintenance_amount``); for size-dependent rates the deduction is 0.
    max_leverage
        The tier's maximum leverage (None for size-dependent rates).
    is_leverage_exceeded
        True when the chosen leverage is above ``max_leverage``.
    """

    notional: float
    tier: int | None
    initial_margin: float
    maintenance_margin: float
    mmr: float
    maintenance_amount: float
    max_leverage: float | None
    is_leverage_exceeded: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LeverageCheck:
    """Whether a leverage is allowed for a notional: ``is_allowed``, the tier and its maximum."""

    is_allowed: bool
    tier: int
    max_leverage: float


def tiered_requirement(instrument: Instrument, qty: float, mark: float, *, leverage: float,
                       tiers: TierTable) -> PositionRequirement:
    """Return the tiered requirement of a futures position.

    ``notional = instrument.notional(qty, mark)`` (linear ``|qty|·cs·mark``, inverse
    ``|qty|·cs/mark``); ``IM = notional / leverage``; ``MM = notional × MMR − cum`` of the tier
    holding the notional, margin-rules §2.1 [B1] and §3 [B2].

    >>> from backtester.instruments import instrument_from_symbol
    >>> perp = instrument_from_symbol("BTC/USD:BTC")          # inverse, 100 USD contracts
    >>> t = TierTable.from_rows([{"min_notional": 0, "max_notional": 5, "mmr": 0.004,
    ...                          "max_leverage": 125}])
    >>> r = tiered_requirement(perp, 100, 25_000.0, leverage=20, tiers=t)
    >>> round(r.notional, 6), round(r.maintenance_margin, 6)   # §3: 0.4 BTC → 0.0016 BTC
    (0.4, 0.0016)
    """
    if leverage <= 0:
        msg = f"leverage must be positive, got {leverage}"
        raise ConfigError(msg)
    notional = instrument.notional(qty, mark)
    tier = tiers.tier_for(notional)
    floors, mmr, cum = tiers.arrays()
    mm = kernel.tiered_maintenance(notional, floors, mmr, cum, 0, len(floors))
    return PositionRequirement(
        notional=notional, tier=tier.tier, initial_margin=notional / leverage,
        maintenance_margin=float(mm), mmr=tier.mmr,
        maintenance_amount=tier.maintenance_amount, max_leverage=tier.max_leverage,
        is_leverage_exceeded=leverage > tier.max_leverage * (1.0 + 1e-12))


def rated_requirement(instrument: Instrument, qty: float, mark: float, *, rates: MarginRates,
                      index_price: float | None = None) -> PositionRequirement:
    """Return the size-dependent (Deribit standard) requirement of a futures position.

    ``size_coin = |qty|·cs`` (linear) or ``|qty|·cs / index`` (inverse); ``IM rate = im_base +
    im_per_coin·size_coin``, likewise MM; margin ``= size_coin × rate`` in coin, times the index
    for linear contracts (settle currency). margin-rules §7.2 [DB2][DB5].

    >>> from backtester.instruments import instrument_from_symbol
    >>> perp = instrument_from_symbol("BTC/USDC:USDC")
    >>> rates = MarginRates(im_base=0.02, im_per_coin=0.00005, mm_base=0.01, mm_per_coin=0.00005)
    >>> r = rated_requirement(perp, 25, 100_000.0, rates=rates)
    >>> round(r.initial_margin, 6), round(r.maintenance_margin, 6)
    (53125.0, 28125.0)
    """
    index = mark if index_price is None else index_price
    cs, lin = instrument.cs, instrument.is_linear
    return PositionRequirement(
        notional=instrument.notional(qty, mark), tier=None,
        initial_margin=float(kernel.rated_margin(qty, cs, index, lin, rates.im_base,
                                                 rates.im_per_coin)),
        maintenance_margin=float(kernel.rated_margin(qty, cs, index, lin, rates.mm_base,
                                                     rates.mm_per_coin)),
        mmr=float(kernel.rated_rate(qty, cs, index, lin, rates.mm_base, rates.mm_per_coin)),
        maintenance_amount=0.0, max_leverage=None, is_leverage_exceeded=False)


def position_requirement(instrument: Instrument, qty: float, mark: float, *,
                         leverage: float, tiers: TierTable | None = None,
                         margin_rates: MarginRates | None = None,
                         index_price: float | None = None) -> PositionRequirement:
    """Return the requirement by whichever model applies (size-dependent rates win over tiers).

    Raises ConfigError when neither ``tiers`` nor ``margin_rates`` is given, or for options.
    """
    if instrument.is_option:
        msg = f"{instrument.symbol}: option requirements come from backtester.margin.options"
        raise ConfigError(msg)
    if margin_rates is not None:
        return rated_requirement(instrument, qty, mark, rates=margin_rates,
                                 index_price=index_price)
    if tiers is None:
        msg = f"{instrument.symbol}: no tier table and no margin_rates; give tiers"
        raise ConfigError(msg)
    return tiered_requirement(instrument, qty, mark, leverage=leverage, tiers=tiers)


def check_leverage(tiers: TierTable, notional: float, leverage: float) -> LeverageCheck:
    """Say whether ``leverage`` is allowed for a position of ``notional`` (settle currency).

    A leverage above the tier's ``max_leverage`` is refused (Binance §2.1 [B3]); the engine
    turns ``is_allowed=False`` into the rejection ``leverage_exceeds_bracket``.

    >>> t = TierTable.from_rows([{"min_notional": 0, "max_notional": 50_000, "mmr": 0.004,
    ...     "max_leverage": 125}, {"min_notional": 50_000, "max_notional": 250_000,
    ...     "mmr": 0.005, "max_leverage": 100}])
    >>> check_leverage(t, 60_000, 125).is_allowed
    False
    """
    tier = tiers.tier_for(notional)
    return LeverageCheck(is_allowed=leverage <= tier.max_leverage * (1.0 + 1e-12),
                         tier=tier.tier, max_leverage=tier.max_leverage)
