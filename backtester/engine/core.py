"""The bar loop: wires data, account, margin and strategy (DESIGN §2).

Each clock step ``t`` (a bar close):

1. execution: working orders of the instruments whose bar closes at ``t`` fill along the bar's
   path (orders fill only on bars that open at or after their submission);
2. settlement: funding stamps inside the bar (fills at the bar's open count as held at a stamp
   equal to the open; for a stamp inside the bar only fills at the open count); expiries;
3. margin: the account is evaluated on mark prices (``intrabar``: low, high and close per
   underlying group); a breach liquidates by the profile's rules before the strategy sees the bar;
4. strategy: ``on_fill`` / ``on_funding`` / ``on_expiry`` / ``on_margin_call`` /
   ``on_liquidation`` events, then ``on_bar``; orders submitted now fill from the next bar;
5. risk: new orders are validated (instrument rules, reduce-only, initial margin) on submission;
6. record: equity, wallet, margins, ratio, exposure, positions, user records.
"""

from __future__ import annotations

import warnings
from array import array
from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Any

import numpy as np

from backtester.accounting import Account, EntryKind
from backtester.config import FundingMode, RunConfig
from backtester.context import AccountView, Context, Phase, PositionView
from backtester.data.feed import Feed, SymbolFeed
from backtester.engine.fills import FillsMixin
from backtester.engine.ledger import LedgerMixin
from backtester.engine.orderbook import OrderBookMixin
from backtester.engine.recorder import POS_KEYS, REC_COLUMNS, RecorderMixin
from backtester.engine.settlement import SettlementMixin
from backtester.errors import (
    BacktesterWarning,
    ConfigError,
    DataError,
    PhaseError,
    StrategyError,
    closest,
)
from backtester.execution import SlippageModel
from backtester.margin.state import MarginEngine
from backtester.orders import (
    Fill,
    Order,
    OrderCancelled,
    OrderRecord,
    OrderRejected,
)

if TYPE_CHECKING:
    from backtester.margin.profile import ProfileData
    from backtester.strategy import Strategy


__all__ = ["Engine"]


_MIN_SKIP = 16  # wake_on: gaps of at most this many steps are stepped through, not skipped


