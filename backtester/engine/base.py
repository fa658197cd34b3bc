"""What the engine's parts share: the run's state, declared once for the type checker.

``Engine`` (:mod:`backtester.engine.core`) is assembled from one mixin per concept — the order
book (:mod:`~backtester.engine.orderbook`), execution (:mod:`~backtester.engine.fills`),
settlement (:mod:`~backtester.engine.settlement`) and the records
(:mod:`~backtester.engine.recorder`) — over this base. At run time the base is empty; for mypy
it declares the attributes ``Engine.__init__`` sets and the methods one part calls on another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from decimal import Decimal

    from backtester.accounting import Account
    from backtester.config import RunConfig
    from backtester.context import Context, Phase
    from backtester.data.feed import Feed, SymbolFeed
    from backtester.execution import Match, SlippageModel
    from backtester.instruments import Instrument
    from backtester.margin.decisions import Decision
    from backtester.margin.profile import ProfileData
    from backtester.margin.state import MarginEngine
    from backtester.orders import (
        CancelReason,
        Fill,
        Order,
        OrderCancelled,
        OrderRecord,
        OrderRejected,
    )
    from backtester.strategy import Strategy

__all__ = ["EngineParts"]


class EngineParts:
    """The run's state as every part of the engine sees it (declarations only)."""

    if TYPE_CHECKING:  # set by Engine.__init__
        strategy: Strategy
        feed: Feed
        config: RunConfig
        profile: ProfileData
        now_ms: int
        phase: Phase
        account: Account
        slippage: SlippageModel
        orders: dict[int, Order]
        orders_version: int
        step: int
        margin: MarginEngine
        ctx: Context
        by_symbol: dict[str, list[Order]]
        _next_id: int
        fills: list[Fill]
        order_log: list[OrderRecord]
        _order_rec: dict[int, OrderRecord]
        rejections: list[OrderRejected]
        cancels: list[OrderCancelled]
        events: list[Any]
        pending: list[tuple[str, Any]]
        warnings: list[str]
        user_records: dict[str, list[float]]
        rec: dict[str, Any]
        wake_signals: list[Any]
        symbols: list[str]
        symbol_code: dict[str, int]
        instruments: list[Instrument]
        pos_rec: dict[str, Any]
        stopped_reason: str | None
        greek_rec: list[tuple[int, dict[str, float], dict[str, float]]]
        pool_rec: list[tuple[int, dict[str, float]]]
        _next_settlement: int
        _expiries: list[tuple[int, str]]
        _funding_checked: set[str]
        funding_uncovered: dict[str, list[int]]
        _special: set[str]

        # called by one part on another
        def feed_of(self, symbol: str) -> SymbolFeed: ...
        def emit(self, event: Any, hook: str) -> None: ...
        def stop(self, reason: str) -> None: ...
        def record_liquidation_fill(self, ts_ms: int, symbol: str, qty: Decimal, price: Decimal,
                                    fee: Decimal, realized_pnl: Decimal) -> Fill: ...
        def book_decision(self, d: Decision) -> Any: ...
        def warn(self, message: str) -> None: ...
        def cancel(self, order_id: int | None, *, symbol: str | None,
                   reason: CancelReason | str) -> int: ...
        def _remove(self, order: Order, reason: CancelReason | None) -> None: ...
        def _attach_exits(self, parent: Order, qty: Decimal) -> None: ...
        def _fill(self, order: Order, f: SymbolFeed, m: Match, *,
                  is_ambiguous: bool = False) -> None: ...
        def _funding(self, f: SymbolFeed, *, before_ms: int) -> None: ...
