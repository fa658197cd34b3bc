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

import logging
import math
import warnings
from array import array
from bisect import bisect_left, bisect_right
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from backtester.accounting import Account, EntryKind
from backtester.config import FillMode, FundingMode, RunConfig
from backtester.context import AccountView, Context, OrderTicket, Phase, PositionView
from backtester.data.feed import Feed, SymbolFeed
from backtester.errors import (
    BacktesterWarning,
    ConfigError,
    DataError,
    PhaseError,
    StrategyError,
    closest,
)
from backtester.events import FundingPaid, InstrumentExpired
from backtester.execution import BarPath, Match, SlippageModel, match_order
from backtester.hints import option
from backtester.margin import kernel
from backtester.margin.state import MarginEngine
from backtester.numeric import ZERO, dec, to_money, to_price
from backtester.orders import (
    CancelReason,
    Fill,
    Order,
    OrderCancelled,
    OrderRecord,
    OrderRejected,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
    validate_order,
)
from backtester.timeutil import ms_to_iso

if TYPE_CHECKING:
    from backtester.margin.profile_data import ProfileData
    from backtester.strategy import Strategy

__all__ = ["Engine"]

#: the per-step account series and their columns in the margin kernel's records
_REC_COLUMNS = {"equity": kernel.REC_EQUITY, "wallet": kernel.REC_WALLET,
                "unrealized_pnl": kernel.REC_UPNL, "margin_balance": kernel.REC_MB,
                "margin_balance_close": kernel.REC_MB_CLOSE,
                "initial_margin": kernel.REC_IM, "maintenance_margin": kernel.REC_MM,
                "margin_ratio": kernel.REC_RATIO, "available": kernel.REC_AVAILABLE,
                "gross_exposure": kernel.REC_GROSS, "net_exposure": kernel.REC_NET,
                "collateral_fixed": kernel.REC_COLL_FIXED,
                "collateral_moving": kernel.REC_COLL_MOVING}
_POS_KEYS = ("ts", "symbol", "qty", "entry_price", "mark", "unrealized_pnl", "notional",
             "isolated_margin")

_LIQUIDATION = "liquidation"  # the tag and liquidity of a liquidation's order and fill
_MIN_SKIP = 16  # wake_on: gaps of at most this many steps are stepped through, not skipped

logger = logging.getLogger(__name__)


