"""The arrays the margin kernel evaluates: the price store of a run and the fixed book.

* :class:`PriceStore` — every series the kernel reads (mark low/high/close and underlying
  low/high/close of each instrument, the index low/high/close of each collateral coin, the trade
  close of each instrument for market orders), copied once per run into one flat float64 array,
  with, per feed, the bar it has at each clock step (none when every feed advances at every
  step). The kernel reads a leg's price at step ``s`` as ``store[offset + bar(s)]``.
* :class:`Book` — a constant book as arrays: legs (non-zero positions, in the account's order),
  assets (balances and session amounts with their haircuts), working orders, underlying groups
  and collateral pools (column layouts in :mod:`backtester.margin.kernel`). Built from a narrow
  view of the account (:class:`BookView`) whenever the account or its orders change: laid out
  anew when its shape changes (which legs, assets, pools, groups and working orders it has),
  else the previous book's layout with the new values (quantities, entries, leverage,
  allocations, balances, session amounts, orders' sizes and prices) written in by the same
  code (:func:`_write_values`).

Nothing here imports the engine: callers hand in what the book is made of.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from backtester.accounting import Position
from backtester.data.feed import SymbolFeed
from backtester.instruments import Instrument, OptionType
from backtester.margin import kernel as k
from backtester.margin.profile import MarginRates, ProfileData
from backtester.orders import Order, Side

__all__ = ["AssetIn", "Book", "BookView", "LegIn", "OrderIn", "PriceStore", "assemble",
           "build_book"]

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
    positions: Collection[Position]
    orders: Collection[Order]
    leverage: Callable[[str], float]
    feeds: Mapping[str, SymbolFeed]
    index_feeds: Mapping[str, SymbolFeed]
    is_stable: Callable[[str], bool]


@dataclass(kw_only=True)
class Book:
    """A constant book as the kernel's arrays (column layouts in :mod:`margin.kernel`).

    ``legs`` are the non-zero positions in the account's order (``symbols[j]`` is leg j's,
    ``positions[j]`` its position when the book comes from an account); ``assets`` every asset
    with a balance, a session amount, or a leg or order settling in it (``asset_names``);
    ``groups`` the underlying coins (a leg's base, or a coin with a balance); ``pools`` the
    collateral pools (``pool_names``; one, ``USD``, unless the profile keeps one per asset), the
    first ``n_held_pools`` those the account holds (a non-zero balance or session amount, or an
    open position) — the account is multi-pool when it holds several.
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
    #: each group's row in the run's distance records (-1: none)
    gmap: I64
    #: whether the margin surplus is known to be concave in a move of the underlyings (see
    #: ``kernel._distance``; False: the distance is searched on a grid)
    concave: bool = True
    #: whether a leg is an option (their intrabar marks are repriced per bar)
    has_options: bool = False
    #: whether an asset's balance is negative (a liability)
    liability: bool = False
    #: what the layout depends on (:func:`build_book`; None: not built from a view)
    shape: Hashable = None

    #: the kernel's book arguments, in ``kernel.evaluate``'s order (lf, li, af, ai, of, oi,
    #: number of groups and of pools, floors, mmr, cum; :meth:`kernel_args`)
    _args: tuple[F64, I64, F64, I64, F64, I64, int, int, F64, F64, F64] | None = None

    @property
    def n_legs(self) -> int:
        """Number of legs."""
        return int(self.lf.shape[0])

    def kernel_args(self) -> tuple[F64, I64, F64, I64, F64, I64, int, int, F64, F64, F64]:
        """The book's arguments of ``kernel.evaluate`` (``lf`` … ``cum``), packed once."""
        args = self._args
        if args is None:
            args = self._args = (self.lf, self.li, self.af, self.ai, self.of, self.oi,
                                 len(self.group_names), len(self.pool_names), self.floors,
                                 self.mmr, self.cum)
        return args

    def _revalued(self, positions: list[Position], values: _Values) -> Book:
        # this layout with other values: the value arrays copied and rewritten, the rest
        # shared (never written after assemble; an empty array is shared too)
        out: Book = object.__new__(Book)
        # (a copy of the instance's dict: dataclasses.replace costs several times more)
        out.__dict__.update(self.__dict__)
        out.lf = self.lf.copy() if len(self.lf) else self.lf
        out.af = self.af.copy() if len(self.af) else self.af
        out.of = self.of.copy() if len(self.of) else self.of
        out.positions = positions
        out.liability = any(bal < 0 for bal, _ in values.assets)
        out._args = None
        _write_values(out.lf, out.af, out.of, values)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LegIn:
    """One leg for :func:`assemble`: the contract, its size and margin model, and where its
    prices are in the store (``series``: offsets of its mark low/high/close and underlying
    low/high/close; ``row``: its feed's bar row, -1 when the feed advances every step)."""

    symbol: str
    instrument: Instrument
    qty: float
    entry: float
    leverage: float
    isolated_margin: float
    tiers: tuple[Sequence[float] | F64, Sequence[float] | F64, Sequence[float] | F64] | None
    rates: MarginRates | None
    default_mmr: float
    option_style: str
    option_mm_rate: float
    option_liq_rate: float
    series: tuple[int, int, int, int, int, int]
    row: int = _NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetIn:
    """One collateral asset for :func:`assemble`: its balance and session amount, its haircut
    (applied to a positive balance), and its USD price in the store (``series`` offsets of
    low/high/close, or None: no price, 0; ``pre`` before its feed's first bar)."""

    name: str
    balance: float
    session: float
    haircut: float
    stable: bool
    series: tuple[int, int, int] | None
    row: int = _NONE
    pre: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderIn:
    """One working order for :func:`assemble` (reduce-only orders reserve nothing: leave them
    out): its size, limit price (NaN: a market order, at ``close`` in the store), leverage."""

    symbol: str
    instrument: Instrument
    qty: float
    price: float
    leverage: float
    is_buy: bool
    rates: MarginRates | None
    close: int
    row: int = _NONE


class _Values(NamedTuple):
    # the book's values that change without changing its layout, in the book's order, a row
    # per item in the order of its value columns (_LEG_VALUES, _ASSET_VALUES, _ORDER_VALUES)
    legs: Sequence[tuple[float, float, float, float]]
    assets: Sequence[tuple[float, float]]
    orders: Sequence[tuple[float, float, float]]


# the value columns of each array: adjacent and first, so that a book's values are written
# in one assignment per array (this runs at every change of the account)
_LEG_VALUES = (k.LF_QTY, k.LF_ENTRY, k.LF_LEV, k.LF_ISO)
_ASSET_VALUES = (k.AF_BAL, k.AF_SESSION)
_ORDER_VALUES = (k.OF_QTY, k.OF_PRICE, k.OF_LEV)
for _cols in (_LEG_VALUES, _ASSET_VALUES, _ORDER_VALUES):
    if _cols != tuple(range(len(_cols))):
        _msg = f"the kernel's value columns {_cols} are not the first columns of their array"
        raise AssertionError(_msg)


def _write_values(lf: F64, af: F64, of: F64, v: _Values) -> None:
    # the value columns of a book's arrays (every other column is its layout)
    if len(lf):
        lf[:, :len(_LEG_VALUES)] = v.legs
    if len(af):
        af[:, :len(_ASSET_VALUES)] = v.assets
    if len(of):
        of[:, :len(_ORDER_VALUES)] = v.orders


def assemble(legs: Sequence[LegIn], assets: Sequence[AssetIn], orders: Sequence[OrderIn], *,
             held_pools: Sequence[str], per_asset_pools: bool, inverse_margin_at_face: bool,
             positions: Sequence[Position] = (),
             group_rows: Mapping[str, int] | None = None) -> Book:
    """Lay out the kernel arrays of a book.

    ``held_pools`` are the pools the account holds, in order (see :class:`Book`);
    ``per_asset_pools``: one pool per settle asset, else one USD pool;
    ``inverse_margin_at_face``: the settle coin of an open inverse contract counts without a
    haircut (Bybit [BY1] §5.3); ``group_rows``: an underlying's row in the run's distance
    records.
    """
    names = [a.name for a in assets]
    asset_id = {a: j for j, a in enumerate(names)}
    groups: list[str] = []
    for leg in legs:
        if leg.instrument.base not in groups:
            groups.append(leg.instrument.base)
    for a in assets:
        if a.balance != 0 and not a.stable and a.name not in groups:
            groups.append(a.name)
    group_id = {g: j for j, g in enumerate(groups)}
    pools: list[str] = []

    def pool_of(asset: str) -> int:
        name = asset if per_asset_pools else "USD"
        if name not in pools:
            pools.append(name)
        return pools.index(name)

    for name in held_pools:
        pool_of(name)
    n_held = len(pools)
    face: frozenset[str] = frozenset()
    if inverse_margin_at_face:
        face = frozenset(leg.instrument.settle for leg in legs
                         if not leg.instrument.is_linear and not leg.instrument.is_option)
    af = np.zeros((len(assets), k.NAF))
    ai = np.full((len(assets), k.NAI), _NONE, dtype=np.int64)
    for j, a in enumerate(assets):
        af[j, k.AF_HAIRCUT] = 1.0 if a.name in face else a.haircut
        af[j, k.AF_PRE] = a.pre
        ai[j, k.AI_STABLE] = 1 if a.stable else 0
        ai[j, k.AI_GROUP] = group_id.get(a.name, _NONE) if not a.stable else _NONE
        ai[j, k.AI_POOL] = pool_of(a.name)
        if a.series is not None:
            ai[j, k.AI_ROW] = a.row
            ai[j, k.AI_SL], ai[j, k.AI_SH], ai[j, k.AI_SC] = a.series
    tables: dict[int, int] = {}
    fl: list[float] = []
    mr: list[float] = []
    cm: list[float] = []
    lf = np.zeros((len(legs), k.NLF))
    li = np.zeros((len(legs), k.NLI), dtype=np.int64)
    leg_id = {leg.symbol: j for j, leg in reversed(list(enumerate(legs)))}
    for j, leg in enumerate(legs):
        inst = leg.instrument
        lf[j, k.LF_CS] = inst.cs
        lf[j, k.LF_DMMR] = leg.default_mmr
        li[j, k.LI_LIN] = 1 if inst.is_linear else 0
        li[j, k.LI_OPT] = 1 if inst.is_option else 0
        li[j, k.LI_GROUP] = group_id[inst.base]
        li[j, k.LI_SETTLE] = asset_id[inst.settle]
        li[j, k.LI_POOL] = pool_of(inst.settle)
        li[j, k.LI_ROW] = leg.row
        li[j, k.LI_SYM] = leg_id[leg.symbol]
        (li[j, k.LI_SML], li[j, k.LI_SMH], li[j, k.LI_SMC], li[j, k.LI_SUL], li[j, k.LI_SUH],
         li[j, k.LI_SUC]) = leg.series
        if inst.is_option:
            lf[j, k.LF_STRIKE] = inst.strike or 0.0
            lf[j, k.LF_EXPIRY] = float(inst.expiry_ms or 0)
            lf[j, k.LF_OMM] = leg.option_mm_rate
            lf[j, k.LF_OLIQ] = leg.option_liq_rate
            li[j, k.LI_CALL] = 1 if inst.option_type is OptionType.CALL else 0
            li[j, k.LI_OSTYLE] = _STYLE.get(leg.option_style, k.OSTYLE_LINEAR)
            continue
        if leg.rates is not None:
            li[j, k.LI_MMK] = k.MMK_RATES
            lf[j, k.LF_IMB], lf[j, k.LF_IMP] = leg.rates.im_base, leg.rates.im_per_coin
            lf[j, k.LF_MMB], lf[j, k.LF_MMP] = leg.rates.mm_base, leg.rates.mm_per_coin
        elif leg.tiers is not None:
            li[j, k.LI_MMK] = k.MMK_TIERS
            off = tables.get(id(leg.tiers))
            if off is None:
                off = tables[id(leg.tiers)] = len(fl)
                fl.extend(leg.tiers[0])
                mr.extend(leg.tiers[1])
                cm.extend(leg.tiers[2])
            li[j, k.LI_TOFF] = off
            li[j, k.LI_TN] = len(leg.tiers[0])
    of = np.zeros((len(orders), k.NOF))
    oi = np.zeros((len(orders), k.NOI), dtype=np.int64)
    for j, o in enumerate(orders):
        inst = o.instrument
        of[j, k.OF_CS] = inst.cs
        oi[j, k.OI_LIN] = 1 if inst.is_linear else 0
        oi[j, k.OI_OPT] = 1 if inst.is_option else 0
        oi[j, k.OI_BUY] = 1 if o.is_buy else 0
        if o.rates is not None and not inst.is_option:
            oi[j, k.OI_MMK] = k.MMK_RATES
            of[j, k.OF_IMB], of[j, k.OF_IMP] = o.rates.im_base, o.rates.im_per_coin
        oi[j, k.OI_SETTLE] = asset_id[inst.settle]
        oi[j, k.OI_POOL] = pool_of(inst.settle)
        oi[j, k.OI_ROW] = o.row
        oi[j, k.OI_SC] = o.close
    _write_values(lf, af, of, _Values(
        legs=[(leg.qty, leg.entry, leg.leverage, leg.isolated_margin) for leg in legs],
        assets=[(a.balance, a.session) for a in assets],
        orders=[(o.qty, o.price, o.leverage) for o in orders]))
    if not pools:
        pools.append("USD")
    rows = group_rows or {}
    gmap = np.asarray([rows.get(g, _NONE) for g in groups] or [_NONE], dtype=np.int64)
    return Book(lf=lf, li=li, af=af, ai=ai, of=of, oi=oi, n_held_pools=n_held,
                floors=np.asarray(fl or [0.0]), mmr=np.asarray(mr or [0.0]),
                cum=np.asarray(cm or [0.0]), positions=list(positions),
                symbols=[leg.symbol for leg in legs], order_symbols=[o.symbol for o in orders],
                asset_names=names, group_names=groups, pool_names=pools, face_value=face,
                gmap=gmap, concave=_concave(legs, assets),
                has_options=any(leg.instrument.is_option for leg in legs),
                liability=any(a.balance < 0 for a in assets))


def _concave(legs: Sequence[LegIn], assets: Sequence[AssetIn]) -> bool:
    # whether the margin surplus is concave in a common move of the underlyings: maintenance
    # convex in the notional (tier rates that never fall, with maintenance amounts that keep
    # it continuous) and no linear contract settled in a coin that moves too (its value in
    # USD is then quadratic in the move)
    coins = {a.name for a in assets if not a.stable}
    for leg in legs:
        inst = leg.instrument
        if inst.is_option:
            continue
        if inst.is_linear and inst.settle in coins:
            return False
        if leg.tiers is not None and leg.rates is None:
            floors, mmr, cum = (np.asarray(x, dtype=np.float64) for x in leg.tiers)
            if (np.diff(mmr) < 0).any():
                return False
            left = floors[1:] * mmr[:-1] - cum[:-1]
            right = floors[1:] * mmr[1:] - cum[1:]
            if not np.allclose(left, right, rtol=1e-9, atol=1e-9):
                return False
    return True


def build_book(view: BookView, store: PriceStore, profile: ProfileData, *,
               per_asset_pools: bool, isolated: bool,
               group_rows: Mapping[str, int] | None = None,
               previous: Book | None = None) -> Book:
    """Build the kernel arrays of the book ``view`` describes (a run's account).

    ``per_asset_pools``: one pool per settle asset (per-asset profiles outside portfolio mode);
    else one USD pool. ``isolated``: positions carry their isolated allocations.
    ``group_rows``: an underlying's row in the run's distance records. ``previous``: a book
    built before by this function with the same profile, store and options; when its shape
    is the view's, the new book is its layout with the view's values (the same arrays as a
    book laid out anew).
    """
    # (one pass per kind of item: this runs at every change of the account)
    nan = float("nan")
    positions: list[Position] = []
    leg_values: list[tuple[float, float, float, float]] = []
    for p in view.positions:
        if p.qty_f != 0.0:
            positions.append(p)
            leg_values.append((p.qty_f, p.entry_f, p.leverage,
                               float(p.isolated_margin) if isolated
                               and p.isolated_margin is not None else nan))
    working = [o for o in view.orders if not o.is_reduce_only]
    # assets: balances, session amounts, the settle assets of the legs and orders
    names: list[str] = list(view.balances)
    held_session = [a for a, v in view.session.items() if v]
    for a in held_session:
        if a not in names:
            names.append(a)
    for p in positions:
        if p.instrument.settle not in names:
            names.append(p.instrument.settle)
    for o in view.orders:
        settle = view.feeds[o.symbol].instrument.settle
        if settle not in names:
            names.append(settle)
    balance = [float(view.balances.get(a, 0)) for a in names]
    session = ([float(view.session.get(a, 0)) for a in names] if view.session
               else [0.0] * len(names))
    values = _Values(
        legs=leg_values, assets=list(zip(balance, session, strict=True)),
        orders=[(float(o.qty), float(o.price) if o.price is not None else nan,
                 view.leverage(o.symbol)) for o in working])
    # what the layout depends on besides the run: the legs, assets, held balances and
    # session amounts (groups, pools) and the working orders, in order
    shape = (tuple([p.symbol for p in positions]), tuple(names),
             tuple([a for a, b in view.balances.items() if b != 0]),
             tuple(held_session), tuple([v != 0 for v in balance]),
             tuple([(o.symbol, o.side) for o in working]))
    if previous is not None and previous.shape == shape:
        return previous._revalued(positions, values)
    assets = []
    for j, a in enumerate(names):
        stable = view.is_stable(a)
        f = None if stable else view.index_feeds.get(a)
        assets.append(AssetIn(
            name=a, balance=balance[j], session=session[j],
            haircut=profile.haircut(a), stable=stable,
            series=None if f is None else (store.offset(f, "index_low"),
                                           store.offset(f, "index_high"),
                                           store.offset(f, "index_close")),
            row=_NONE if f is None else store.rows[f.symbol],
            pre=0.0 if f is None else f.io[0]))
    legs = []
    for j, pos in enumerate(positions):
        inst = pos.instrument
        f = view.feeds[inst.symbol]
        tiers = profile.tiers.get(inst.symbol)
        # the underlying a leg's requirement reads: the index, or an option's own forward
        # under Deribit's and Bit.com's option formulas (Bybit's read the index)
        und = ("forward" if inst.is_option and profile.option_margin_style != "bybit"
               else "index")
        legs.append(LegIn(
            symbol=inst.symbol, instrument=inst, qty=leg_values[j][0], entry=leg_values[j][1],
            leverage=leg_values[j][2], isolated_margin=leg_values[j][3],
            tiers=None if tiers is None else (tiers.floors, tiers.mmr, tiers.cum),
            rates=None if inst.is_option else profile.rates.get(inst.symbol),
            default_mmr=profile.default_mmr, option_style=profile.option_margin_style,
            option_mm_rate=profile.option_maintenance_rate,
            option_liq_rate=(profile.option_liquidation_fee_rate
                             if profile.option_margin_style == "bybit" else 0.0),
            series=(store.offset(f, "mark_low"), store.offset(f, "mark_high"),
                    store.offset(f, "mark_close"), store.offset(f, f"{und}_low"),
                    store.offset(f, f"{und}_high"), store.offset(f, f"{und}_close")),
            row=store.rows[f.symbol]))
    orders = []
    for j, o in enumerate(working):
        f = view.feeds[o.symbol]
        orders.append(OrderIn(
            symbol=o.symbol, instrument=f.instrument, qty=values.orders[j][0],
            price=values.orders[j][1], leverage=values.orders[j][2],
            is_buy=o.side is Side.BUY,
            rates=profile.rates.get(o.symbol), close=store.offset(f, "close"),
            row=store.rows[f.symbol]))
    held: list[str] = [a for a, b in view.balances.items() if b != 0]
    held += [a for a, v in view.session.items() if v]
    held += [p.instrument.settle for p in positions]
    book = assemble(legs, assets, orders, held_pools=held, per_asset_pools=per_asset_pools,
                    inverse_margin_at_face=profile.inverse_margin_at_face, positions=positions,
                    group_rows=group_rows)
    book.shape = shape
    return book
