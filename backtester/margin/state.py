"""Margin state every bar, order admission, expiry settlement and the liquidation process.

Valuation currency is USD: a collateral asset is worth ``balance x index price`` (stablecoins
1 USD) in equity and ``x haircut`` in the margin balance. Requirements add up in cross margin:
each position's initial and maintenance margin is computed on its own and summed; the pool
offsets PnL, not requirements (DESIGN §4).

Every number comes from the margin kernel (:mod:`backtester.margin.kernel`), evaluated over the
run's arrays (:mod:`backtester.margin.book`): the per-bar check evaluates the constant book over
a **block** of coming bars in one call (the kernel writes each bar's state into the run's
records), and the loop consumes the statuses bar by bar; any change of the book (a fill, a
cash flow, an expiry, a leverage or allocation change, a liquidation step, a working order)
discards the rest of the block and recomputes from the bar where it happened. Bar k's values
are read at bar k only. Blocks are exact: a block of any length gives the states a block of
one bar gives.

Collateral pools (:mod:`backtester.margin.pools`): one USD pool (bybit, okx, portfolio mode),
or one pool per asset (binance-usdm per settle asset, binance-coinm per coin, deribit per
currency) where a position draws only on its settle asset's pool. Each pool has its own
margin balance, requirements and status; with several pools the account's fields are the
totals and the worst pool's ratio and status (see :class:`MarginState`).

Intrabar check (default): positions and collateral are grouped by underlying; each group is
evaluated with all its legs at the bar's mark low, mark high and mark close (collateral at the
index low/high/close) and the worst of the three is taken per group (per group and pool when
there are several pools). A pool is liquidated when its summed maintenance margin reaches its
margin balance; its liquidation closes only its own positions.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

from backtester.accounting import Position
from backtester.config import MarginCheck, MarginMode
from backtester.instruments import OptionType
from backtester.margin import kernel as k
from backtester.margin.book import Book, BookView, PriceStore, build_book
from backtester.margin.liquidation import LiquidationMixin
from backtester.margin.option_steps import OptionSteps, unit_greeks
from backtester.margin.pools import PoolsMixin, PoolState
from backtester.margin.portfolio import PortfolioPosition, portfolio_margin
from backtester.margin.status import MarginStatus
from backtester.numeric import dec
from backtester.orders import OrderRejected, RejectReason
from backtester.pricing import black76

if TYPE_CHECKING:
    from backtester.data.feed import SymbolFeed
    from backtester.margin.decisions import Decisions
    from backtester.margin.profile import ProfileData
    from backtester.margin.protocols import MarginHost
    from backtester.orders import Order

__all__ = ["MarginEngine", "MarginState"]

_INF = float("inf")
_MS_PER_YEAR = 365.0 * 86_400_000
_STATUS = (MarginStatus.OK, MarginStatus.CALL, MarginStatus.LIQUIDATE)
_BLOCK_MIN = 8
_BLOCK_MAX = 4096
# the kernel's optional inputs, when not given
_NO_CHOICE = np.full((1, 1), 2, dtype=np.int64)
_NO_PM = np.full(2, np.nan)
_NO_EXCESS = np.zeros((0, 1, 3))
_NO_DIST = np.zeros((0, 2, 1))
# position rows kept before they are moved into the engine's records (grown for a longer flush)
_ROWS_BUF = 1 << 15


def _least(values: Sequence[float] | np.ndarray) -> int:
    # the first scenario (0 low, 1 high, 2 close) with the least excess
    best_w, best = 2, _INF
    for w in (0, 1, 2):
        if values[w] < best:
            best_w, best = w, values[w]
    return best_w


@dataclass(slots=True, kw_only=True)
class MarginState:
    """The account's margin at one evaluation, USD. ``margin_ratio`` = MM / margin balance.

    With one collateral pool the fields are that pool's and ``pools`` is empty. With several
    (:mod:`backtester.margin.pools`), as in the calculator: ``pools`` holds each pool's
    :class:`PoolState`; ``margin_balance``, ``initial_margin``, ``maintenance_margin`` and
    ``available`` are totals over the pools (an order needs its own pool's available);
    ``margin_ratio`` and ``status`` are the worst pool's (liquidate > call > ok); equity,
    wallet, PnL, exposures and the collateral split are account totals.
    """

    equity: float = 0.0
    wallet_balance: float = 0.0
    unrealized_pnl: float = 0.0
    margin_balance: float = 0.0
    initial_margin: float = 0.0
    maintenance_margin: float = 0.0
    margin_ratio: float = 0.0
    available: float = 0.0
    status: MarginStatus = MarginStatus.OK
    gross_exposure: float = 0.0
    net_exposure: float = 0.0
    distance_to_liquidation: float = _INF
    collateral_fixed: float = 0.0
    collateral_moving: float = 0.0
    #: unsettled session PnL and funding (daily-settlement profiles), USD: in stablecoins, in
    #: coins (part of the margin balance, not of the wallet's collateral split above)
    session_fixed: float = 0.0
    session_moving: float = 0.0
    #: per leg at the evaluated scenario: (symbol, qty, entry, mark, value, notional,
    #: isolated margin or NaN)
    positions: list[tuple[str, float, float, float, float, float, float]] = field(
        default_factory=list)
    greeks: dict[str, float] = field(default_factory=dict)
    pools: dict[str, PoolState] = field(default_factory=dict)
    #: per leg at the evaluated scenario: (initial, maintenance) margin, settle currency
    requirements: list[tuple[float, float]] = field(default_factory=list)


class MarginEngine(PoolsMixin, LiquidationMixin):
    """Evaluates the account each bar and runs the profile's liquidation process."""

    #: bounds of the adaptive block length (steps evaluated per kernel call); a block of any
    #: length gives the same states (tests run with both bounds at 1)
    block_min = _BLOCK_MIN
    block_max = _BLOCK_MAX

    def __init__(self, engine: MarginHost, *, profile: ProfileData) -> None:
        self.e = engine
        self.profile = profile
        cfg = engine.config
        self.mode = cfg.margin_mode
        self.intrabar = cfg.margin_check is MarginCheck.INTRABAR
        self.call_level = cfg.call_level
        self.liq_slippage = (cfg.liquidation_slippage_bps * 1e-4
                             if cfg.liquidation_slippage_bps is not None
                             else profile.liquidation_slippage_rate)
        self.margin_calls = 0
        self.liquidations = 0
        self._in_call = False
        self._liq_start_size: dict[str, Decimal] = {}
        self._taken_over = False
        self._liability_noted = False  # the liability assumption is in the run's warnings
        # one pool per asset (per-asset profiles, except portfolio mode whose grid spans the
        # account); False: one USD pool
        self._pooled = profile.pool != "usd" and self.mode is not MarginMode.PORTFOLIO
        times = np.frombuffer(engine.feed.steps.times, dtype="int64")
        self._times = times
        self.store = PriceStore(engine.feed.symbols, engine.feed.index_feeds, times)
        self._prices, self._bar_rows = self.store.store, self.store.bars
        #: the per-bar records, one row per ``kernel.REC_*`` (the run's equity series)
        self.rec = np.zeros((k.NREC, max(len(times), 1)))
        #: the run's underlyings (instruments' coins, then collateral coins) and, per step, the
        #: distance to liquidation of each moved alone and — with several — of all together
        #: (the last row), downwards and upwards (see ``kernel.evaluate``)
        self.underlyings: list[str] = []
        for f in list(engine.feed.symbols.values()) + list(engine.feed.index_feeds.values()):
            coin = f.instrument.base
            if coin not in self.underlyings and not engine.feed.is_stable(coin):
                self.underlyings.append(coin)
        self._group_rows = {u: j for j, u in enumerate(self.underlyings)}
        n_rows = len(self.underlyings) + (1 if len(self.underlyings) > 1 else 0)
        self.dist = np.full((n_rows, 2, max(len(times), 1)), np.inf)
        self._book: Book | None = None
        self._book_key: tuple[int, int] = (-1, -1)
        self._book_view: BookView | None = None
        self._flags_memo: tuple[np.ndarray | None, int, int] = (None, 0, 0)
        self._codes: tuple[np.ndarray | None, array[int]] = (None, array("i"))
        self._view_of: tuple[int, int, int] = (0, 0, 0)
        # the block: steps [block_start, block_end) evaluated with the book of ``block_key``;
        # ``block_bad`` the first of them whose status is not ok (block_end when none)
        self.block_start = 0
        self.block_end = 0
        self.block_bad = 0
        self.block_key: tuple[int, int] = (-1, -1)
        self._block_book: Book | None = None
        self._block_size = 64
        self._book_gap = 64.0  # steps between changes of the book (moving average)
        self._changed_at = 0
        self._legs_buf = np.zeros((1, 1, 5))
        self._pools_buf = np.zeros((1, 1, k.NPOOL))
        # the distance pass's outputs (records, legs, pools: not kept) and the marks of a
        # book without options (NaN: the recorded mark low and high)
        self._scratch: tuple[np.ndarray, np.ndarray, np.ndarray] = (
            np.zeros((k.NREC, 1)), np.zeros((1, 1, 5)), np.zeros((1, 1, k.NPOOL)))
        self._no_optmark = np.full((1, 1, 2), np.nan)
        # the position rows not yet in the engine's records (see _flush, _drain_rows): the
        # legs' kernel outputs, row after row, and per flush (first step, steps, legs, the
        # first of its book's legs in the leg table: symbol code, qty, entry, isolated)
        self._leg_out = np.zeros((_ROWS_BUF, 5))
        self._n_leg_out = 0
        self._chunks: list[tuple[int, int, int, int]] = []
        self._leg_tab: tuple[array[int], array[float], array[float], array[float]] = (
            array("i"), array("d"), array("d"), array("d"))
        self._rows_book: Book | None = None
        self._rows_at = 0
        self._flushed = 0
        self._last_breach = -2
        # held options' greeks and portfolio grids per step, evaluated ahead in blocks
        self._option_steps = OptionSteps(times, self._bars, profile.portfolio_params)
        self._probes: tuple[Book | None, dict[str, Position]] = (None, {})

    # -- the book ------------------------------------------------------------------------
    def book_key(self) -> tuple[int, int]:
        """What identifies the book: the account's and the working orders' versions."""
        return self.e.account.version, self.e.orders_version

    def book(self) -> Book:
        """The current book's kernel arrays (rebuilt when the account or its orders change)."""
        key = self.book_key()
        if self._book is None or key != self._book_key:
            self._book = build_book(self._view(), self.store, self.profile,
                                    per_asset_pools=self._pooled,
                                    isolated=self.mode is MarginMode.ISOLATED,
                                    group_rows=self._group_rows, previous=self._book)
            self._book_key = key
        return self._book

    def _view(self) -> BookView:
        # the account and its orders as build_book reads them: live views of the account's
        # mappings, made once (again should the engine's account or a mapping be replaced)
        e = self.e
        acct = e.account
        view = self._book_view
        if view is None or view.balances is not acct.balances \
                or view.session is not acct.session or self._view_of != (
                    id(acct), id(acct.positions), id(e.orders)):
            feeds = e.feed
            view = self._book_view = BookView(
                balances=acct.balances, session=acct.session,
                positions=acct.positions.values(), orders=e.orders.values(),
                leverage=lambda s: acct.leverage.get(s, acct.default_leverage),
                feeds=feeds.symbols, index_feeds=feeds.index_feeds, is_stable=feeds.is_stable)
            self._view_of = (id(acct), id(acct.positions), id(e.orders))
        return view

    def _multi(self, book: Book) -> bool:
        # several collateral pools held: each is evaluated, called and liquidated on its own
        return self._pooled and book.n_held_pools > 1

    def _optmark(self, book: Book, s0: int, nbars: int) -> np.ndarray:
        # options' marks at their forward's low and high: Black-76 at the bar's implied vol
        # and time to expiry (NaN where a bar has no implied vol: the recorded mark low/high);
        # evaluated ahead in blocks (OptionSteps.marks)
        out = np.full((book.n_legs, nbars, 2), np.nan)
        if not self.intrabar:
            return out
        for j, pos in enumerate(book.positions):
            inst = pos.instrument
            f = self.e.feed.symbols[inst.symbol]
            if not inst.is_option or f.option_iv is None:
                continue
            out[j] = self._option_steps.marks(f, s0, nbars)
        return out

    def _bars(self, f: SymbolFeed, steps: np.ndarray) -> np.ndarray:
        row = self.store.rows[f.symbol]
        return steps if row < 0 else self.store.bars[row, steps]

    # -- the per-bar check ---------------------------------------------------------------
    def step(self, s: int) -> Decisions | None:
        """Check step ``s`` (the engine's current step): evaluate a block from ``s`` when the
        book changed or the block is used up; where the status is not ok, return what the
        margin call or liquidation decides (the engine carries the decisions out in order,
        then the step's state is re-evaluated); None when the step is ok. The step's state is
        in :attr:`rec` (row ``s``) and :attr:`state`."""
        if self.book_key() != self.block_key or s >= self.block_end:
            self._refresh(s)
        if s >= self.block_bad:
            return self._breach(s)
        return None

    @property
    def state(self) -> MarginState:
        """The state of the step of the last evaluation (the current block's first step;
        before any, the account now at the closes)."""
        if self._block_book is None:
            return self.evaluate_now()
        return self.state_at(self.block_start)

    def _refresh(self, s: int) -> None:
        # evaluate a new block from s (the records of the steps before s are final); the
        # steps' distances to liquidation are computed when they are recorded (_flush)
        n = len(self._times)
        self._flush(s)
        if self.block_key == self.book_key() and s >= self.block_end:
            self._block_size = self._block_size * 2  # used up: longer
        elif self.block_end > self.block_start:
            # the book changed: 1.5 x the steps between changes, averaged over about the last
            # 16 (a block's bars beyond the next change are wasted, one more refresh costs
            # about as much as 100 bars)
            self._book_gap += (s - self._changed_at - self._book_gap) / 16
            self._changed_at = s
            self._block_size = int(1.5 * self._book_gap)
        self._block_size = min(max(self._block_size, self.block_min), self.block_max)
        book = self.book()
        nbars = min(self._block_size, n - s)
        if self.mode is MarginMode.PORTFOLIO or self._special_step(book):
            nbars = 1  # portfolio margin's grid per step; per-bar accruals change the book
        self._ensure_buffers(book, nbars)
        if self.mode is MarginMode.PORTFOLIO:
            bad = self._portfolio_block(book, s)
        else:
            bad = self._kernel(book, s, nbars, self._flags(book), self.rec, 0, self._legs_buf,
                               self._pools_buf)
        self.block_start = s
        self.block_end = s + nbars
        self.block_bad = s + bad
        self.block_key = self.book_key()
        if book is not self._block_book and not self._liability_noted and book.liability:
            self.note_liability()
        self._block_book = book

    def _flags(self, book: Book, *, intrabar: bool | None = None) -> int:
        # the kernel's flags for ``book``: they depend on its layout only (``li`` is shared by
        # the books of a layout, see Book._revalued), worked out once per layout
        memo = self._flags_memo
        if memo[0] is not book.li:
            memo = self._flags_memo = (book.li, self._layout_flags(book, intrabar=True),
                                       self._layout_flags(book, intrabar=False))
        return memo[1] if (self.intrabar if intrabar is None else intrabar) else memo[2]

    def _layout_flags(self, book: Book, *, intrabar: bool) -> int:
        flags = k.INTRABAR if intrabar else 0
        if not book.concave:
            flags |= k.DIST_GRID
        if self.profile.option_margin_style == "bybit":
            # Bybit's cross margin balance is wallet + futures PnL: options' value is in the
            # equity, not the margin balance ([BY3] §5.1), as the calculator has it
            flags |= k.OPTIONS_OFF_MB
        if self.mode is MarginMode.ISOLATED:
            flags |= k.ISOLATED
        if self._multi(book):
            flags |= k.MULTI
        return flags

    def _kernel(self, book: Book, s0: int, nbars: int, flags: int, rec: np.ndarray,
                rec_off: int, legs: np.ndarray, pools: np.ndarray, *,
                choice: np.ndarray | None = None, shift: tuple[int, int, float] = (-1, -1, 1.0),
                pm: tuple[float, float] | None = None,
                excess: np.ndarray | None = None, distance: bool = False) -> int:
        # one call of the kernel on ``book`` (see backtester.margin.kernel.evaluate);
        # ``distance``: record the steps' distances to liquidation (in :attr:`dist`)
        if (flags & (k.INTRABAR | k.FORCED)) and s0 >= 0 and book.has_options:
            optmark = self._optmark(book, s0, nbars)
        else:
            optmark = self._no_optmark
            if optmark.shape[0] < book.n_legs or optmark.shape[1] < nbars:
                optmark = self._no_optmark = np.full(
                    (max(book.n_legs, optmark.shape[0]), max(nbars, optmark.shape[1]), 2),
                    np.nan)
        lf, li, af, ai, of, oi, n_groups, n_pools, floors, mmr, cum = book.kernel_args()
        return int(k.evaluate(
            s0, nbars, flags, self.call_level, lf, li, af, ai, of, oi, n_groups, n_pools,
            floors, mmr, cum, self._prices, self._bar_rows, optmark,
            _NO_CHOICE if choice is None else choice, shift[0], shift[1], shift[2],
            _NO_PM if pm is None else np.asarray(pm, dtype="float64"), rec, rec_off, legs, pools,
            _NO_EXCESS if excess is None else excess, self.dist if distance else _NO_DIST,
            book.gmap))

    def _special_step(self, book: Book) -> bool:
        # steps whose book changes every bar: Deribit's continuous funding on a held perp
        return bool(self.e._special) and any(p.instrument.is_perpetual for p in book.positions)

    def _ensure_buffers(self, book: Book, nbars: int) -> None:
        legs = max(book.n_legs, 1)
        if self._legs_buf.shape[0] < nbars or self._legs_buf.shape[1] < legs:
            self._legs_buf = np.zeros((max(nbars, self._legs_buf.shape[0]),
                                       max(legs, self._legs_buf.shape[1]), 5))
        pools = max(len(book.pool_names), 1)
        if self._pools_buf.shape[0] < nbars or self._pools_buf.shape[1] < pools:
            self._pools_buf = np.zeros((max(nbars, self._pools_buf.shape[0]),
                                        max(pools, self._pools_buf.shape[1]), k.NPOOL))

    def _next_bad(self, s: int) -> None:
        # after a breach handled at s without a change of the book: the next one in the block
        rest = self.rec[k.REC_STATUS, s + 1:self.block_end]
        bad = np.flatnonzero(rest != k.STATUS_OK)
        self.block_bad = s + 1 + int(bad[0]) if len(bad) else self.block_end

    def _breach(self, s: int) -> Decisions:
        t = int(self._times[s])
        if s != self._last_breach + 1:
            self._in_call = False  # an ok step came between: a new call is a new event
        self._last_breach = s
        st = self.state_at(s)
        if self.mode is MarginMode.ISOLATED:
            yield from self._check_isolated(t)
            self._refresh(s)
            return
        if st.status == "liquidate":
            yield from self._liquidate(t, st)
            self._refresh(s)  # the step's state after the liquidation
            return
        yield from self._margin_call(t, st)
        self._next_bad(s)

    def _flush(self, upto: int) -> None:
        # append the records of the block's steps before ``upto`` that are not yet recorded:
        # position rows, per-pool collateral, greeks
        book = self._block_book
        a = max(self._flushed, self.block_start)
        b = min(upto, self.block_end)
        if book is None or b <= a:
            self._flushed = max(self._flushed, upto)
            return
        e = self.e
        nl = book.n_legs
        if nl:
            # a row per leg per step, in the legs' order: the legs' outputs written where the
            # rows are kept (by the distance pass, which evaluates the same closes), the
            # columns that are the same at every step of the flush noted once
            m = b - a
            n = m * nl
            at = self._n_leg_out
            if at + n > len(self._leg_out):
                self._drain_rows()
                at = 0
                if n > len(self._leg_out):
                    self._leg_out = np.zeros((n, 5))
            out = self._leg_out[at:at + n].reshape(m, nl, 5)
            if self.mode is not MarginMode.PORTFOLIO:  # (portfolio: at its one-step blocks)
                self._distances(book, a, m, out)
            else:
                out[...] = self._legs_buf[a - self.block_start:b - self.block_start, :nl]
            self._n_leg_out = at + n
            if book is not self._rows_book:
                self._rows_book = book
                self._rows_at = len(self._leg_tab[0])
                if self._codes[0] is not book.li:  # the legs' symbols: per layout
                    self._codes = (book.li, array("i", [e.symbol_code[sym]
                                                        for sym in book.symbols]))
                cols = book.lf.T.tolist()
                code, qty, entry, iso = self._leg_tab
                code.extend(self._codes[1])
                qty.extend(cols[k.LF_QTY])
                entry.extend(cols[k.LF_ENTRY])
                iso.extend(cols[k.LF_ISO])
            self._chunks.append((a, m, nl, self._rows_at))
        if self._multi(book):
            names = book.pool_names[:book.n_held_pools]
            for step in range(a, b):
                row = self._pools_buf[step - self.block_start]
                e.pool_rec.append((step, {p: float(row[j, k.POOL_COLLATERAL])
                                          for j, p in enumerate(names)}))
        if book.has_options:
            for step in range(a, b):
                self._record_greeks(step, book)
        self._flushed = b

    def _drain_rows(self) -> None:
        # move the kept position rows into the engine's records (Engine.pos_rec): the legs'
        # outputs, and the constant columns of each flush repeated over its steps
        n = self._n_leg_out
        if not self._chunks:
            return
        pr = self.e.pos_rec
        ch = np.asarray(self._chunks, dtype=np.int64)
        first, steps, nls, tab = ch[:, 0], ch[:, 1], ch[:, 2], ch[:, 3]
        counts = steps * nls
        of_row = np.repeat(np.arange(len(ch)), counts)  # each row's flush
        i = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)  # row in its flush
        nl = nls[of_row]
        step = i // nl
        leg = tab[of_row] + (i - step * nl)  # the row's leg in the leg table
        pr["ts"].frombytes(self._times[first[of_row] + step].tobytes())
        code, qty, entry, iso = (np.asarray(c) for c in self._leg_tab)
        pr["symbol"].frombytes(code[leg].tobytes())
        pr["qty"].frombytes(qty[leg].tobytes())
        pr["entry_price"].frombytes(entry[leg].tobytes())
        out = self._leg_out[:n]
        pr["mark"].frombytes(out[:, 0].tobytes())
        pr["unrealized_pnl"].frombytes(out[:, 1].tobytes())
        pr["notional"].frombytes(out[:, 2].tobytes())
        pr["isolated_margin"].frombytes(iso[leg].tobytes())
        self._chunks.clear()
        self._n_leg_out = 0
        # the leg table restarts with the book of the last flush (it may flush again)
        self._leg_tab = (array("i"), array("d"), array("d"), array("d"))
        self._rows_book = None

    def _distances(self, book: Book, s0: int, m: int, legs_out: np.ndarray) -> None:
        # the distances to liquidation of steps s0 .. s0 + m - 1 into :attr:`dist`, with the
        # book of their block: computed for the steps recorded only (a block's steps after a
        # change of the book are evaluated again). They are searched from the close state,
        # which the intrabar scenarios leave alone, so this pass evaluates the closes only;
        # the legs' outputs at the closes (the block's, bit for bit) go to ``legs_out``
        rec, legs, pools = self._scratch
        nl = max(book.n_legs, 1)
        npool = max(len(book.pool_names), 1)
        if rec.shape[1] < m or legs.shape[1] < nl or pools.shape[1] < npool:
            m_max = max(m, rec.shape[1])
            self._scratch = rec, legs, pools = (
                np.zeros((k.NREC, m_max)), np.zeros((m_max, max(nl, legs.shape[1]), 5)),
                np.zeros((m_max, max(npool, pools.shape[1]), k.NPOOL)))
        self._kernel(book, s0, m, self._flags(book, intrabar=False), rec, s0, legs_out, pools,
                     distance=True)

    def finish(self, n_done: int) -> None:
        """Record the last block's steps up to ``n_done`` (the steps the run reached)."""
        self._flush(n_done)
        self._drain_rows()

    # -- states --------------------------------------------------------------------------
    def state_at(self, s: int) -> MarginState:
        """The recorded state of step ``s`` of the current block."""
        book = self._block_book if self._block_book is not None else self.book()
        b = s - self.block_start
        return self._state(self.rec[:, s], book, self._legs_buf[b], self._pools_buf[b])

    def _state(self, row: np.ndarray, book: Book, legs: np.ndarray,
               pools: np.ndarray) -> MarginState:
        st = MarginState(
            equity=float(row[k.REC_EQUITY]), wallet_balance=float(row[k.REC_WALLET]),
            unrealized_pnl=float(row[k.REC_UPNL]), margin_balance=float(row[k.REC_MB]),
            initial_margin=float(row[k.REC_IM]), maintenance_margin=float(row[k.REC_MM]),
            margin_ratio=float(row[k.REC_RATIO]), available=float(row[k.REC_AVAILABLE]),
            status=_STATUS[int(row[k.REC_STATUS])], gross_exposure=float(row[k.REC_GROSS]),
            net_exposure=float(row[k.REC_NET]), collateral_fixed=float(row[k.REC_COLL_FIXED]),
            collateral_moving=float(row[k.REC_COLL_MOVING]),
            session_fixed=float(row[k.REC_SESSION_FIXED]),
            session_moving=float(row[k.REC_SESSION_MOVING]))
        lf = book.lf
        for j, sym in enumerate(book.symbols):
            st.positions.append((sym, float(lf[j, k.LF_QTY]), float(lf[j, k.LF_ENTRY]),
                                 float(legs[j, 0]), float(legs[j, 1]), float(legs[j, 2]),
                                 float(lf[j, k.LF_ISO])))
            st.requirements.append((float(legs[j, 3]), float(legs[j, 4])))
        if self._multi(book):
            for j, name in enumerate(book.pool_names[:book.n_held_pools]):
                r = pools[j]
                st.pools[name] = PoolState(
                    asset=name, collateral=float(r[k.POOL_COLLATERAL]),
                    margin_balance=float(r[k.POOL_MB]), initial_margin=float(r[k.POOL_IM]),
                    maintenance_margin=float(r[k.POOL_MM]), margin_ratio=float(r[k.POOL_RATIO]),
                    available=float(r[k.POOL_AVAILABLE]),
                    status=_STATUS[int(r[k.POOL_STATUS])])
        return st

    def evaluate_now(self) -> MarginState:
        """The account at the current step's closes (no intrabar extremes), with the book as
        it is now (orders placed this step included)."""
        book = self.book()
        s = self.e.step
        legs = np.zeros((1, max(book.n_legs, 1), 5))
        pools = np.zeros((1, max(len(book.pool_names), 1), k.NPOOL))
        row = np.zeros((k.NREC, 1))
        if self.mode is MarginMode.PORTFOLIO:
            self._portfolio_state(book, s, close_only=True, out=row, legs=legs, pools=pools)
        else:
            self._kernel(book, s, 1, self._flags(book, intrabar=False), row, s, legs, pools)
        return self._state(row[:, 0], book, legs[0], pools[0])

    def _evaluate(self, scenario_of: dict[str, int] | None, *,
                  shift: tuple[str, float, str] | None = None) -> MarginState:
        """The account at the current step with each underlying group at ``scenario_of[group]``
        (0 low, 1 high, 2 close; missing: close). ``shift`` = (coin, factor, symbol) scales
        that symbol's mark and underlying and that coin's price by ``factor`` (the move a
        bankruptcy price is solved over)."""
        book = self.book()
        s = self.e.step
        choice = np.full((max(len(book.pool_names), 1), max(len(book.group_names), 1)), 2,
                         dtype=np.int64)
        if scenario_of:
            for g, name in enumerate(book.group_names):
                choice[:, g] = scenario_of.get(name, 2)
        shift_sym = shift_asset = -1
        factor = 1.0
        if shift is not None:
            coin, factor, sym = shift
            shift_sym = book.symbols.index(sym) if sym in book.symbols else -1
            shift_asset = book.asset_names.index(coin) if coin in book.asset_names else -1
        out = np.zeros((k.NREC, 1))
        pools = np.zeros((1, max(len(book.pool_names), 1), k.NPOOL))
        legs = np.zeros((1, max(book.n_legs, 1), 5))
        pm = None
        if self.mode is MarginMode.PORTFOLIO and book.n_legs:
            pm = self._portfolio_requirement(scenario_of, shift=shift)
        self._kernel(book, s, 1, self._flags(book, intrabar=False) | k.FORCED, out, s, legs,
                     pools, choice=choice, shift=(shift_sym, shift_asset, factor), pm=pm)
        return self._state(out[:, 0], book, legs[0], pools[0])

    def _choice(self, pool: str | None) -> dict[str, int]:
        # the triggering scenario of a liquidation: each group of the positions that draw on
        # ``pool`` (all of them when None) at the intrabar check's worst (collateral-only
        # groups at the close)
        if not self.intrabar:
            return {}
        book = self.book()
        s = self.e.step
        multi = self._multi(book)
        choice = np.full((len(book.pool_names) if multi else 1, max(len(book.group_names), 1)),
                         2, dtype=np.int64)
        groups = {pos.instrument.base for pos in book.positions
                  if pool is None or self.pool_of(pos.instrument.settle) == pool}
        if self.mode is MarginMode.PORTFOLIO:
            return {g: w for g, w in self._portfolio_choice(book, s).items() if g in groups}
        excess = np.zeros((choice.shape[0], choice.shape[1], 3))
        self._excess(book, s, excess)
        p = book.pool_names.index(pool) if multi and pool is not None else 0
        return {g: _least(excess[p, j]) for j, g in enumerate(book.group_names) if g in groups}

    def _excess(self, book: Book, s: int, excess: np.ndarray, *, flags: int = 0) -> None:
        # each group's margin excess at the step's low, high and close (USD; per pool)
        legs = np.zeros((1, max(book.n_legs, 1), 5))
        pools = np.zeros((1, max(len(book.pool_names), 1), k.NPOOL))
        self._kernel(book, s, 1, self._flags(book) | k.INTRABAR | flags, np.zeros((k.NREC, 1)),
                     s, legs, pools, excess=excess)

    # -- prices and values ---------------------------------------------------------------
    def price_usd(self, asset: str, which: int = 2) -> float:
        """USD price of ``asset``: 1 for stablecoins, else its index low/high/close (0/1/2)."""
        if self.e.feed.is_stable(asset):
            return 1.0
        f = self.e.feed.index_feeds.get(asset)
        if f is None or f.idx < 0:
            return 0.0 if f is None else f.io[0]
        i = f.idx
        return f.il[i] if which == 0 else f.ih[i] if which == 1 else f.ic[i]

    def position_value(self, pos: Position, mark: float, f: SymbolFeed | None = None) -> float:
        """Unrealized PnL (futures) or market value (options) in the settle currency."""
        return pos.instrument.close_value(pos.qty_f, pos.entry_f, mark)

    def greeks(self) -> dict[str, float]:
        """Account greeks per underlying at the current closes (only when options are held).

        Keys ``<COIN>.delta`` (coins: options N(d1) x size plus futures/perps in coin terms),
        ``<COIN>.gamma`` (per USD), ``<COIN>.vega`` (USD per vol point), ``<COIN>.theta`` (USD
        per day) and, for coin-settled books, ``<COIN>.coin_delta`` — the premium-adjusted coin
        exposure a hedge must offset.
        """
        return self._greeks_at(self.e.step, self.book())

    def _greeks_at(self, s: int, book: Book) -> dict[str, float]:
        # the greeks of ``book`` (its legs as they were) at step s
        out: dict[str, float] = {}
        feeds = self.e.feed.symbols
        now = int(self._times[s]) if 0 <= s < len(self._times) else self.e.now_ms
        for j, pos in enumerate(book.positions):
            inst = pos.instrument
            f = feeds[inst.symbol]
            i = self._bar(f, s)
            b = inst.base
            size = float(book.lf[j, k.LF_QTY]) * inst.cs
            if inst.is_option:
                iv = f.option_iv[i] if f.option_iv is not None else float("nan")
                if not (iv == iv and iv >= 0):  # IV 0: marked at intrinsic (or worthless)
                    continue
                g: tuple[float, ...] | None = (self._option_steps.greeks(f, s)
                                               if 0 <= s < len(self._times) else None)
                if g is None:  # not served from a block: this step on its own
                    fwd = f.fc[i]  # the option's own forward
                    t = max((inst.expiry_ms or 0) - now, 0) / _MS_PER_YEAR
                    g = tuple(float(x) for x in unit_greeks(
                        fwd, inst.strike or 0.0, t, iv, is_call=inst.option_type is
                        OptionType.CALL, inverse=not inst.is_linear))
                out[f"{b}.delta"] = out.get(f"{b}.delta", 0.0) + size * g[0]
                out[f"{b}.gamma"] = out.get(f"{b}.gamma", 0.0) + size * g[1]
                out[f"{b}.vega"] = out.get(f"{b}.vega", 0.0) + size * g[2]
                out[f"{b}.theta"] = out.get(f"{b}.theta", 0.0) + size * g[3]
                if not inst.is_linear:
                    out[f"{b}.coin_delta"] = out.get(f"{b}.coin_delta", 0.0) + size * g[4]
            else:
                mark = f.mc[i]
                coins = size if inst.is_linear else size / mark
                out[f"{b}.delta"] = out.get(f"{b}.delta", 0.0) + coins
                if not inst.is_linear:
                    # an inverse contract's coin PnL: d/dP of N (1/E - 1/P) = N / P^2, in
                    # coins per USD; times P it is the coin exposure N / P
                    out[f"{b}.coin_delta"] = out.get(f"{b}.coin_delta", 0.0) + coins
        return out

    def _record_greeks(self, step: int, book: Book) -> None:
        greeks = self._greeks_at(step, book)
        if not greeks:
            return
        if self.mode is not MarginMode.PORTFOLIO:
            # what the same book would need under portfolio margin (where requirements net),
            # beside the standard requirement, for the capital-efficiency report
            greeks["portfolio_initial_margin"] = self._portfolio_requirement(
                None, at=step, book=book)[0]
        self.e.record_greeks(step, greeks)

    def _holds_options(self) -> bool:
        return any(p.qty_f != 0.0 and p.instrument.is_option
                   for p in self.e.account.positions.values())

    # -- per position --------------------------------------------------------------------
    def underlying_price(self, f: SymbolFeed, w: int = 2) -> float:
        """Underlying price (USD) a leg's requirement reads at scenario ``w`` (0 low, 1 high,
        2 close) of the current bar: the index, except for options under Deribit's (and
        Bit.com's) standard margin, whose formulas read the underlying's mark — the option's
        own forward (``SymbolFeed.fc``); Bybit's option formulas read the index."""
        i = f.idx
        if f.instrument.is_option and self.profile.option_margin_style != "bybit":
            return f.fl[i] if w == 0 else f.fh[i] if w == 1 else f.fc[i]
        return f.il[i] if w == 0 else f.ih[i] if w == 1 else f.ic[i]

    def requirement(self, pos: Position, mark: float, und: float) -> tuple[float, float, float]:
        """Return (notional, initial margin, maintenance margin) in the settle currency."""
        book = self.book()
        if pos.symbol not in book.symbols:
            return 0.0, 0.0, 0.0
        n, im, mm = k.leg_margin(book.lf, book.li, book.symbols.index(pos.symbol), mark, und,
                                 book.floors, book.mmr, book.cum)
        return float(n), float(im), float(mm)

    # -- portfolio margin ------------------------------------------------------------------
    def _portfolio_requirement(self, scenario_of: dict[str, int] | None, *,
                               only: str | None = None,
                               extra: Sequence[tuple[str, float]] = (),
                               shift: tuple[str, float, str] | None = None,
                               at: int | None = None,
                               book: Book | None = None) -> tuple[float, float]:
        """Portfolio margin (USD): the worst loss over the scenario grid of each underlying's
        risk unit (Deribit-like, ``backtester.margin.portfolio``); maintenance a fraction of it.
        ``extra`` = (symbol, signed contracts) pairs add hypothetical trades (working orders
        filled, order admission); ``at`` a step (default the current one); ``book`` the legs
        as a block had them (default the account's positions now)."""
        feeds = self.e.feed.symbols
        s = self.e.step if at is None else at
        grid: list[PortfolioPosition] = []
        prices: dict[str, float] = {}
        if book is not None:
            if self._probes[0] is not book:  # the book's legs, made once per book
                self._probes = (book, {
                    sym: _probe(p.instrument, float(book.lf[j, k.LF_QTY]))
                    for j, (sym, p) in enumerate(zip(book.symbols, book.positions, strict=True))})
            held = dict(self._probes[1])
        else:
            held = dict(self.e.account.positions.items())
        for sym, dq in extra:
            base = held.get(sym)
            f = feeds[sym]
            probe = _probe(f.instrument, (base.qty_f if base else 0.0) + dq)
            probe.entry_f = base.entry_f if base else f.mc[self._bar(f, s)]
            held[sym] = probe
        for sym, pos in held.items():
            inst = pos.instrument
            if pos.qty_f == 0.0 or (only is not None and inst.base != only):
                continue
            f = feeds[sym]
            i = self._bar(f, s)
            w = scenario_of.get(inst.base, 2) if scenario_of else 2
            und = f.il[i] if w == 0 else f.ih[i] if w == 1 else f.ic[i]
            mark = self._mark_at(f, w, i, s)
            if shift is not None and shift[2] == sym:
                und *= shift[1]
                mark *= shift[1]
            prices.setdefault(inst.base, und)
            fwd = f.fl[i] if w == 0 else f.fh[i] if w == 1 else f.fc[i]
            if shift is not None and shift[2] == sym:
                fwd *= shift[1]
            iv = f.option_iv[i] if f.option_iv is not None else None
            grid.append(PortfolioPosition(
                symbol=sym, underlying=inst.base,
                kind="option" if inst.is_option else (
                    "perpetual" if inst.is_perpetual else "future"),
                is_linear=inst.is_linear, qty=pos.qty_f, contract_size=inst.cs,
                mark_price=mark,
                strike=inst.strike, option_type=None if inst.option_type is None
                else inst.option_type.value,  # type: ignore[arg-type]
                expiry_ms=inst.expiry_ms, iv=iv if iv is not None and iv == iv else None,
                forward=fwd if inst.is_option else None))
        if not grid:
            return 0.0, 0.0
        now = int(self._times[s]) if 0 <= s < len(self._times) else self.e.now_ms
        grids = None
        if scenario_of is None and shift is None and not extra and 0 <= s < len(self._times):
            # the options' grids at the step's closes, evaluated ahead in blocks
            grids = {}
            for q in grid:
                got = self._option_steps.grids(feeds[q.symbol], s) if q.kind == "option" \
                    else None
                if got is not None:
                    grids[q.symbol] = got
        res = portfolio_margin(grid, underlying_prices=prices, time_ms=now,
                               params=self.profile.portfolio_params, grids=grids)
        im = sum(v * self._currency_usd(c, scenario_of, shift) for c, v in
                 res.initial_margin.items())
        mm = sum(v * self._currency_usd(c, scenario_of, shift)
                 for c, v in res.maintenance_margin.items())
        return im, mm

    def _bar(self, f: SymbolFeed, s: int) -> int:
        if s < 0:
            return f.idx
        row = self.store.rows[f.symbol]
        return s if row < 0 else int(self.store.bars[row, s])

    def _mark_at(self, f: SymbolFeed, w: int, i: int, s: int) -> float:
        # a leg's mark at scenario w of step s (bar i): options repriced at their forward's
        # low/high with Black-76 at the bar's implied vol; else the mark low/high/close
        if w == 2:
            return f.mc[i]
        if f.option_iv is not None:
            iv = f.option_iv[i]
            if iv == iv and iv >= 0:  # IV 0: an option marked at intrinsic (or worthless)
                inst = f.instrument
                und = f.fl[i] if w == 0 else f.fh[i]  # on the option's own forward
                now = int(self._times[s]) if 0 <= s < len(self._times) else self.e.now_ms
                t = max((inst.expiry_ms or 0) - now, 0) / _MS_PER_YEAR
                is_call = inst.option_type is OptionType.CALL
                pricer = black76.price if inst.is_linear else black76.inverse_price
                return float(pricer(und, inst.strike or 0.0, t, iv, is_call))
        return f.ml[i] if w == 0 else f.mh[i]

    def _currency_usd(self, currency: str, scenario_of: dict[str, int] | None,
                      shift: tuple[str, float, str] | None = None) -> float:
        if currency == "USD":
            return 1.0
        px = self.price_usd(currency, scenario_of.get(currency, 2) if scenario_of else 2)
        return px * shift[1] if shift is not None and shift[0] == currency else px

    def _portfolio_with_orders(self, new: tuple[str, float] | None) -> tuple[float, str]:
        """Portfolio initial margin (USD) under the open-order rule: the greater of the
        requirement with every working buy filled and with every working sell filled (``new``,
        a (symbol, signed contracts) order being admitted, counted with its side); returns
        (requirement, ``"buys"`` or ``"sells"``). Reduce-only orders never add risk."""
        buys: list[tuple[str, float]] = []
        sells: list[tuple[str, float]] = []
        for o in self.e.orders.values():
            if not o.is_reduce_only and self.e.feed.symbols[o.symbol].idx >= 0:
                q = float(o.signed_qty)
                (buys if q > 0 else sells).append((o.symbol, q))
        if new is not None:
            (buys if new[1] > 0 else sells).append(new)
        im_buys = self._portfolio_requirement(None, extra=buys)[0]
        im_sells = self._portfolio_requirement(None, extra=sells)[0]
        return (im_buys, "buys") if im_buys >= im_sells else (im_sells, "sells")

    def _portfolio_choice(self, book: Book, s: int) -> dict[str, int]:
        # portfolio mode: each group's scenario leaving it the least excess — its collateral
        # and legs' value less the group's grid maintenance at that scenario
        vals = np.zeros((1, max(len(book.group_names), 1), 3))
        self._excess(book, s, vals, flags=k.PORTFOLIO)
        out = {}
        for g, name in enumerate(book.group_names):
            out[name] = _least([vals[0, g, w] - self._portfolio_requirement(
                {name: w}, only=name, at=s)[1] for w in (0, 1, 2)])
        return out

    def _portfolio_state(self, book: Book, s: int, *, close_only: bool, out: np.ndarray,
                         legs: np.ndarray, pools: np.ndarray, distance: bool = False) -> None:
        # the portfolio-mode state of step s into ``out`` (REC_* fields): the kernel's state
        # with the grid's netted requirement at the close and, intrabar, at each group's worst
        # scenario (merged as the cross check merges)
        choice = np.full((1, max(len(book.group_names), 1)), 2, dtype=np.int64)
        pm = self._portfolio_requirement(None, at=s)
        # (the distance is searched from this state, the close, with the netted requirement held)
        self._kernel(book, s, 1, k.FORCED | (0 if book.concave else k.DIST_GRID), out, s, legs,
                     pools, choice=choice, pm=pm, distance=distance)
        with_orders = self._portfolio_with_orders(None)[0] if self.e.orders else 0.0
        if self.e.orders:
            out[k.REC_AVAILABLE, 0] = out[k.REC_MB, 0] - with_orders
        if close_only or not self.intrabar:
            return
        scenario = self._portfolio_choice(book, s)
        if not scenario:
            return
        for g, name in enumerate(book.group_names):
            choice[0, g] = scenario.get(name, 2)
        w_out = np.zeros((k.NREC, 1))
        pm_w = self._portfolio_requirement(scenario, at=s)
        self._kernel(book, s, 1, k.FORCED, w_out, s, np.zeros_like(legs), np.zeros_like(pools),
                     choice=choice, pm=pm_w)
        if self.e.orders:
            w_out[k.REC_AVAILABLE, 0] = w_out[k.REC_MB, 0] - with_orders
        # the check's state: the close's, with the worst scenario's margin (as in cross)
        for c in (k.REC_MB, k.REC_MM, k.REC_RATIO, k.REC_STATUS):
            out[c, 0] = w_out[c, 0]
        out[k.REC_AVAILABLE, 0] = min(out[k.REC_AVAILABLE, 0], w_out[k.REC_AVAILABLE, 0])

    def _portfolio_block(self, book: Book, s: int) -> int:
        row = np.zeros((k.NREC, 1))
        self._portfolio_state(book, s, close_only=False, out=row, legs=self._legs_buf,
                              pools=self._pools_buf, distance=True)
        self.rec[:, s] = row[:, 0]
        return 0 if row[k.REC_STATUS, 0] != k.STATUS_OK else 1

    # -- admission -----------------------------------------------------------------------
    def admit(self, order: Order, f: SymbolFeed) -> OrderRejected | None:
        """Initial-margin check of a new (not reduce-only) order against available margin."""
        inst = f.instrument
        pos = self.e.account.positions.get(order.symbol)
        have = pos.qty_f if pos is not None else 0.0
        q = float(order.signed_qty)
        increase = abs(have + q) - abs(have)
        if increase <= 0:
            return None
        px = float(order.price) if order.price is not None else f.c[f.idx]
        lev = self.e.account.leverage.get(order.symbol, self.e.account.default_leverage)
        lin = inst.is_linear
        if inst.is_option:
            if q > 0:
                need = increase * inst.cs * px
            else:
                style = self._book_style()
                need = k.short_option_margin(
                    style, inst.option_type is OptionType.CALL, inst.strike or 0.0,
                    self.underlying_price(f), px, increase * inst.cs,
                    self.profile.option_maintenance_rate,
                    self.profile.option_liquidation_fee_rate
                    if self.profile.option_margin_style == "bybit" else 0.0)[0]
        elif (rates := self.profile.rates.get(order.symbol)) is not None:
            # size-dependent rates: what the order adds to the position's initial margin,
            # the order's price standing for the index
            need = (k.rated_margin(have + q, inst.cs, px, lin, rates.im_base, rates.im_per_coin)
                    - k.rated_margin(have, inst.cs, px, lin, rates.im_base, rates.im_per_coin))
        else:
            notional_after = inst.notional(abs(have + q), px)
            tiers = self.profile.tiers.get(order.symbol)
            if tiers is not None:
                max_lev = tiers.max_leverage[tiers.index(notional_after)]
                if lev > max_lev:
                    return OrderRejected(
                        ts_ms=self.e.now_ms, order_id=order.id, symbol=order.symbol,
                        reason=RejectReason.LEVERAGE_EXCEEDS_BRACKET, tag=order.tag,
                        message=f"leverage {lev:g} exceeds the bracket maximum {max_lev:g} for "
                                f"a notional of {notional_after:,.2f} on {order.symbol}")
            need = inst.notional(increase, px) / lev
        need_usd = need * self.price_usd(inst.settle)
        if self.mode is MarginMode.PORTFOLIO:
            # requirements net in portfolio mode; open-order rule: the book with every working
            # buy filled and with every working sell filled (this order included), the worse
            total, side = self._portfolio_with_orders((order.symbol, q))
            mb = self.evaluate_now().margin_balance
            if total > mb + 1e-9:
                return OrderRejected(
                    ts_ms=self.e.now_ms, order_id=order.id, symbol=order.symbol,
                    reason=RejectReason.INSUFFICIENT_MARGIN, tag=order.tag,
                    message=f"portfolio initial margin {total:,.2f} USD with the working "
                            f"{side} filled exceeds the margin balance {mb:,.2f} USD for "
                            f"{order.side} {order.qty} {order.symbol}")
            return None
        avail, where = self._available_for(inst.settle)  # of the order's pool
        if need_usd > avail + 1e-9:
            return OrderRejected(
                ts_ms=self.e.now_ms, order_id=order.id, symbol=order.symbol,
                reason=RejectReason.INSUFFICIENT_MARGIN, tag=order.tag,
                message=f"initial margin {need_usd:,.2f} USD exceeds available {avail:,.2f} USD"
                        f"{where} for {order.side} {order.qty} {order.symbol}")
        return None

    def _book_style(self) -> int:
        return {"deribit": k.OSTYLE_DERIBIT, "bybit": k.OSTYLE_BYBIT}.get(
            self.profile.option_margin_style, k.OSTYLE_LINEAR)

    # -- collateral -------------------------------------------------------------------------
    def note_liability(self) -> None:
        """Say once, in the run's warnings, what a liability (negative balance) assumes."""
        if not self._liability_noted:
            self._liability_noted = True
            self.e.warnings.append(
                "liability assumption: a negative balance is a loan against the pool's other "
                "collateral; no interest is charged on it and it carries no maintenance margin "
                "of its own (neither rate is published in margin-rules); a liquidation repays "
                "it by selling collateral at the index moved by the liquidation slippage")

    def face_value_assets(self) -> frozenset[str]:
        """Coins valued at face value (no haircut): with a profile whose inverse contracts are
        margined by their settle coin (``inverse_margin_at_face``, Bybit [BY1] §5.3), the
        settle coins of the open inverse positions."""
        return self.book().face_value


def _probe(inst: object, qty: float) -> Position:
    probe = Position(inst, leverage=1.0)  # type: ignore[arg-type]
    probe.qty_f = qty
    probe.qty = dec(qty)
    return probe