class Engine:
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
                                    for k, col in _REC_COLUMNS.items()}
        self.rec["ts"] = feed.steps.times  # shared with the clock; copied if a run stops early
        #: indicators given to ctx.wake_on (empty: on_bar runs at every step)
        self.wake_signals: list[Any] = []
        #: position rows; "symbol" holds codes into ``symbols`` (the feed's sorted symbols),
        #: ``symbol_code`` maps a symbol to its code, ``instruments`` are in code order
        self.symbols = sorted(feed.symbols)
        self.symbol_code = {s: k for k, s in enumerate(self.symbols)}
        self.instruments = [feed.symbols[s].instrument for s in self.symbols]
        self.pos_rec: dict[str, Any] = {
            k: array("i" if k == "symbol" else "q" if k == "ts" else "d") for k in _POS_KEYS}
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
        s = -1
        while s + 1 < n:
            s += 1
            t = times[s]
            feeds = groups[ids[s]]
            self.step = s
            self.now_ms = t
            for f in feeds:
                f.idx += 1
                if orders_by_symbol.get(f.symbol):
                    self._execute(f)
                elif f.funding_ts and f.next_funding < len(f.funding_ts) \
                        and f.funding_ts[f.next_funding] < t:
                    self._funding(f, before_ms=t)
                if special_funding and f.symbol in special_funding:
                    self._special_funding(f)
            if self._expiries and self._expiries[0][0] <= t:
                self._expire(t)
            if t >= self._next_settlement:
                self._daily_settlement(t)
            # margin: the step's state is the block's unless the book changed, the block is
            # used up or the step is not ok (then the monitor evaluates, calls, liquidates)
            if account.version != margin.block_key[0] or self.orders_version != \
                    margin.block_key[1] or s >= margin.block_end or s >= margin.block_bad:
                margin.step(s)
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

    def _finish_records(self, n_done: int) -> None:
        # the last block's records, then drop the steps a stopped run did not reach
        self.margin.finish(n_done)
        if n_done < len(self.rec["ts"]):
            self.rec["ts"] = self.rec["ts"][:n_done]  # a copy: the clock keeps its steps
            for k in _REC_COLUMNS:
                self.rec[k] = self.rec[k][:n_done]
        self.step = n_done  # records from on_finish fall after the last step (dropped)

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

    def record_greeks(self, step: int, greeks: dict[str, float]) -> None:
        """Record the account greeks of ``step`` (the margin monitor calls this per step while
        options are held): in USD terms, summed over underlyings — delta (USD per 100 % move of
        every underlying), gamma (USD change of delta per 1 % move), vega (USD per vol point),
        theta (USD per day); the per-underlying detail is kept beside them."""
        totals = {"delta": 0.0, "gamma": 0.0, "vega": 0.0, "theta": 0.0,
                  "portfolio_initial_margin": greeks.pop("portfolio_initial_margin", float("nan"))}
        prices: dict[str, float] = {}  # per coin, looked up once
        for key, value in greeks.items():
            coin, _, name = key.partition(".")
            px = prices.get(coin)
            if px is None:
                px = prices[coin] = self._coin_usd(coin, step)
            if name == "delta":
                totals["delta"] += value * px
            elif name == "gamma":
                totals["gamma"] += value * px * px / 100.0
            elif name in ("vega", "theta"):
                totals[name] += value
        self.greek_rec.append((step, totals, dict(greeks)))

    def _coin_usd(self, coin: str, step: int) -> float:
        # a coin's USD price (index close) at ``step``: 1 for stablecoins
        if self.feed.is_stable(coin):
            return 1.0
        f = self.feed.index_feeds.get(coin)
        if f is None:
            return 0.0
        i = int(f.bar_at(np.asarray([self.feed.steps.times[step]]))[0])
        return f.ic[i] if i >= 0 else f.io[0]

    # -- execution ------------------------------------------------------------------------
    def _execute(self, f: SymbolFeed) -> None:
        i = f.idx
        bar_open = f.ts[i]
        path = BarPath(f.o[i], f.h[i], f.l[i], f.c[i])
        matches: list[tuple[float, int, Order, Match]] = []
        expired_ioc: list[Order] = []
        for order in list(self.by_symbol.get(f.symbol, ())):
            if order.created_ms > bar_open:
                continue  # submitted after this bar opened: eligible from the next bar
            m = match_order(order, path)
            if order.tif is not TimeInForce.GTC and order.order_type is not OrderType.MARKET \
                    and (m is None or m.t > 0.0):
                expired_ioc.append(order)
                continue
            if m is not None:
                matches.append((m.t, order.id, order, m))
        matches.sort(key=lambda x: (x[0], x[1]))
        ambiguous = self._resolve_oco(matches)
        # funding stamped before this bar's open (a gap in the data) sees the old position
        self._funding(f, before_ms=bar_open)
        k = 0
        while k < len(matches) and matches[k][0] == 0.0:
            _, _, order, m = matches[k]
            if order.id in self.orders:
                self._fill(order, f, m, is_ambiguous=order.id in ambiguous)
            k += 1
        # stamps at the open see the fills at the open; stamps inside the bar only those
        self._funding(f, before_ms=f.ts[i] + f.tf_ms)
        for _, _, order, m in matches[k:]:
            if order.id in self.orders:
                self._fill(order, f, m, is_ambiguous=order.id in ambiguous)
        for order in expired_ioc:
            if order.id in self.orders:
                self._remove(order, CancelReason.FOK_NOT_FILLED if order.tif is TimeInForce.FOK
                             else CancelReason.IOC_NOT_FILLED)

    def _resolve_oco(self, matches: list[tuple[float, int, Order, Match]]) -> set[int]:
        # both legs of an OCO pair touched in one bar: the bar cannot say which came first, so
        # the outcome worse for the strategy (the stop) is taken and a warning recorded.
        ids = {m[1] for m in matches}
        ambiguous: set[int] = set()
        drop: set[int] = set()
        for _, oid, order, _ in matches:
            sib = order.oco_id
            if sib is not None and sib in ids and oid not in drop:
                stop_id = oid if order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) \
                    else sib
                other = sib if stop_id == oid else oid
                ambiguous.add(stop_id)
                drop.add(other)
                msg = (f"ambiguous bar at {ms_to_iso(self.now_ms)}: stop-loss and take-profit "
                       f"of {order.symbol} both touched; the stop-loss was taken")
                self.warnings.append(msg)
        matches[:] = [m for m in matches if m[1] not in drop]
        return ambiguous

    def _fill(self, order: Order, f: SymbolFeed, m: Match, *, is_ambiguous: bool = False) -> None:
        inst = f.instrument
        pos = self.account.position(inst)
        qty = order.qty
        if order.is_reduce_only:
            if pos.qty == 0 or (pos.qty > 0) == (order.side is Side.BUY):
                self._remove(order, CancelReason.REDUCE_ONLY_NOTHING_TO_REDUCE)
                return
            qty = min(qty, abs(pos.qty))
        price = m.price
        if not m.is_maker:
            price = self.slippage.apply(order.side, price, float(qty), f.v[f.idx])
        fill_px = to_price(price, inst.tick_size)
        if fill_px <= 0:
            fill_px = inst.tick_size
        signed = qty if order.side is Side.BUY else -qty
        fee = self._fee(inst, signed, fill_px, is_maker=m.is_maker, f=f)
        old_qty = pos.qty
        realized = self.account.apply_fill(self.now_ms, inst, signed, fill_px, fee,
                                           ref=f"order {order.id}")
        self.margin.on_fill(pos, old_qty, fill_px)
        # the fill happened in its bar: at the open, or on the path inside the bar (its time
        # there unknown: the bar's open, with the path position), or at the close
        bar_open = f.ts[f.idx]
        fill = Fill(ts_ms=bar_open + f.tf_ms if m.t >= 3.0 else bar_open, order_id=order.id,
                    symbol=inst.symbol, qty=signed, price=fill_px, fee=fee,
                    fee_asset=inst.settle, liquidity="maker" if m.is_maker else "taker",
                    realized_pnl=realized, tag=order.tag, is_ambiguous=is_ambiguous,
                    step_ms=self.now_ms, path_time=m.t)
        self.fills.append(fill)
        self.pending.append(("fill", fill))
        self._remove(order, None)
        if order.oco_id is not None and order.oco_id in self.orders:
            self._remove(self.orders[order.oco_id], CancelReason.OCO)
        if order.stop_loss is not None or order.take_profit is not None:
            self._attach_exits(order, qty)

    def _fee(self, inst: Any, qty: Decimal, price: Decimal, *, is_maker: bool,
             f: SymbolFeed) -> Decimal:
        if inst.is_option:
            und = dec(f.ic[f.idx])
            return inst.fee_exact(qty, price, is_maker=is_maker, underlying_price=und,
                                  option_fee_cap=self.profile.option_fee_cap)
        return inst.fee_exact(qty, price, is_maker=is_maker)

    def _attach_exits(self, parent: Order, qty: Decimal) -> None:
        side = Side.SELL if parent.side is Side.BUY else Side.BUY
        ids = []
        if parent.stop_loss is not None:
            ids.append(self._place(parent.symbol, side, qty, OrderType.STOP, None,
                                   parent.stop_loss, TimeInForce.GTC, True, False,
                                   parent.tag or "stop_loss", parent_id=parent.id))
        if parent.take_profit is not None:
            ids.append(self._place(parent.symbol, side, qty, OrderType.TAKE_PROFIT, None,
                                   parent.take_profit, TimeInForce.GTC, True, False,
                                   parent.tag or "take_profit", parent_id=parent.id))
        if len(ids) == 2:
            self.orders[ids[0]].oco_id = ids[1]
            self.orders[ids[1]].oco_id = ids[0]

    def _remove(self, order: Order, reason: CancelReason | None) -> None:
        if self.orders.pop(order.id, None) is not None:
            self.orders_version += 1
        record = self._order_rec.get(order.id)
        if record is not None:
            record.status = OrderStatus.FILLED if reason is None else OrderStatus.CANCELLED
            record.reason = reason
            record.closed_ms = self.now_ms
        lst = self.by_symbol.get(order.symbol)
        if lst is not None and order in lst:
            lst.remove(order)
        if reason is not None:
            ev = OrderCancelled(ts_ms=self.now_ms, order_id=order.id, symbol=order.symbol,
                                reason=reason)
            self.cancels.append(ev)

    # -- settlement -----------------------------------------------------------------------
    def _funding(self, f: SymbolFeed, *, before_ms: int) -> None:
        stamps = f.funding_ts
        j = f.next_funding
        n = len(stamps)
        while j < n and stamps[j] < before_ms:
            self._pay_funding(f, stamps[j], f.funding_rate[j])
            j += 1
        f.next_funding = j

    def _special_funding(self, f: SymbolFeed) -> None:
        pos = self.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0:
            return
        if not f.funding_ts:
            self._check_funding_coverage(f)
            return
        # continuous accrual (Deribit): the 8-hour rate in force at the bar's open, pro rata
        # for the bar's length, on the position held through the bar, at the bar's mark close
        j = f.next_funding - 1
        if j < 0 or f.funding_rate[j] != f.funding_rate[j]:  # no rate in force: uncovered
            self._uncovered_funding(f, f.ts[f.idx])  # this bar's accrual
            return
        i = f.idx
        mark = f.mc[i]
        rate = f.funding_rate[j] * f.tf_ms / (8 * 3_600_000)
        self._book_funding(f, pos, self.now_ms, rate, mark, "mark" if not f.mark_missing[i]
                           else "trade")

    def _check_funding_coverage(self, f: SymbolFeed) -> None:
        pos = self.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0 or f.symbol in self._funding_checked:
            return
        if not f.funding_ts:
            if self.config.funding is FundingMode.HISTORY_OR_ZERO:
                self.funding_uncovered.setdefault(f.symbol, []).append(self.now_ms)
                self._funding_checked.add(f.symbol)
                return
            msg = (f"no funding history for {f.symbol}, which is held at "
                   f"{ms_to_iso(self.now_ms)}: fetch its funding, or run with "
                   f"{option('funding', 'history_or_zero')} to charge zero where history is "
                   f"missing ({option('funding', 'zero')}: no funding at all)")
            raise DataError(msg)
        self._funding_checked.add(f.symbol)

    def _uncovered_funding(self, f: SymbolFeed, stamp: int) -> None:
        # a funding stamp outside the symbol's history (feed._set_funding) while it is held:
        # an error naming the uncovered span, or zero when the run opted in (then warned)
        pos = self.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0:
            return
        if self.config.funding is FundingMode.HISTORY_OR_ZERO:
            self.funding_uncovered.setdefault(f.symbol, []).append(stamp)
            return
        first, last = f.funding_covered or (stamp, stamp)
        if stamp < first:
            where = f"before its funding history starts at {ms_to_iso(first)}"
            span = f"from {ms_to_iso(f.ts[0])} to {ms_to_iso(first)}"
        else:
            where = f"after its funding history ends at {ms_to_iso(last)}"
            span = f"from {ms_to_iso(last)} to {ms_to_iso(f.ts[-1] + f.tf_ms)}"
        msg = (f"{f.symbol} is held at the funding time {ms_to_iso(stamp)}, {where}: no "
               f"funding rates {span}; fetch funding for that span, or run with "
               f"{option('funding', 'history_or_zero')} to charge zero there")
        raise DataError(msg)

    def _pay_funding(self, f: SymbolFeed, stamp: int, rate: float) -> None:
        pos = self.account.positions.get(f.symbol)
        if self.config.funding is FundingMode.ZERO or pos is None or pos.qty == 0 \
                or self.profile.funding_style == "continuous":
            return
        if rate != rate:  # a stamp outside the history (NaN rate)
            self._uncovered_funding(f, stamp)
            return
        mark, source = self._funding_mark(f, stamp)
        self._book_funding(f, pos, stamp, rate, mark, source)

    def _book_funding(self, f: SymbolFeed, pos: Any, stamp: int, rate: float, mark: float,
                      source: str) -> None:
        inst = f.instrument
        # payment = size x contract size x mark x rate (inverse: face / mark x rate, in coin);
        # a positive rate makes longs pay.
        if inst.is_linear:
            amount = to_money(-pos.qty * inst.contract_size * dec(mark) * dec(rate))
        else:
            amount = to_money(-pos.qty * inst.contract_size / dec(mark) * dec(rate))
        if amount != 0:
            self.account.book(stamp, EntryKind.FUNDING, inst.settle, amount, symbol=f.symbol,
                              ref=f"rate {rate}")
        pos.funding -= amount
        ev = FundingPaid(ts_ms=stamp, symbol=f.symbol, rate=rate, mark=mark, qty=pos.qty,
                         amount=amount, asset=inst.settle, mark_source=source)
        self.events.append(ev)
        self.pending.append(("funding", ev))

    @staticmethod
    def _funding_mark(f: SymbolFeed, stamp: int) -> tuple[float, str]:
        # the open of the mark candle opening at T, else the last mark close before T (mark
        # candles of another timeframe than the trade bars: read as given)
        raw = f.mark_at_stamp(stamp)
        if raw is not None:
            return raw, "mark"
        i = f.idx
        while i >= 0 and f.ts[i] > stamp:
            i -= 1
        if i >= 0 and f.ts[i] == stamp:
            return f.mo[i], "trade" if f.mark_missing[i] else "mark"
        j = i if i >= 0 and f.ts[i] + f.tf_ms <= stamp else i - 1
        if j < 0:
            j = 0
        return f.mc[j], "trade" if f.mark_missing[j] else "mark"

    def _daily_settlement(self, t: int) -> None:
        # Deribit-style session settlement at hh:00 UTC: each future's unrealized PnL at the
        # mark is realized into the session (its entry price becomes the settlement mark), then
        # the session's PnL and funding move into the wallet. Intraday they count in equity only.
        day = 86_400_000
        stamp = self._next_settlement
        while self._next_settlement <= t:
            self._next_settlement += day
        acct = self.account
        for sym, pos in sorted(acct.positions.items()):
            inst = pos.instrument
            if pos.qty == 0 or inst.is_option:
                continue
            f = self.feed.symbols[sym]
            mark = dec(f.mc[f.idx])
            pnl = inst.pnl_exact(pos.qty, pos.entry_price, mark)
            if pnl != 0:
                acct.book(stamp, EntryKind.TRADE_PNL, inst.settle, pnl, symbol=sym,
                          ref="daily settlement")
                pos.realized_pnl += pnl
            pos.entry_price = mark
            pos.entry_f = float(mark)
            acct.version += 1  # the position changed outside Account's methods
        acct.settle_session(stamp)

    def _expire(self, t: int) -> None:
        while self._expiries and self._expiries[0][0] <= t:
            expiry_ms, sym = self._expiries.pop(0)
            self._settle_expiry(self.feed.symbols[sym], expiry_ms)

    def _settle_expiry(self, f: SymbolFeed, expiry_ms: int) -> None:
        """Cash-settle an expiring future or option at the delivery price and cancel its orders."""
        self.cancel(None, symbol=f.symbol, reason=CancelReason.EXPIRED)
        price, source = self._delivery_price(f, expiry_ms)
        pos = self.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0:
            return
        inst = f.instrument
        qty = pos.qty
        s = dec(price)
        if inst.is_option:
            payoff = to_money(qty * inst.contract_size * dec(inst.option_payoff(price)))
            fee_base = abs(qty) * inst.contract_size * (s if inst.is_linear else Decimal(1))
            fee = to_money(min(self.profile.delivery_fee_rate * fee_base,
                               self.profile.option_fee_cap * abs(payoff)))
            pnl = payoff
            if payoff != 0:
                self.account.book(expiry_ms, EntryKind.SETTLEMENT, inst.settle, payoff,
                               symbol=f.symbol, ref="option expiry")
            self.account.close_settled(pos)
        else:
            fee = to_money(inst.notional_exact(qty, s) * self.profile.delivery_fee_rate)
            pnl = self.account.apply_fill(expiry_ms, inst, -qty, s, ZERO, ref="expiry")
            # apply_fill booked the PnL as trade PnL; settlement is labelled by the event
        if fee != 0:
            self.account.book(expiry_ms, EntryKind.DELIVERY_FEE, inst.settle, -fee,
                           symbol=f.symbol, ref="delivery fee")
            pos.fees += fee
        ev = InstrumentExpired(ts_ms=expiry_ms, symbol=f.symbol, qty=qty, settlement_price=price,
                               pnl=pnl, fee=fee, asset=inst.settle, price_source=source)
        self.emit(ev, "expiry")

    def _delivery_price(self, f: SymbolFeed, expiry_ms: int) -> tuple[float, str]:
        # index TWAP over the profile's window before expiry, from the index bars that overlap
        # it (weighted by overlap, each bar at its close); else the last index, else the mark
        g = self.feed.index_feeds.get(f.instrument.base, f)
        start = expiry_ms - self.profile.delivery_window_ms
        num = den = 0.0
        for i in range(max(g.idx, 0), -1, -1):
            a, b = g.ts[i], g.ts[i] + g.tf_ms
            if b <= start:
                break
            overlap = min(b, expiry_ms) - max(a, start)
            if overlap > 0:
                num += g.ic[i] * overlap
                den += overlap
        if den > 0 and (g.has_index or g.has_mark):
            return num / den, "index_twap" if g.has_index else "mark_twap"
        if g.idx >= 0:
            return g.ic[g.idx], "index" if g.has_index else "trade"
        return f.mc[max(f.idx, 0)], "mark"

    # -- order submission (called from the context) ---------------------------------------
    def submit(self, symbol: str, side: Side, qty: Decimal | float | str, *,
               order_type: OrderType, price: float | Decimal | None,
               stop_price: float | Decimal | None, tif: TimeInForce | None, reduce_only: bool,
               post_only: bool, tag: str, stop_loss: float | Decimal | None,
               take_profit: float | Decimal | None) -> OrderTicket:
        """Validate and place an order; rejections are recorded events, not exceptions."""
        if self.phase is not Phase.BAR:
            msg = f"orders cannot be placed in on_{self.phase.value}; place them from on_bar"
            raise PhaseError(msg)
        f = self.feed_of(symbol)
        refused = self._refuse_non_finite(symbol, side, order_type, tag, qty=qty, limit=price,
                                          stop=stop_price, stop_loss=stop_loss,
                                          take_profit=take_profit)
        if refused is not None:
            return refused
        q = _as_decimal("qty", qty)
        if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and price is None:
            msg = f"{order_type} order on {symbol} needs a limit price"
            raise ConfigError(msg)
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT) \
                and stop_price is None:
            msg = f"{order_type} order on {symbol} needs a trigger price (stop=)"
            raise ConfigError(msg)
        if tif is None:
            tif = TimeInForce.IOC if order_type is OrderType.MARKET else TimeInForce.GTC
        oid = self._place(symbol, side, q, order_type,
                          None if price is None else _as_decimal("limit", price),
                          None if stop_price is None else _as_decimal("stop", stop_price),
                          tif, reduce_only, post_only, tag,
                          stop_loss=None if stop_loss is None else _as_decimal("stop_loss",
                                                                               stop_loss),
                          take_profit=None if take_profit is None
                          else _as_decimal("take_profit", take_profit), check=True)
        order = self.orders.get(oid)
        rejection = self.rejections[-1] if order is None and self.rejections and \
            self.rejections[-1].order_id == oid else None
        if order is not None and self.config.fill is FillMode.CLOSE and \
                order.order_type is OrderType.MARKET and f.idx >= 0:
            c = f.c[f.idx]
            self._fill(order, f, Match(t=3.0, price=c, is_maker=False, is_gap=False))
        return OrderTicket(order_id=oid, rejection=rejection)

    def _refuse_non_finite(self, symbol: str, side: Side, order_type: OrderType, tag: str,
                           **numbers: Decimal | float | str | int | None) -> OrderTicket | None:
        # a NaN or infinite quantity or price (a strategy's division by zero, an empty
        # window's mean) is refused like any other order: a rejection event, not an abort
        for name, value in numbers.items():
            if value is None or not _is_non_finite(value):
                continue
            oid = self._next_id
            self._next_id += 1
            reason = RejectReason.QTY_NOT_FINITE if name == "qty" else \
                RejectReason.PRICE_NOT_FINITE
            rej = OrderRejected(ts_ms=self.now_ms, order_id=oid, symbol=symbol, reason=reason,
                                message=f"{side} {order_type} order on {symbol}: {name} "
                                        f"{value!r} is not a finite number", tag=tag)
            self.rejections.append(rej)
            return OrderTicket(order_id=oid, rejection=rej)
        return None

    def _place(self, symbol: str, side: Side, qty: Decimal, order_type: OrderType,
               price: Decimal | None, stop_price: Decimal | None, tif: TimeInForce,
               reduce_only: bool, post_only: bool, tag: str, *, parent_id: int | None = None,
               stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
               check: bool = False) -> int:
        oid = self._next_id
        self._next_id += 1
        order = Order(id=oid, symbol=symbol, side=side, qty=qty, order_type=order_type,
                      created_ms=self.now_ms, price=price, stop_price=stop_price, tif=tif,
                      is_reduce_only=reduce_only, is_post_only=post_only, tag=tag,
                      stop_loss=stop_loss, take_profit=take_profit, parent_id=parent_id)
        record = OrderRecord(order=order)
        self.order_log.append(record)
        self._order_rec[oid] = record
        if check:
            rej = self._check(order)
            if rej is not None:
                self.rejections.append(rej)
                record.status = OrderStatus.REJECTED
                record.reason = rej.reason
                record.closed_ms = self.now_ms
                return oid
        self.orders[oid] = order
        self.orders_version += 1
        self.by_symbol.setdefault(symbol, []).append(order)
        return oid

    def _check(self, order: Order) -> OrderRejected | None:
        f = self.feed.symbols[order.symbol]
        inst = f.instrument
        last = f.c[f.idx] if f.idx >= 0 else float("nan")

        def reject(reason: RejectReason, message: str) -> OrderRejected:
            return OrderRejected(ts_ms=self.now_ms, order_id=order.id, symbol=order.symbol,
                                 reason=reason, message=message, tag=order.tag)

        if f.idx < 0:
            return reject(RejectReason.NO_MARKET_DATA,
                          f"no bar of {order.symbol} has closed yet at "
                          f"{ms_to_iso(self.now_ms)}")
        if inst.is_expired(self.now_ms):
            return reject(RejectReason.INSTRUMENT_EXPIRED, f"{order.symbol} has expired")
        if self.stopped_reason is not None:
            return reject(RejectReason.TRADING_HALTED, f"trading stopped: {self.stopped_reason}")
        rej = validate_order(order, inst, ref_price=last)
        if rej is not None:
            return rej
        if order.is_post_only and order.price is not None:
            takes = float(order.price) >= last if order.side is Side.BUY else \
                float(order.price) <= last
            if takes:
                return reject(RejectReason.POST_ONLY_WOULD_TAKE,
                              f"post-only {order.side} limit {order.price} would take at last "
                              f"price {last} on {order.symbol}")
        pos = self.account.positions.get(order.symbol)
        have = pos.qty if pos is not None else ZERO
        if order.is_reduce_only and (have == 0 or (have > 0) == (order.side is Side.BUY)):
            return reject(RejectReason.REDUCE_ONLY_WOULD_INCREASE,
                          f"reduce-only {order.side} of {order.qty} {order.symbol} would not "
                          f"reduce the position {have}")
        if order.is_reduce_only:
            return None  # reduce-only orders are always admitted
        if not self.config.check_initial_margin:
            return None  # survival re-runs keep the run's trades whatever the collateral
        return self.margin.admit(order, f)

    def cancel(self, order_id: int | None, *, symbol: str | None,
               reason: CancelReason | str) -> int:
        """Cancel one order, all orders of a symbol, or all orders; ``reason`` is a
        :class:`~backtester.orders.CancelReason` (or its value)."""
        reason = CancelReason(reason)
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None:
                return 0
            self._remove(order, reason)
            return 1
        victims = [o for o in self.orders.values() if symbol is None or o.symbol == symbol]
        for o in victims:
            self._remove(o, reason)
        return len(victims)

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

    def record_liquidation_fill(self, ts_ms: int, symbol: str, qty: Decimal, price: Decimal,
                                fee: Decimal, realized_pnl: Decimal) -> Fill:
        """Record a liquidation's fill (already booked to the account by the liquidation) as
        the fill of an order of its own: a reduce-only market order tagged ``liquidation`` in
        the order log, filled in full at ``ts_ms`` (``qty`` signed contracts, ``price`` the
        liquidation or bankruptcy price, ``fee`` the liquidation fee in the settle asset)."""
        inst = self.feed.symbols[symbol].instrument
        oid = self._next_id
        self._next_id += 1
        order = Order(id=oid, symbol=symbol, side=Side.BUY if qty > 0 else Side.SELL,
                      qty=abs(qty), order_type=OrderType.MARKET, created_ms=ts_ms,
                      tif=TimeInForce.IOC, is_reduce_only=True, tag=_LIQUIDATION)
        record = OrderRecord(order=order, status=OrderStatus.FILLED, closed_ms=ts_ms)
        self.order_log.append(record)
        self._order_rec[oid] = record
        fill = Fill(ts_ms=ts_ms, order_id=oid, symbol=symbol, qty=qty, price=price, fee=fee,
                    fee_asset=inst.settle, liquidity=_LIQUIDATION, realized_pnl=realized_pnl,
                    tag=_LIQUIDATION)
        self.fills.append(fill)
        return fill

    def set_leverage(self, symbol: str, leverage: float) -> None:
        """Set the leverage of ``symbol`` after checking it against the profile's brackets."""
        f = self.feed_of(symbol)
        if not leverage > 0:
            msg = f"leverage for {symbol} must be positive, got {leverage}"
            raise ConfigError(msg)
        self.profile.check_leverage(symbol, float(leverage),
                                    instrument_max=f.instrument.max_leverage)
        self.account.set_leverage(symbol, float(leverage))

    def record_user(self, values: dict[str, float]) -> None:
        """Store user series values for the current step."""
        n = max(self.step, 0)  # the current step is recorded after on_bar
        for k, v in values.items():
            series = self.user_records.setdefault(k, [])
            if len(series) < n:
                series.extend([float("nan")] * (n - len(series)))
            if len(series) == n:
                series.append(float(v))
            else:
                series[n] = float(v)

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


def _is_non_finite(value: Decimal | float | str | int) -> bool:
    if isinstance(value, Decimal):
        return not value.is_finite()
    if isinstance(value, str):
        try:
            return not Decimal(value.strip()).is_finite()
        except ArithmeticError:
            return False  # not a number at all: _as_decimal names it
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _as_decimal(name: str, value: Decimal | float | str | int) -> Decimal:
    try:
        d = dec(value)
    except (ValueError, ArithmeticError):
        msg = f"{name} must be a number, got {value!r}"
        raise ConfigError(msg) from None
    if not d.is_finite():
        msg = f"{name} must be finite, got {value!r}"
        raise ConfigError(msg)
    return d
