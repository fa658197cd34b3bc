"""The arrays the margin kernel evaluates: the price store of a run and the fixed book.

* :class:`PriceStore` — every series the kernel reads (mark low/high/close and underlying
  low/high/close of each instrument, the index low/high/close of each collateral coin, the trade
  close of each instrument for market orders), copied once per run into one flat float64 array,
  with, per feed, the bar it has at each clock step (none when every feed advances at every
  step). The kernel reads a leg's price at step ``s`` as ``store[offset + bar(s)]``.
* :class:`Book` — a constant book as arrays: legs (non-zero positions, in the account's order),
  assets (balances and session amounts with their haircuts), working orders, underlying groups
  and collateral pools (column layouts in :mod:`backtester.margin.kernel`). Built from a narrow
  view of the account (:class:`BookView`) whenever the account or its orders change.

Nothing here imports the engine: callers hand in what the book is made of.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from backtester.accounting import Position
from backtester.data.feed import SymbolFeed
from backtester.instruments import OptionType
from backtester.margin import kernel as k
from backtester.margin.profile_data import ProfileData
from backtester.orders import Order, Side

__all__ = ["Book", "BookView", "PriceStore", "build_book"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
_STYLE = {"deribit": k.OSTYLE_DERIBIT, "linear": k.OSTYLE_LINEAR, "bybit": k.OSTYLE_BYBIT}
_NONE = -1


class PriceStore:
    """The series of a run's feeds in one flat array (see the module docstring).

    Parameters
    ----------
    feeds
        The run's instrument feeds (symbol → feed).
    index_feeds
        Coin → the feed whose index prices value it as collateral.
    times
        The clock's step times (ms); a feed's bar at each step is its last bar closed by then.
    """

    def __init__(self, feeds: Mapping[str, SymbolFeed], index_feeds: Mapping[str, SymbolFeed],
                 times: NDArray[np.int64]) -> None:
        chunks: list[F64] = []
        self._offsets: dict[tuple[int, int], int] = {}
        self._size = 0
        self.offsets: dict[tuple[str, str], int] = {}
        rows: list[NDArray[np.int64]] = []
        self.rows: dict[str, int] = {}
        n_steps = len(times)
        fields = ("mark_low", "mark_high", "mark_close", "index_low", "index_high",
                  "index_close", "forward_low", "forward_high", "forward_close", "close")
        wanted = list(feeds.values()) + [f for f in index_feeds.values()
                                         if f.symbol not in feeds]
        for f in wanted:
            for name in fields:
                arr = np.asarray(f.arrays[name], dtype=np.float64)
                key = (arr.__array_interface__["data"][0], len(arr))
                off = self._offsets.get(key)
                if off is None:
                    off = self._offsets[key] = self._size
                    chunks.append(arr)
                    self._size += len(arr)
                self.offsets[(f.symbol, name)] = off
            bar = f.bar_at(times)
            if len(bar) == f.n == n_steps and bool((bar == np.arange(n_steps)).all()):
                self.rows[f.symbol] = _NONE  # the feed advances at every step
            else:
                self.rows[f.symbol] = len(rows)
                rows.append(bar.astype(np.int64))
        self.store: F64 = np.concatenate(chunks) if chunks else np.zeros(1)
        self.bars: NDArray[np.int64] = (np.stack(rows) if rows
                                        else np.zeros((1, 1), dtype=np.int64))

    def offset(self, feed: SymbolFeed, name: str) -> int:
        """Offset of ``feed``'s series ``name`` in :attr:`store`."""
        return self.offsets[(feed.symbol, name)]


@dataclass(frozen=True, slots=True, kw_only=True)
class BookView:
    """What a book is made of: the account's balances, session amounts and positions, the
    working orders, each symbol's leverage and the run's instruments' feeds.

    ``positions`` in the account's order; ``leverage(symbol)`` the leverage setting of a
    symbol; ``is_stable(asset)`` whether an asset is a USD stablecoin (1 USD).
    """

    balances: Mapping[str, Decimal]
    session: Mapping[str, Decimal]
    positions: Sequence[Position]
    orders: Sequence[Order]
    leverage: Callable[[str], float]
    feeds: Mapping[str, SymbolFeed]
    index_feeds: Mapping[str, SymbolFeed]
    is_stable: Callable[[str], bool]


