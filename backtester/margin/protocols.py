"""What the margin engine reads of the run it serves, as protocols.

The margin layer sits below the engine (``backtester.engine`` wires data, account, margin and
strategy): it never imports the engine, not even for type checking. :class:`MarginHost` names
the narrow view it needs instead — the account read-only (:class:`AccountReader`), the data,
the working orders, the clock, the configuration and the run's records — and
``backtester.engine.Engine`` satisfies it structurally (mypy checks it where the engine builds
its :class:`MarginEngine`). The margin engine changes nothing of the run's account, orders or
events: what it decides (a margin call's event, a liquidation's cancels, fills, fees and
insurance flows, an isolated allocation) it returns as decisions
(:mod:`backtester.margin.decisions`) that the engine books.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping
    from decimal import Decimal

    from backtester.accounting import Position
    from backtester.config import RunConfig
    from backtester.data.feed import Feed
    from backtester.margin.profile import ProfileData
    from backtester.margin.state import MarginEngine
    from backtester.orders import Order

__all__ = ["AccountReader", "FinishedRun", "MarginHost"]


class AccountReader(Protocol):
    """The account as the margin engine reads it: no method that books or changes anything.

    ``balances`` and ``session`` (unsettled daily-session amounts) per asset, ``positions``
    per symbol, the ``leverage`` settings and ``default_leverage``, and ``version`` (bumped by
    every change: a block of evaluated steps holds while it stands still).
    """

    @property
    def balances(self) -> Mapping[str, Decimal]: ...

    @property
    def session(self) -> Mapping[str, Decimal]: ...

    @property
    def positions(self) -> Mapping[str, Position]: ...

    @property
    def leverage(self) -> Mapping[str, float]: ...

    @property
    def default_leverage(self) -> float: ...

    @property
    def version(self) -> int: ...


class MarginHost(Protocol):
    """The run as the margin engine sees it.

    Read: the account (read-only), the feed, the working orders and their version (bumped when
    an order is placed or leaves the book), the clock (``step`` index, ``now_ms`` its close,
    ms UTC), the run configuration, the symbols' codes and the perps that need work every bar.
    Written: only the margin engine's own records — the run's warnings, the per-step position
    and pool records and ``record_greeks``; everything else is a decision the engine books.
    """

    @property
    def stopped_reason(self) -> str | None: ...

    @property
    def account(self) -> AccountReader: ...

    @property
    def feed(self) -> Feed: ...

    @property
    def config(self) -> RunConfig: ...

    @property
    def orders(self) -> Mapping[int, Order]: ...

    @property
    def orders_version(self) -> int: ...

    @property
    def step(self) -> int: ...

    @property
    def now_ms(self) -> int: ...

    @property
    def symbol_code(self) -> Mapping[str, int]: ...

    @property
    def _special(self) -> set[str]: ...

    @property
    def warnings(self) -> list[str]: ...

    @property
    def pos_rec(self) -> dict[str, Any]: ...

    @property
    def pool_rec(self) -> list[tuple[int, dict[str, float]]]: ...

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