class Engine(OrderBookMixin, FillsMixin, SettlementMixin, LedgerMixin, RecorderMixin):
    """One backtest run. Build with :func:`backtester.run`; call :meth:`run` once."""

    def __init__(self, strategy: Strategy, feed: Feed, config: RunConfig, *,
                 profile: ProfileData) -> None:
        self.strategy = strategy
        self.feed = feed
        self.config = config
        self.profile = profile
        self.now_ms = feed.steps[0][0] if feed.steps else 0
        self.phase = Phase.INIT
        start_ms = min(f.ts[0] for f in feed.symbols.values())
        collateral = config.collateral or {profile.quote_asset: profile.default_collateral}
        self.account = Account(collateral, start_ms=start_ms,
                               default_leverage=config.default_leverage
                               or profile.default_leverage)
        for sym, lev in config.leverage.items():
            if sym == "*":
                self.account.default_leverage = lev
            elif sym not in feed.symbols:
                msg = f"leverage: unknown symbol {sym!r}; {closest(sym, feed.symbols)}"
                raise ConfigError(msg)
            else:
                self.account.set_leverage(sym, lev)
        self.slippage = SlippageModel(bps=config.slippage_bps, volume_impact=config.volume_impact)
        self.orders: dict[int, Order] = {}
        #: bumped whenever a working order is placed or leaves the book (the margin monitor's
        #: block holds while it and the account's version stand still)
        self.orders_version = 0
        self.step = -1  # the clock step being processed
        self.margin = MarginEngine(self, profile=profile)
        self.ctx = Context(self)
        self.by_symbol: dict[str, list[Order]] = {}
        self._next_id = 1
        self.fills: list[Fill] = []
        #: every order placed, with its status (the orders frame is built from these; an
        #: order's recorded fields never change after it is placed)
        self.order_log: list[OrderRecord] = []
        self._order_rec: dict[int, OrderRecord] = {}
        self.rejections: list[OrderRejected] = []
        self.cancels: list[OrderCancelled] = []
        self.events: list[Any] = []
        self.pending: list[tuple[str, Any]] = []
        self.warnings: list[str] = list(feed.warnings)
        self.user_records: dict[str, list[float]] = {}
        # the account series: columns of the margin kernel's records, written by the kernel
        # for every step it evaluates (a block of steps at a time)
        n_steps = len(feed.steps)
        self.rec: dict[str, Any] = {k: self.margin.rec[col, :n_steps]
                                    for k, col in REC_COLUMNS.items()}
        self.rec["ts"] = feed.steps.times  # shared with the clock; copied if a run stops early
        #: indicators given to ctx.wake_on (empty: on_bar runs at every step)
        self.wake_signals: list[Any] = []
        #: position rows; "symbol" holds codes into ``symbols`` (the feed's sorted symbols),
        #: ``symbol_code`` maps a symbol to its code, ``instruments`` are in code order
        self.symbols = sorted(feed.symbols)
        self.symbol_code = {s: k for k, s in enumerate(self.symbols)}
        self.instruments = [feed.symbols[s].instrument for s in self.symbols]
        self.pos_rec: dict[str, Any] = {
            k: array("i" if k == "symbol" else "q" if k == "ts" else "d") for k in POS_KEYS}
        self.stopped_reason: str | None = None
        self.greek_rec: list[tuple[int, dict[str, float], dict[str, float]]] = []
        # steps at which the account held several collateral pools: step, pool -> its
        # collateral (USD at the close; margin.pools.PoolState.collateral)
        self.pool_rec: list[tuple[int, dict[str, float]]] = []
        hour = profile.daily_settlement_hour_utc
        start = feed.steps[0][0] if len(feed.steps) else 0
        # the first settlement time after the run's first close (never, without one)
        self._next_settlement = (start - start % 86_400_000 + hour * 3_600_000 + (
            86_400_000 if start % 86_400_000 > hour * 3_600_000 else 0)) if hour is not None \
            else 2**62
        if hour is not None:
            self.account.session_kinds = frozenset({EntryKind.TRADE_PNL, EntryKind.FUNDING})
        self._expiries = sorted((f.instrument.expiry_ms, f.symbol) for f in feed.symbols.values()
                                if f.instrument.expiry_ms is not None)
        self._funding_checked: set[str] = set()
        #: funding stamps outside a perp's history at which it was held, charged zero
        #: (funding='history_or_zero'); symbol -> stamps (ms)
        self.funding_uncovered: dict[str, list[int]] = {}
        charged = config.funding is not FundingMode.ZERO
        # perps that need work every bar: no funding history (an error once held, unless
        # funding='zero'), or a profile that accrues funding continuously (Deribit)
        self._special = {s for s, f in feed.symbols.items() if f.instrument.is_perpetual and (
            (not f.funding_ts and charged)
            or (profile.funding_style == "continuous" and charged))}

    # -- lookups --------------------------------------------------------------------------
    def feed_of(self, symbol: str) -> SymbolFeed:
        """Return the feed of ``symbol`` or raise a ConfigError naming the known symbols."""
        f = self.feed.symbols.get(symbol)
        if f is None:
            msg = f"unknown symbol {symbol!r}; {closest(symbol, self.feed.symbols)}"
            raise ConfigError(msg)
        return f

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Run every clock step; the results are read from this engine afterwards."""
        strat = self.strategy
        self.phase = Phase.START
        self._call("on_start", strat.on_start, None)
        self.phase = Phase.BAR
        on_bar = strat.on_bar
        orders_by_symbol = self.by_symbol
        margin = self.margin
        account = self.account
        special_funding = self._special
        ctx = self.ctx
        wake = self._wake_steps()
        clock = self.feed.steps
        times, ids, groups = clock.times, clock.ids, clock.groups
        n = len(times)
        # with wake_on, runs of steps where nothing can happen are skipped (every feed must
        # advance at every step, so a feed's bar index is the step index)
        can_skip = wake is not None and all(r < 0 for r in margin.store.rows.values())
        # the margin block's key and its first step that needs the monitor (the block used
        # up, or a step that is not ok): they change only in margin.step and carry_out, and
        # are read again after those
        key_account, key_orders = margin.block_key
        block_limit = min(margin.block_end, margin.block_bad)
        # the first expiry or daily settlement to come (read again after either ran)
        next_event = self._next_timed_event()
        s = -1
        while s + 1 < n:
            s += 1
            t = times[s]
            self.step = s
            self.now_ms = t
            for f in groups[ids[s]]:
                f.idx += 1
                if orders_by_symbol.get(f.symbol):
                    self._execute(f)
                elif f.funding_ts and f.next_funding < len(f.funding_ts) \
                        and f.funding_ts[f.next_funding] < t:
                    self._funding(f, before_ms=t)
                if special_funding and f.symbol in special_funding:
                    self._special_funding(f)
            if t >= next_event:
                if self._expiries and self._expiries[0][0] <= t:
                    self._expire(t)
                if t >= self._next_settlement:
                    self._daily_settlement(t)
                next_event = self._next_timed_event()
            # margin: the step's state is the block's unless the book changed, the block is
            # used up or the step is not ok (then the monitor evaluates, calls, liquidates)
            if s >= block_limit or account.version != key_account \
                    or self.orders_version != key_orders:
                breach = margin.step(s)
                if breach is not None:
                    self.carry_out(breach)  # the margin call's or liquidation's decisions
                key_account, key_orders = margin.block_key
                block_limit = min(margin.block_end, margin.block_bad)
            if self.pending:
                self._deliver()
            if self.stopped_reason is None and (wake is None or wake[s]):
                try:
                    on_bar(ctx)
                except (StrategyError, PhaseError, ConfigError, DataError):
                    raise  # the engine's own errors already name what is wrong, as in _call
                except Exception as exc:
                    raise StrategyError(strat.name, "on_bar", t, exc) from exc
            if self.stopped_reason is not None and self.config.stop_on_bankruptcy:
                break
            if can_skip and not self.pending and not self.orders \
                    and self.stopped_reason is None:
                s = self._skip(s, wake)  # type: ignore[arg-type]
        self._finish_records(s + 1)
        self.phase = Phase.FINISH
        self._call("on_finish", strat.on_finish, None)
        account.check_replay()

    def _next_timed_event(self) -> int:
        # the time (ms) of the first expiry or daily settlement still to come (2**62: none)
        first_expiry = self._expiries[0][0] if self._expiries else 2**62
        return min(first_expiry, self._next_settlement)

    def _next_event_step(self, s: int, end: int) -> int:
        # the first step after ``s`` (at most ``end``) at which a funding stamp, an expiry or
        # a daily settlement is processed
        times = self.feed.steps.times
        for f in self.feed.symbols.values():
            if f.funding_ts and f.next_funding < len(f.funding_ts):
                end = min(end, bisect_right(times, f.funding_ts[f.next_funding]))
        if self._expiries:
            end = min(end, bisect_left(times, self._expiries[0][0]))
        if self._next_settlement < 2**62:
            end = min(end, bisect_left(times, self._next_settlement))
        return end

    def _skip(self, s: int, wake: bytearray) -> int:
        # the last step before anything can happen: a wake signal, a funding stamp, an expiry,
        # a daily settlement, or the end of the margin block (a step that is not ok, or one
        # the block does not cover); the steps skipped keep the block's states, and every
        # feed's cursor moves with them
        if self.account.version != self.margin.block_key[0] \
                or self.orders_version != self.margin.block_key[1]:
            return s  # on_bar changed the account (e.g. its leverage): evaluate the next step
        times = self.feed.steps.times
        n = len(times)
        end = wake.find(1, s + 1)
        end = self._next_event_step(s, n if end < 0 else end)
        end = min(end, self.margin.block_end, self.margin.block_bad)
        if end - s <= _MIN_SKIP:
            return s  # a short gap is cheaper stepped through than searched
        last = end - 1
        for f in self.feed.symbols.values():
            f.idx = last
        self.step = last
        self.now_ms = times[last]
        return last

    def _wake_steps(self) -> bytearray | None:
        # per clock step: 1 where a wake_on signal's symbol closes a bar with a true value
        if not self.wake_signals:
            return None
        times = np.frombuffer(self.feed.steps.times, dtype="int64")
        on = np.zeros(len(times), dtype=bool)
        for sig in self.wake_signals:
            f = sig._src
            idx = f.bar_at(times)
            moved = np.empty(len(idx), dtype=bool)
            moved[:1] = idx[:1] >= 0
            moved[1:] = idx[1:] != idx[:-1]
            values = np.asarray(sig._values, dtype="float64")
            true = np.nan_to_num(values, nan=0.0) != 0.0
            on |= moved & true[np.clip(idx, 0, None)]
        return bytearray(on.astype("uint8").tobytes())

    def _call(self, hook: str, func: Any, arg: Any) -> None:
        try:
            if arg is None:
                func(self.ctx)
            else:
                func(self.ctx, arg)
        except (StrategyError, PhaseError, ConfigError, DataError):
            raise
        except Exception as exc:
            ts = None if self.phase is Phase.START else self.now_ms
            raise StrategyError(self.strategy.name, hook, ts, exc) from exc

    def _deliver(self) -> None:
        pending, self.pending = self.pending, []
        s = self.strategy
        hooks = {"fill": s.on_fill, "funding": s.on_funding, "expiry": s.on_expiry,
                 "margin_call": s.on_margin_call, "liquidation": s.on_liquidation}
        for kind, event in pending:
            if self.stopped_reason is None:
                self._call(f"on_{kind}", hooks[kind], event)

    # -- what the margin engine hands back (margin.protocols.MarginHost) -------------------
    def emit(self, event: Any, hook: str) -> None:
        """Record a market event in the results and queue the strategy's ``on_<hook>``."""
        self.events.append(event)
        self.pending.append((hook, event))

    def stop(self, reason: str) -> None:
        """Stop trading (a bankruptcy the insurance fund could not cover): later orders are
        rejected with ``trading_halted`` and, with ``stop_on_bankruptcy``, the run ends."""
        if self.stopped_reason is None:
            self.stopped_reason = reason

    # -- views ----------------------------------------------------------------------------
    def position_view(self, symbol: str) -> PositionView:
        """A read-only view of the position in ``symbol``."""
        f = self.feed_of(symbol)
        pos = self.account.positions.get(symbol)
        mark = f.mc[f.idx] if f.idx >= 0 else float("nan")
        if pos is None or pos.qty == 0:
            return PositionView(symbol=symbol, qty=0.0, entry_price=0.0, mark=mark,
                                unrealized_pnl=0.0, notional=0.0,
                                leverage=self.account.leverage.get(symbol,
                                                                   self.account.default_leverage),
                                isolated_margin=None)
        inst = f.instrument
        upnl = self.margin.position_value(pos, mark, f)
        return PositionView(symbol=symbol, qty=pos.qty_f, entry_price=pos.entry_f, mark=mark,
                            unrealized_pnl=upnl, notional=inst.notional(pos.qty_f, mark),
                            leverage=pos.leverage,
                            isolated_margin=None if pos.isolated_margin is None
                            else float(pos.isolated_margin))

    def account_view(self) -> AccountView:
        """The account at the last evaluation (re-evaluated at current closes)."""
        st = self.margin.evaluate_now()
        return AccountView(equity=st.equity, wallet_balance=st.wallet_balance,
                           margin_balance=st.margin_balance, unrealized_pnl=st.unrealized_pnl,
                           initial_margin=st.initial_margin,
                           maintenance_margin=st.maintenance_margin,
                           margin_ratio=st.margin_ratio, available=st.available,
                           balances=dict(self.account.balances), status=st.status,
                           greeks=self.margin.greeks() if self.margin._holds_options() else {})

    def warn(self, message: str) -> None:
        """Record a warning for the results (and emit it as a BacktesterWarning)."""
        self.warnings.append(message)
        warnings.warn(message, BacktesterWarning, stacklevel=2)
