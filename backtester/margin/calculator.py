"""The margin calculator: evaluate one account snapshot (DESIGN §4) and return JSON-ready output.

Units: per-position amounts are in the position's settle currency; account amounts in the
valuation currency (USD for USD-valued pools: binance-usdm, bybit, okx; the pool's coin for
single-coin pools: binance-coinm, deribit standard). ``margin_ratio`` = maintenance margin /
margin balance (null when the margin balance is not positive). Status: ``liquidate`` when
maintenance ≥ margin balance, ``call`` when the ratio reaches the profile's call level.

Pools (profile ``pool``): ``per_settle_asset`` — one pool per settle asset, each valued in USD
at its index (the account status and ratio are those of the worst pool);
``per_coin``/``per_currency`` — exactly one coin pool (a second one is an error naming the
field); ``usd`` — one pool, collateral valued at ``index × haircut`` and position PnL and
requirements at the settle asset's index (haircuts apply to collateral only).

A negative collateral amount is a liability — a stablecoin the account owes after a short option
settled against coin collateral, say — and counts at its full value (index × amount, no
haircut: a haircut discounts what an asset is worth as collateral, not a debt), as the engine
values it. A pool holding one is ``liquidate`` once its margin balance reaches its maintenance
margin even with no position open (maintenance 0: a margin balance at or below 0), as the
engine rules (``backtester.margin.pools.liquidation_status``). Borrowing interest and the
exchanges' margin on borrowings (Bybit, OKX) are not modelled.

Cross: margin balance = collateral value + Σ UPnL; requirements add up (DESIGN §4). Isolated:
each position has its own margin (``isolated_margin``, default its initial margin at entry)
and ``collateral`` is the free balance; the account is liquidating when any position is.

Every amount comes from the margin kernel (:mod:`backtester.margin.kernel`), the one
implementation of the margin arithmetic the bar loop also runs: the snapshot becomes a book
(its positions as legs, its collateral as assets) and a one-step price store, evaluated at the
snapshot's prices. Liquidation and bankruptcy prices are roots, found by
:func:`backtester.margin.prices.price_root`, of the kernel's evaluation with the legs of one
symbol moved together (cross: the long and short of a hedge-mode symbol share one price) and,
in a USD pool, that symbol's coin with them (collateral in the coin, and the conversion of what
settles in it); everything else — other symbols, options, other collateral — is held at its
current value. Options have no liquidation price here; ``mode: "portfolio"`` is delegated to
``backtester.margin.portfolio.evaluate_portfolio(snapshot, profile=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from backtester.errors import ConfigError
from backtester.margin import kernel as k
from backtester.margin.book import AssetIn, Book, LegIn, assemble
from backtester.margin.options import (
    DEFAULT_BYBIT_LIQUIDATION_FEE_RATE,
    default_maintenance_rate,
    style_for_profile,
)
from backtester.margin.prices import price_root
from backtester.margin.requirements import check_leverage
from backtester.margin.snapshot import (
    ParsedPosition,
    ParsedSnapshot,
    parse_snapshot,
    valuation_price,
)

__all__ = ["evaluate"]

_STATUS = ("ok", "call", "liquidate")
_LEG = {"mark": 0, "value": 1, "notional": 2, "im": 3, "mm": 4}  # legs_out columns


def evaluate(snapshot: Mapping[str, object]) -> dict[str, object]:
    """Evaluate a margin snapshot and return the calculator output (DESIGN §4).

    Parameters
    ----------
    snapshot
        The input object: ``profile``, ``mode``, ``position_mode``, ``collateral``,
        ``haircuts``, ``prices``, ``positions``, ``time`` (see DESIGN §4).

    Returns
    -------
    dict
        ``valuation_currency``, ``margin_balance``, ``wallet_balance``, ``unrealized_pnl``,
        ``initial_margin``, ``maintenance_margin``, ``margin_ratio``, ``available``, ``status``
        (``ok``/``call``/``liquidate``), ``exchange_margin_ratio`` (OKX only) and
        ``positions`` (input order: ``symbol``, ``side``, ``notional``, ``tier``,
        ``initial_margin``, ``maintenance_margin``, ``liquidation_price``,
        ``bankruptcy_price``).

    Raises
    ------
    ConfigError
        For any invalid field, naming its path.

    Examples
    --------
    >>> out = evaluate({"profile": "bybit", "collateral": {"USDT": 400.0},
    ...     "prices": {"BTC/USDT:USDT": {"mark": 20_000.0}},
    ...     "positions": [{"symbol": "BTC/USDT:USDT", "side": "long", "size": 1,
    ...                    "entry_price": 20_000.0, "leverage": 50}]})
    >>> out["maintenance_margin"], out["status"]
    (100.0, 'ok')
    """
    snap = parse_snapshot(snapshot)
    if snap.mode == "portfolio":
        from backtester.margin.portfolio import evaluate_portfolio  # it evaluates through here

        result: dict[str, object] = evaluate_portfolio(snapshot, profile=snap.profile)
        return result
    for p in snap.positions:
        if p.instrument.is_option and snap.mode == "isolated":
            msg = f"positions[{p.index}].instrument.type: options are margined in cross only"
            raise ConfigError(msg)
    ev = _SnapshotBook(snap)
    ev.check_leverage()
    if snap.mode == "isolated":
        return _isolated(snap, ev)
    return _cross(snap, ev)


# -- the snapshot as a kernel book ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Result:
    """One kernel evaluation: the account (``rec``), each leg (``legs[j, _LEG[...]]``, settle
    currency) and each pool (``pools[p, k.POOL_*]``), valuation currency."""

    rec: np.ndarray
    legs: np.ndarray
    pools: np.ndarray


class _SnapshotBook:
    """A snapshot's positions and collateral as a kernel book over a one-step price store.

    Every amount is in the valuation currency: an asset's price ``px`` is its USD price when
    the profile values in USD (a stablecoin's index or 1; a coin contract's settle coin, with
    no index given, at the contract's own index), 1 in a single-coin pool valued in its coin.
    """

    def __init__(self, snap: ParsedSnapshot) -> None:
        self.snap = snap
        profile = snap.profile
        self.usd = profile.valuation == "usd"
        self.usd_pool = profile.pool == "usd"
        self.isolated = snap.mode == "isolated"
        positions = snap.positions
        names = list(snap.collateral)
        for p in positions:
            if p.instrument.settle not in names:
                names.append(p.instrument.settle)
        self._check_pools(names)
        self.px = {a: self._price(a) for a in names}
        values: list[float] = []

        def put(x: float) -> int:
            values.append(x)
            return len(values) - 1

        face: frozenset[str] = frozenset()
        if profile.inverse_margin_at_face:
            face = frozenset(p.instrument.settle for p in positions
                             if not p.instrument.is_linear and not p.instrument.is_option)
        self.entry_margin: list[float] = []
        legs: list[LegIn] = []
        style = style_for_profile(profile.name)
        for p in positions:
            inst = p.instrument
            m = put(p.mark)
            u = put(p.underlying_price if inst.is_option and p.underlying_price is not None
                    else p.index_price)
            om = p.option_margin or {}
            tiers = None if p.tiers is None or p.margin_rates is not None else p.tiers.arrays()
            legs.append(LegIn(
                symbol=p.symbol, instrument=inst, qty=p.qty, entry=p.entry_price,
                leverage=p.leverage, isolated_margin=float("nan"),
                tiers=tiers, rates=p.margin_rates, default_mmr=0.0, option_style=style,
                option_mm_rate=om.get("maintenance_rate", default_maintenance_rate(style)),
                option_liq_rate=om.get("liquidation_fee", DEFAULT_BYBIT_LIQUIDATION_FEE_RATE
                                       if style == "bybit" else 0.0),
                series=(m, m, m, u, u, u)))
        self.store_values = values
        self._legs = legs
        self._assets_of = names
        self._face = face
        book = self._assemble(legs, allocations={})
        if self.isolated:
            # an isolated position's margin: given, else its initial margin at entry
            self.entry_margin = [
                p.isolated_margin if p.isolated_margin is not None else float(
                    k.leg_margin(book.lf, book.li, j, p.entry_price, p.entry_price,
                                 book.floors, book.mmr, book.cum)[1])
                for j, p in enumerate(positions)]
            legs = [replace(leg, isolated_margin=margin)
                    for leg, margin in zip(legs, self.entry_margin, strict=True)]
            alloc: dict[str, float] = {}
            for p, margin in zip(positions, self.entry_margin, strict=True):
                alloc[p.instrument.settle] = alloc.get(p.instrument.settle, 0.0) + margin
            book = self._assemble(legs, allocations=alloc)
        self.book = book
        self.store = np.asarray(values or [0.0], dtype=np.float64)
        self.flags = k.MULTI | (k.ISOLATED if self.isolated else 0)
        if style_for_profile(profile.name) == "bybit":
            # Bybit's cross margin balance is wallet + futures PnL: options' value is not in it
            # ([BY3] §5.1; it enters under portfolio margin)
            self.flags |= k.OPTIONS_OFF_MB
        nl, npool = max(book.n_legs, 1), max(len(book.pool_names), 1)
        self._bars = np.zeros((1, 1), dtype=np.int64)
        self._optmark = np.full((book.n_legs, 1, 2), np.nan)
        self._choice = np.full((npool, max(len(book.group_names), 1)), 2, dtype=np.int64)
        self._pm = np.full(2, np.nan)
        self._excess = np.zeros((0, 1, 3))
        self._no_dist = np.zeros((0, 2, 1))
        self._shape = (nl, npool)
        self.base = self.run()

    def _assemble(self, legs: list[LegIn], *, allocations: Mapping[str, float]) -> Book:
        snap = self.snap
        assets = []
        for a in self._assets_of:
            off = len(self.store_values)
            self.store_values.append(self.px[a])
            amount = snap.collateral.get(a, 0.0)
            assets.append(AssetIn(
                name=a, balance=amount + allocations.get(a, 0.0), session=0.0,
                haircut=self._haircut(a, amount), stable=False, series=(off, off, off)))
        return assemble(legs, assets, [], held_pools=self._assets_of,
                        per_asset_pools=self.snap.profile.pool != "usd",
                        inverse_margin_at_face=snap.profile.inverse_margin_at_face)

    def _check_pools(self, names: list[str]) -> None:
        snap = self.snap
        if snap.profile.pool not in ("per_coin", "per_currency") or len(set(names)) <= 1:
            return
        ordered = sorted(set(names))
        first = next((p for p in snap.positions if p.instrument.settle != ordered[0]), None)
        where = (f"positions[{first.index}].instrument.settle" if first is not None
                 else f"collateral.{ordered[1]}")
        msg = (f"{where}: profile {snap.profile.name} values one coin pool per snapshot; this "
               f"one needs {', '.join(ordered)} — evaluate each currency in its own snapshot")
        raise ConfigError(msg)

    def _price(self, asset: str) -> float:
        # valuation units per unit of ``asset``
        snap = self.snap
        price = valuation_price(snap, asset)
        if price is not None:
            return price
        if self.usd_pool:
            user = next((p for p in snap.positions if p.instrument.settle == asset), None)
            if user is not None and asset not in snap.collateral:
                path = f"positions[{user.index}].instrument.settle"
                msg = f"{path}: no USD price for {asset}; give prices.{asset}.index"
                raise ConfigError(msg)
        msg = f"collateral.{asset}: no USD price for {asset}; give prices.{asset}.index"
        raise ConfigError(msg)

    def _haircut(self, asset: str, amount: float) -> float:
        snap = self.snap
        haircut = snap.haircuts.get(asset)
        if haircut is not None:
            return haircut
        if self.usd_pool and amount > 0 and asset not in self._face:
            msg = (f"collateral.{asset}: profile {snap.profile.name} has no collateral ratio "
                   f"for {asset}; give haircuts.{asset}")
            raise ConfigError(msg)
        return 1.0

    def check_leverage(self) -> None:
        """Refuse a leverage above the maximum of the position's tier (Binance §2.1 [B3]), as a
        run's order admission does (``leverage_exceeds_bracket``)."""
        for j, p in enumerate(self.snap.positions):
            if p.instrument.is_option or p.margin_rates is not None or p.tiers is None:
                continue
            notional = float(self.base.legs[j, _LEG["notional"]])
            check = check_leverage(p.tiers, notional, p.leverage)
            if not check.is_allowed:
                msg = (f"positions[{p.index}].leverage: {p.leverage:g} exceeds the maximum "
                       f"leverage {check.max_leverage:g} of tier {check.tier} for a notional of "
                       f"{notional:,.2f} on {p.symbol}; use at most {check.max_leverage:g}")
                raise ConfigError(msg)

    def run(self, *, symbol: str | None = None, factor: float = 1.0) -> _Result:
        """Evaluate the book, with ``symbol``'s legs (and, in a USD pool, its coin) moved by
        ``factor``."""
        book = self.book
        shift_sym = shift_asset = -1
        if symbol is not None:
            shift_sym = book.symbols.index(symbol)
            coin = self.snap.positions[shift_sym].instrument.base
            if self.usd_pool and coin in book.asset_names:
                shift_asset = book.asset_names.index(coin)
        nl, npool = self._shape
        rec = np.zeros((k.NREC, 1))
        legs = np.zeros((1, nl, 5))
        pools = np.zeros((1, npool, k.NPOOL))
        k.evaluate(0, 1, self.flags, self.snap.profile.call_level, book.lf, book.li, book.af,
                   book.ai, book.of, book.oi, len(book.group_names), len(book.pool_names),
                   book.floors, book.mmr, book.cum, self.store, self._bars, self._optmark,
                   self._choice, shift_sym, shift_asset, factor, self._pm, rec, 0, legs, pools,
                   self._excess, self._no_dist, book.gmap)
        return _Result(rec=rec[:, 0], legs=legs[0], pools=pools[0])

    def moved_price(self, asset: str, symbol: str, factor: float) -> float:
        """``asset``'s price with ``symbol``'s coin moved by ``factor`` (see :meth:`run`)."""
        coin = self.snap.positions[self.book.symbols.index(symbol)].instrument.base
        moves = self.usd_pool and asset == coin
        return self.px[asset] * (factor if moves else 1.0)


def _position_out(p: ParsedPosition, row: np.ndarray, lp: float | None,
                  bp: float | None) -> dict[str, object]:
    notional = float(row[_LEG["notional"]])
    tier = None
    if not p.instrument.is_option and p.margin_rates is None and p.tiers is not None:
        tier = p.tiers.tier_for(notional).tier
    return {"symbol": p.symbol, "side": p.side, "notional": notional, "tier": tier,
            "initial_margin": float(row[_LEG["im"]]),
            "maintenance_margin": float(row[_LEG["mm"]]),
            "liquidation_price": lp, "bankruptcy_price": bp}


def _valuation_currency(snap: ParsedSnapshot, book: Book) -> str:
    if snap.profile.valuation == "usd":
        return "USD"
    return book.pool_names[0] if book.pool_names else "USD"


def _ratio(mb: float, mm: float) -> float | None:
    return mm / mb if mb > 0.0 else None


# -- cross ----------------------------------------------------------------------------------------
def _cross(snap: ParsedSnapshot, ev: _SnapshotBook) -> dict[str, object]:
    profile = snap.profile
    book, base = ev.book, ev.base
    npool = len(book.pool_names)
    pools = base.pools[:npool]
    mb = float(pools[:, k.POOL_MB].sum())
    coll = float(pools[:, k.POOL_COLLATERAL].sum())
    mm = float(pools[:, k.POOL_MM].sum())
    im = float(pools[:, k.POOL_IM].sum())
    if npool > 1:
        ratios = [_ratio(float(r[k.POOL_MB]), float(r[k.POOL_MM])) for r in pools]
        margin_ratio = None if any(r is None for r in ratios) else max(
            r for r in ratios if r is not None)
    else:
        margin_ratio = _ratio(mb, mm)
    out: dict[str, object] = {
        "valuation_currency": _valuation_currency(snap, book),
        "margin_balance": mb,
        "wallet_balance": coll,
        "unrealized_pnl": mb - coll,
        "initial_margin": im,
        "maintenance_margin": mm,
        "margin_ratio": margin_ratio,
        "available": mb - im,
        "status": _STATUS[int(pools[:, k.POOL_STATUS].max())] if npool else "ok",
    }
    if profile.has_exchange_margin_ratio:
        # OKX: equity / (maintenance margin + the taker fee to close every position)
        cost = mm + sum(float(base.legs[j, _LEG["notional"]]) * ev.px[p.instrument.settle]
                        * float(p.instrument.fee_rate(is_maker=False))
                        for j, p in enumerate(snap.positions))
        out["exchange_margin_ratio"] = mb / cost if cost > 0.0 else None
    prices: dict[str, tuple[float | None, float | None]] = {}
    for j, p in enumerate(snap.positions):
        if not p.instrument.is_option and p.symbol not in prices:
            prices[p.symbol] = _cross_prices(ev, j)
    out["positions"] = [_position_out(p, base.legs[j], *prices.get(p.symbol, (None, None)))
                        for j, p in enumerate(snap.positions)]
    return out


def _cross_prices(ev: _SnapshotBook, first: int) -> tuple[float | None, float | None]:
    """(liquidation, bankruptcy) price of the symbol of position ``first`` in cross margin:
    the mark at which its pool's margin balance meets its maintenance margin, and zero."""
    snap, book = ev.snap, ev.book
    p0 = snap.positions[first]
    inst, sym, mark = p0.instrument, p0.symbol, p0.mark
    group = [j for j, p in enumerate(snap.positions) if p.symbol == sym]
    pool = int(book.li[first, k.LI_POOL])
    long = sum(snap.positions[j].qty for j in group) > 0
    fee = (float(inst.fee_rate(is_maker=False)) if snap.profile.bankruptcy_includes_close_fee
           else 0.0)

    def close_fee(r: _Result, factor: float) -> float:
        # the taker fee to close the symbol's legs at the moved price (valuation currency)
        px = ev.moved_price(inst.settle, sym, factor)
        return fee * px * sum(float(r.legs[j, _LEG["notional"]]) for j in group)

    def left(factor: float) -> float:
        r = ev.run(symbol=sym, factor=factor)
        return float(r.pools[pool, k.POOL_MB]) - (close_fee(r, factor) if fee else 0.0)

    fb = price_root(left, long=long)
    bp = None if fb is None else mark * fb
    if (snap.profile.inverse_cross_formula == "bybit" and len(group) == 1
            and not inst.is_linear and bp is not None):
        return _bybit_inverse_cross(ev, first, bp), bp

    def surplus(factor: float) -> float:
        r = ev.run(symbol=sym, factor=factor)
        return float(r.pools[pool, k.POOL_MB] - r.pools[pool, k.POOL_MM])

    fl = price_root(surplus, long=long)
    return (None if fl is None else mark * fl), bp


def _bybit_inverse_cross(ev: _SnapshotBook, j: int, bp: float) -> float | None:
    """Bybit's cross liquidation price of an inverse position, [BY1] §5.3: the coin balance
    backing it plus its PnL meets the maintenance margin on the entry value plus the taker fee
    to close at the bankruptcy price, ``B + C·(1/EP − 1/LP) = (C/EP)·MMR + C·taker/BP`` (long;
    mirrored for a short), ``B`` = the pool's margin balance without the position's PnL."""
    p = ev.snap.positions[j]
    sym, mark, settle = p.symbol, p.mark, p.instrument.settle
    base = ev.base
    pool = int(ev.book.li[j, k.LI_POOL])
    px = ev.px[settle]
    balance = (float(base.pools[pool, k.POOL_MB]) - float(base.legs[j, _LEG["value"]]) * px) / px
    at_entry = ev.run(symbol=sym, factor=p.entry_price / mark).legs[j]
    at_bp = ev.run(symbol=sym, factor=bp / mark).legs[j]
    need = float(at_entry[_LEG["mm"]]) + float(p.instrument.fee_rate(is_maker=False)) * float(
        at_bp[_LEG["notional"]])

    def surplus(factor: float) -> float:
        return balance + float(ev.run(symbol=sym, factor=factor).legs[j, _LEG["value"]]) - need

    f = price_root(surplus, long=p.qty > 0)
    return None if f is None else mark * f


# -- isolated -------------------------------------------------------------------------------------
def _isolated(snap: ParsedSnapshot, ev: _SnapshotBook) -> dict[str, object]:
    profile = snap.profile
    book, base = ev.book, ev.base
    free = sum(float(base.pools[p, k.POOL_AVAILABLE]) for p in range(len(book.pool_names)))
    totals = {"margin": 0.0, "upnl": 0.0, "im": 0.0, "mm": 0.0}
    status = k.STATUS_OK
    worst_ratio: float | None = 0.0
    worst_exchange: float | None = None
    rows: list[dict[str, object]] = []
    for j, p in enumerate(snap.positions):
        row = base.legs[j]
        margin = ev.entry_margin[j]
        px = ev.px[p.instrument.settle]
        value, mm = float(row[_LEG["value"]]), float(row[_LEG["mm"]])
        totals["margin"] += margin * px
        totals["upnl"] += value * px
        totals["im"] += float(row[_LEG["im"]]) * px
        totals["mm"] += mm * px
        taker = float(p.instrument.fee_rate(is_maker=False))
        mb = margin + value
        # a position is judged on its own allocation (the kernel's isolated breach: the
        # allocation plus the position's value does not exceed its maintenance margin)
        status = max(status, int(k.status_of(mb, mm, k.ratio_of(mb, mm), profile.call_level,
                                              True)))
        ratio = _ratio(mb, mm)
        if worst_ratio is not None:
            worst_ratio = None if ratio is None else max(worst_ratio, ratio)
        cost = mm + float(row[_LEG["notional"]]) * taker
        exchange_ratio = mb / cost if cost > 0.0 else None
        if exchange_ratio is not None and (worst_exchange is None
                                           or exchange_ratio < worst_exchange):
            worst_exchange = exchange_ratio
        lp, bp = _isolated_prices(ev, j, margin)
        rows.append(_position_out(p, row, lp, bp))
    out: dict[str, object] = {
        "valuation_currency": _valuation_currency(snap, book),
        "margin_balance": free + totals["margin"] + totals["upnl"],
        "wallet_balance": free + totals["margin"],
        "unrealized_pnl": totals["upnl"],
        "initial_margin": totals["im"],
        "maintenance_margin": totals["mm"],
        "margin_ratio": worst_ratio,
        "available": free,
        "status": _STATUS[status],
    }
    if profile.has_exchange_margin_ratio:
        out["exchange_margin_ratio"] = worst_exchange
    out["positions"] = rows
    return out


def _isolated_prices(ev: _SnapshotBook, j: int,
                     margin: float) -> tuple[float | None, float | None]:
    """(liquidation, bankruptcy) price of isolated position ``j`` with ``margin`` (settle
    currency), by the profile's formula: ``binance`` — margin + PnL meets the maintenance
    margin [B1]; ``okx`` — meets the maintenance margin plus the taker fee to close (§6 [F1]);
    ``bybit`` — meets the maintenance margin at the entry value ([BY5] §5.2, [BY4] §5.3)."""
    snap = ev.snap
    p = snap.positions[j]
    sym, mark = p.symbol, p.mark
    long = p.qty > 0
    formula = snap.profile.isolated_formula
    if formula not in ("binance", "okx", "bybit"):
        msg = f"isolated formula {formula!r}: expected 'binance', 'bybit' or 'okx'"
        raise ConfigError(msg)
    taker = float(p.instrument.fee_rate(is_maker=False)) if formula == "okx" else 0.0

    def leg(factor: float) -> np.ndarray:
        return ev.run(symbol=sym, factor=factor).legs[j]

    mm_entry = float(leg(p.entry_price / mark)[_LEG["mm"]]) if formula == "bybit" else 0.0

    def surplus(factor: float) -> float:
        r = leg(factor)
        value = float(r[_LEG["value"]])
        if formula == "bybit":
            return margin + value - mm_entry
        return margin + value - float(r[_LEG["mm"]]) - taker * float(r[_LEG["notional"]])

    def left(factor: float) -> float:
        return margin + float(leg(factor)[_LEG["value"]])

    fl, fb = price_root(surplus, long=long), price_root(left, long=long)
    return (None if fl is None else mark * fl), (None if fb is None else mark * fb)


