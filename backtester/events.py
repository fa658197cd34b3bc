"""Market-outcome events delivered to strategies and kept in the results.

Events are past-tense nouns; amounts are booked Decimals in the named asset, sign from the
account's point of view (positive = received).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

__all__ = [
    "FundingPaid",
    "InstrumentExpired",
    "LiquidationStep",
    "MarginCalled",
    "PositionLiquidated",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingPaid:
    """A funding payment at stamp ``ts_ms`` (nominal time T).

    ``amount`` is what the account received (negative = paid). ``rate`` is the funding rate
    (positive: longs pay shorts), ``mark`` the mark price used, ``qty`` the signed contracts held
    at T.
    """

    ts_ms: int
    symbol: str
    rate: float
    mark: float
    qty: Decimal
    amount: Decimal
    asset: str
    mark_source: str = "mark"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentExpired:
    """A future or option expired and was cash-settled at ``settlement_price``.

    ``pnl`` is the settlement PnL (futures: against the entry price; options: the payoff
    received, since the premium was booked at the trade), ``fee`` the delivery fee paid.
    ``price_source`` says how the delivery price was found (``index_twap``, ``index``, ``mark``).
    """

    ts_ms: int
    symbol: str
    qty: Decimal
    settlement_price: float
    pnl: Decimal
    fee: Decimal
    asset: str
    price_source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginCalled:
    """The account reached the call level: maintenance / margin balance >= ``call_level``.

    ``scope`` is ``account``; with several collateral pools (``backtester.margin.pools``) it
    is ``pool`` and ``pool`` names the pool (its settle asset) whose values these are.
    """

    ts_ms: int
    margin_ratio: float
    margin_balance: float
    maintenance_margin: float
    initial_margin: float
    call_level: float
    scope: str = "account"
    pool: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquidationStep:
    """One step of a liquidation: an order, a takeover, a fee or an insurance-fund flow."""

    action: str
    symbol: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionLiquidated:
    """A liquidation event: what triggered it, each step, and the account before and after.

    ``trigger_price`` maps symbol → the mark at which it was evaluated; ``insurance_flow`` is
    what the insurance fund received (positive) or paid to cover a deficit (negative), per asset.
    ``is_bankrupt`` is true when the account's equity went below zero and the fund covered it.
    ``scope`` is ``account`` (cross), ``position`` (isolated) or ``pool``: with several
    collateral pools (``backtester.margin.pools``) a pool is liquidated on its own, ``pool``
    names it, only its positions are closed and ``is_bankrupt`` is about that pool.
    ``margin_ratio_before`` is the maintenance margin over the margin balance of what was
    liquidated: the account, the pool, or (isolated) the position itself (its maintenance
    margin over its isolated margin plus its PnL); infinite when that balance is not positive.
    """

    ts_ms: int
    scope: str
    reason: str
    trigger_price: dict[str, float]
    steps: tuple[LiquidationStep, ...]
    equity_before: float
    equity_after: float
    margin_ratio_before: float
    insurance_flow: dict[str, Decimal] = field(default_factory=dict)
    is_bankrupt: bool = False
    pool: str | None = None
