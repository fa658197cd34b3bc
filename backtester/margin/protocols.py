"""What the margin engine reads and writes of the run it serves, as a protocol.

The margin layer sits below the engine (``backtester.engine`` wires data, account, margin and
strategy): it never imports the engine, not even for type checking. :class:`MarginHost` names
the narrow view it needs instead — the account, the data, the working orders, the clock, the
configuration and the run's event lists — and ``backtester.engine.Engine`` satisfies it
structurally (mypy checks it where the engine builds its :class:`MarginEngine`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from decimal import Decimal

    from backtester.accounting import Account
    from backtester.config import RunConfig
    from backtester.data.feed import Feed
    from backtester.margin.profile import ProfileData
    from backtester.margin.state import MarginEngine
    from backtester.orders import Fill, Order

__all__ = ["FinishedRun", "MarginHost"]


class MarginHost(Protocol):
    """The run as the margin engine sees it.

    Read: the account, the feed, the working orders and their version (bumped when an order
    is placed or leaves the book), the clock (``step`` index, ``now_ms`` its close, ms UTC), the
    run configuration, the symbols' codes and the perps that need work every bar. The margin
    engine books liquidations through :class:`~backtester.accounting.Account`'s public
    methods and hands the rest back through the host's methods, never its lists: ``emit``
    (a market event and its strategy hook), ``record_liquidation_fill`` (a liquidation's fill,
    given an order of its own in the order log), ``stop`` (a bankruptcy stops trading),
    ``cancel`` (removes working orders; ``reason`` is recorded), ``record_greeks``; plus the
    run's warnings and the per-step position and pool records it writes.
    """

    @property
    def stopped_reason(self) -> str | None: ...

    @property
    def account(self) -> Account: ...

    @property
    def feed(self) -> Feed: ...

    @property
    def config(self) -> RunConfig: ...

    @property
    def orders(self) -> dict[int, Order]: ...

    @property
    def orders_version(self) -> int: ...

    @property
    def step(self) -> int: ...

    @property
    def now_ms(self) -> int: ...

    @property
    def symbol_code(self) -> dict[str, int]: ...

    @property
    def _special(self) -> set[str]: ...

    @property
    def warnings(self) -> list[str]: ...

    @property
    def pos_rec(self) -> dict[str, Any]: ...

    @property
    def pool_rec(self) -> list[tuple[int, dict[str, float]]]: ...

    def cancel(self, order_id: int | None, *, symbol: str | None, reason: str) -> int:
        """Cancel one order (``order_id``), all orders of ``symbol``, or all; return how many."""
        ...

    def emit(self, event: Any, hook: str) -> None:
        """Record a market event in the results and queue the strategy's ``on_<hook>``."""
        ...

    def stop(self, reason: str) -> None:
        """Stop trading (``reason``: why, e.g. ``bankrupt``)."""
        ...

    def record_liquidation_fill(self, ts_ms: int, symbol: str, qty: Decimal, price: Decimal,
                                fee: Decimal, realized_pnl: Decimal) -> Fill:
        """Record a liquidation's fill, already booked to the account, under an order of its
        own (signed ``qty`` contracts at ``price``; ``fee`` in the settle asset)."""
        ...

    def record_greeks(self, step: int, greeks: dict[str, float]) -> None:
        """Record the account greeks of ``step``."""
        ...


class FinishedRun(MarginHost, Protocol):
    """A run whose final account is written as a calculator snapshot: the host, its margin
    profile and its margin engine."""

    @property
    def profile(self) -> ProfileData: ...

    @property
    def margin(self) -> MarginEngine: ...