@dataclass(slots=True, kw_only=True)
class Book:
    """A constant book as the kernel's arrays (column layouts in :mod:`margin.kernel`).

    ``legs`` are the non-zero positions in the account's order (``symbols[j]`` is leg j's);
    ``assets`` every asset with a balance, a session amount, or a leg or order settling in it
    (``asset_names``); ``groups`` the underlying coins (a leg's base, or a coin with a
    balance); ``pools`` the collateral pools (``pool_names``; one, ``USD``, unless the profile
    keeps one per asset), the first ``n_held_pools`` those the account holds (a non-zero
    balance or session amount, or an open position) — the account is multi-pool when it holds
    several.
    """

    lf: F64
    li: I64
    af: F64
    ai: I64
    of: F64
    oi: I64
    n_held_pools: int
    floors: F64
    mmr: F64
    cum: F64
    positions: list[Position]
    symbols: list[str]
    order_symbols: list[str]
    asset_names: list[str]
    group_names: list[str]
    pool_names: list[str]
    face_value: frozenset[str]

    @property
    def n_legs(self) -> int:
        """Number of legs."""
        return int(self.lf.shape[0])


def build_book(view: BookView, store: PriceStore, profile: ProfileData, *,
               per_asset_pools: bool, isolated: bool) -> Book:
    """Build the kernel arrays of the book ``view`` describes.

    ``per_asset_pools``: one pool per settle asset (per-asset profiles outside portfolio mode);
    else one USD pool. ``isolated``: positions carry their isolated allocations.
    """
    positions = [p for p in view.positions if p.qty_f != 0.0]
    # assets: balances, session amounts, settle assets of the legs (in that order)
    names: list[str] = []
    for a in view.balances:
        names.append(a)
    for a, v in view.session.items():
        if v and a not in names:
            names.append(a)
    for p in positions:
        if p.instrument.settle not in names:
            names.append(p.instrument.settle)
    for o in view.orders:
        s = view.feeds[o.symbol].instrument.settle
        if s not in names:
            names.append(s)
    asset_id = {a: j for j, a in enumerate(names)}
    # groups: the legs' bases, then coins holding a balance (the intrabar check's groups)
    groups: list[str] = []
    for p in positions:
        if p.instrument.base not in groups:
            groups.append(p.instrument.base)
    for a, b in view.balances.items():
        if b != 0 and not view.is_stable(a) and a not in groups:
            groups.append(a)
    group_id = {g: j for j, g in enumerate(groups)}
    # pools: those the account holds (non-zero balances, session amounts, the legs' settle
    # assets, in that order), then any other an asset or order names (empty ones)
    pools: list[str] = []

    def pool_of(asset: str) -> int:
        name = asset if per_asset_pools else "USD"
        if name not in pools:
            pools.append(name)
        return pools.index(name)

    for a, b in view.balances.items():
        if b != 0:
            pool_of(a)
    for a, v in view.session.items():
        if v:
            pool_of(a)
    for p in positions:
        pool_of(p.instrument.settle)
    n_held = len(pools)

    face: frozenset[str] = frozenset()
    if profile.inverse_margin_at_face:
        face = frozenset(p.instrument.settle for p in positions
                         if not p.instrument.is_linear and not p.instrument.is_option)
    af = np.zeros((len(names), k.NAF))
    ai = np.full((len(names), k.NAI), _NONE, dtype=np.int64)
    for j, a in enumerate(names):
        af[j, k.AF_BAL] = float(view.balances.get(a, 0))
        af[j, k.AF_SESSION] = float(view.session.get(a, 0))
        af[j, k.AF_HAIRCUT] = 1.0 if a in face else profile.haircut(a)
        stable = view.is_stable(a)
        ai[j, k.AI_STABLE] = 1 if stable else 0
        ai[j, k.AI_GROUP] = group_id.get(a, _NONE) if not stable else _NONE
        ai[j, k.AI_POOL] = pool_of(a)
        f = None if stable else view.index_feeds.get(a)
        if f is not None:
            ai[j, k.AI_ROW] = store.rows[f.symbol]
            ai[j, k.AI_SL] = store.offset(f, "index_low")
            ai[j, k.AI_SH] = store.offset(f, "index_high")
            ai[j, k.AI_SC] = store.offset(f, "index_close")
            af[j, k.AF_PRE] = f.io[0]
    # legs
    tables: dict[str, int] = {}
    fl: list[float] = []
    mr: list[float] = []
    cm: list[float] = []
    lf = np.zeros((len(positions), k.NLF))
    li = np.zeros((len(positions), k.NLI), dtype=np.int64)
    style = _STYLE.get(profile.option_margin_style, k.OSTYLE_LINEAR)
    for j, pos in enumerate(positions):
        inst = pos.instrument
        f = view.feeds[inst.symbol]
        lf[j, k.LF_QTY] = pos.qty_f
        lf[j, k.LF_CS] = inst.cs
        lf[j, k.LF_ENTRY] = pos.entry_f
        lf[j, k.LF_LEV] = pos.leverage
        lf[j, k.LF_ISO] = (float(pos.isolated_margin) if isolated and pos.isolated_margin
                           is not None else float("nan"))
        lf[j, k.LF_DMMR] = profile.default_mmr
        li[j, k.LI_LIN] = 1 if inst.is_linear else 0
        li[j, k.LI_OPT] = 1 if inst.is_option else 0
        li[j, k.LI_GROUP] = group_id[inst.base]
        li[j, k.LI_SETTLE] = asset_id[inst.settle]
        li[j, k.LI_POOL] = pool_of(inst.settle)
        li[j, k.LI_ROW] = store.rows[f.symbol]
        # the underlying a leg's requirement reads: the index, or an option's own forward
        # under Deribit's and Bit.com's option formulas (Bybit's read the index)
        und = ("forward" if inst.is_option and profile.option_margin_style != "bybit"
               else "index")
        for col, name in ((k.LI_SML, "mark_low"), (k.LI_SMH, "mark_high"),
                          (k.LI_SMC, "mark_close"), (k.LI_SUL, f"{und}_low"),
                          (k.LI_SUH, f"{und}_high"), (k.LI_SUC, f"{und}_close")):
            li[j, col] = store.offset(f, name)
        if inst.is_option:
            lf[j, k.LF_STRIKE] = inst.strike or 0.0
            lf[j, k.LF_EXPIRY] = float(inst.expiry_ms or 0)
            lf[j, k.LF_OMM] = profile.option_maintenance_rate
            lf[j, k.LF_OLIQ] = (profile.option_liquidation_fee_rate
                                if profile.option_margin_style == "bybit" else 0.0)
            li[j, k.LI_CALL] = 1 if inst.option_type is OptionType.CALL else 0
            li[j, k.LI_OSTYLE] = style
            continue
        rates = profile.rates.get(inst.symbol)
        tiers = profile.tiers.get(inst.symbol)
        if rates is not None:
            li[j, k.LI_MMK] = k.MMK_RATES
            lf[j, k.LF_IMB], lf[j, k.LF_IMP] = rates.im_base, rates.im_per_coin
            lf[j, k.LF_MMB], lf[j, k.LF_MMP] = rates.mm_base, rates.mm_per_coin
        elif tiers is not None:
            li[j, k.LI_MMK] = k.MMK_TIERS
            off = tables.get(inst.symbol)
            if off is None:
                off = tables[inst.symbol] = len(fl)
                fl.extend(tiers.floors)
                mr.extend(tiers.mmr)
                cm.extend(tiers.cum)
            li[j, k.LI_TOFF] = off
            li[j, k.LI_TN] = len(tiers.floors)
    # working orders (reduce-only orders reserve nothing)
    working = [o for o in view.orders if not o.is_reduce_only]
    of = np.zeros((len(working), k.NOF))
    oi = np.zeros((len(working), k.NOI), dtype=np.int64)
    for j, o in enumerate(working):
        f = view.feeds[o.symbol]
        inst = f.instrument
        of[j, k.OF_QTY] = float(o.qty)
        of[j, k.OF_PRICE] = float(o.price) if o.price is not None else float("nan")
        of[j, k.OF_LEV] = view.leverage(o.symbol)
        of[j, k.OF_CS] = inst.cs
        oi[j, k.OI_LIN] = 1 if inst.is_linear else 0
        oi[j, k.OI_OPT] = 1 if inst.is_option else 0
        oi[j, k.OI_BUY] = 1 if o.side is Side.BUY else 0
        rates = None if inst.is_option else profile.rates.get(o.symbol)
        if rates is not None:
            oi[j, k.OI_MMK] = k.MMK_RATES
            of[j, k.OF_IMB], of[j, k.OF_IMP] = rates.im_base, rates.im_per_coin
        oi[j, k.OI_SETTLE] = asset_id[inst.settle]
        oi[j, k.OI_POOL] = pool_of(inst.settle)
        oi[j, k.OI_ROW] = store.rows[f.symbol]
        oi[j, k.OI_SC] = store.offset(f, "close")
    if not pools:
        pools.append("USD")
    return Book(lf=lf, li=li, af=af, ai=ai, of=of, oi=oi, n_held_pools=n_held,
                floors=np.asarray(fl or [0.0]), mmr=np.asarray(mr or [0.0]),
                cum=np.asarray(cm or [0.0]), positions=positions,
                symbols=[p.symbol for p in positions],
                order_symbols=[o.symbol for o in working], asset_names=names,
                group_names=groups, pool_names=pools, face_value=face)
