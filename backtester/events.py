"""Market-outcome events delivered to strategies and kept in the results.

Events are past-tense nouns; amounts are booked Decimals in the named asset, sign from the
account's point of view (positive = received).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

__all__ = [
    "EventScope",
    "FundingPaid",
    "InstrumentExpired",
    "LiquidationAction",
    "LiquidationStep",
    "MarginCalled",
    "PositionLiquidated",
]


class EventScope(StrEnum):
    """What a margin call or a liquidation is about.

    A ``StrEnum``: members compare equal to their values (``event.scope == "pool"``) and are
    written to the result files as those strings.
    """

    #: the whole account (cross margin, portfolio margin, one collateral pool)
    ACCOUNT = "account"
    #: one collateral pool of several (``backtester.margin.pools``); the event names it
    POOL = "pool"
    #: one isolated position (isolated margin)
    POSITION = "position"


class LiquidationAction(StrEnum):
    """What one step of a liquidation did (:class:`LiquidationStep`); compares equal to its
    value, which is what the result files hold."""

    #: working orders cancelled first (``qty``: how many)
    CANCEL_ORDERS = "cancel_orders"
    #: a liquidation order at the mark moved against the position by the liquidation slippage
    #: (``qty``: signed contracts, positive bought; ``price``: the fill price)
    LIQUIDATION_ORDER = "liquidation_order"
    #: the position taken over at its bankruptcy price (as a liquidation order)
    TAKEOVER = "takeover"
    #: auto-deleveraging (run key ``adl``): counterparties bore ``realized_pnl`` of a deficit
    ADL = "adl"
    #: the insurance fund paid ``realized_pnl`` into the account to cover a deficit
    INSURANCE_COVER = "insurance_cover"
    #: collateral sold to repay a liability (``symbol``: the asset; ``qty``: minus the amount
    #: sold; ``price``: units of the liability per unit sold; ``realized_pnl``: the proceeds)
    COLLATERAL_SALE = "collateral_sale"


def _as_member(obj: object, name: str, enum: type[StrEnum]) -> None:
    # events built with the plain strings (older code, results read back) hold the member
    value = getattr(obj, name)
    if type(value) is not enum:
        object.__setattr__(obj, name, enum(value))


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

    ``scope`` is :attr:`EventScope.ACCOUNT`; with several collateral pools
    (``backtester.margin.pools``) it is :attr:`EventScope.POOL` and ``pool`` names the pool (its
    settle asset) whose values these are. Amounts are USD; ``margin_ratio`` is maintenance margin
    / margin balance (1.0 = liquidation).
    """

    ts_ms: int
    margin_ratio: float
    margin_balance: float
    maintenance_margin: float
    initial_margin: float
    call_level: float
    scope: EventScope = EventScope.ACCOUNT
    pool: str | None = None

    def __post_init__(self) -> None:
        _as_member(self, "scope", EventScope)


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquidationStep:
    """One step of a liquidation: an order, a takeover, a fee or an insurance-fund flow.

    ``action`` says which (:class:`LiquidationAction`, whose members say what ``qty``,
    ``price`` and ``realized_pnl`` hold for each); ``fee`` is paid (positive), amounts are
    booked in the settle currency.
    """

    action: LiquidationAction
    symbol: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal

    def __post_init__(self) -> None:
        _as_member(self, "action", LiquidationAction)


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionLiquidated:
    """A liquidation event: what triggered it, each step, and the account before and after.

    ``trigger_price`` maps symbol → the mark at which it was evaluated; ``insurance_flow`` is
    what the insurance fund received (positive) or paid to cover a deficit (negative), per asset.
    ``is_bankrupt`` is true when the account's equity went below zero and the fund covered it.
    ``scope`` (:class:`EventScope`) is ``account`` (cross), ``position`` (isolated) or ``pool``:
    with several collateral pools (``backtester.margin.pools``) a pool is liquidated on its own,
    ``pool`` names it, only its positions are closed and ``is_bankrupt`` is about that pool.
    ``margin_ratio_before`` is the maintenance margin over the margin balance of what was
    liquidated: the account, the pool, or (isolated) the position itself (its maintenance
    margin over its isolated margin plus its PnL); infinite when that balance is not positive.
    """

    ts_ms: int
    scope: EventScope
    reason: str
    trigger_price: dict[str, float]
    steps: tuple[LiquidationStep, ...]
    equity_before: float
    equity_after: float
    margin_ratio_before: float
    insurance_flow: dict[str, Decimal] = field(default_factory=dict)
    is_bankrupt: bool = False
    pool: str | None = None

    def __post_init__(self) -> None:
        _as_member(self, "scope", EventScope)
