"""The per-bar margin evaluation of a cross book without options, in one fused pass.

:meth:`MarginEngine._worst` (intrabar) scans every underlying group at the mark low, high and
close (``_group_excess``), then evaluates the account at the worst scenario and at the closes
(``_evaluate`` twice), each time going through ``Instrument`` properties, ``requirement`` and
``price_usd``. For futures and perpetuals the three scenarios of a leg are independent of each
other, so this module computes each leg's PnL, notional and maintenance margin once per
scenario and assembles the group excesses and both evaluations from them.

The arithmetic is the general code's, operation for operation and summed in the same order,
so the results are bit-identical (``tests/integration/test_margin_fast_path.py`` runs random
books both ways). Books holding options, feeds carrying implied vols, books spread over several
collateral pools (per-asset profiles, ``backtester.margin.pools``) and the portfolio and
isolated modes go through the general code (:func:`fused_state` returns None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from backtester.margin import state as _state
from backtester.margin.pools import liquidation_status

if TYPE_CHECKING:
    from backtester.accounting import Position
    from backtester.data.feed import SymbolFeed
    from backtester.margin.state import MarginEngine, MarginState

__all__ = ["LegConstants", "fused_state"]

_STABLES = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "DAI"})  # Feed.is_stable


LegConstants = tuple["SymbolFeed", float, bool, str, str, Callable[[float], float] | None, bool,
                     bool]
_ONES = (1.0, 1.0, 1.0)


def _leg(me: MarginEngine, sym: str, pos: Position) -> LegConstants | None:
    # per-symbol constants: feed, contract size, linear?, base, settle, maintenance function,
    # settle is a stablecoin, "plain" (stablecoin-settled on a coin that is not a stablecoin)
    inst = pos.instrument
    f = me.e.feed.symbols[sym]
    if inst.is_option or f.option_iv is not None:
        return None
    tiers = me.profile.tiers.get(inst.symbol)
    return (f, inst.cs, bool(inst.is_linear), inst.base, inst.settle,
            tiers.maintenance if tiers is not None else None, inst.settle in _STABLES,
            inst.settle in _STABLES and inst.base not in _STABLES)


def _px3(asset: str, index_feeds: dict[str, SymbolFeed]) -> tuple[float, float, float]:
    # MarginEngine.price_usd(asset, 0 / 1 / 2)
    if asset in _STABLES:
        return _ONES
    g = index_feeds.get(asset)
    if g is None:
        return (0.0, 0.0, 0.0)
    j = g.idx
    if j < 0:
        v = g.io[0]
        return (v, v, v)
    return (g.il[j], g.ih[j], g.ic[j])


def fused_state(me: MarginEngine, *, intrabar: bool) -> MarginState | None:
    """The state :meth:`MarginEngine._worst` (``intrabar``) or ``evaluate_now`` returns.

    None when the book is not eligible (options, implied vols on a feed, several pools).
    """
    e = me.e
    acct = e.account
    cache = me._legs
    default_mmr = me.profile.default_mmr
    index_feeds = e.feed.index_feeds
    legs = []
    plain = True
    pooled = me._pooled
    pool = None  # per-asset pools: the one pool the book draws on
    for sym, pos in acct.positions.items():
        q = pos.qty_f
        if q == 0.0:
            continue
        c = cache.get(sym)
        if c is None:
            if sym in cache:
                return None  # not eligible
            c = cache[sym] = _leg(me, sym, pos)
            if c is None:
                return None
        f, cs, lin, base, settle, mfun, stable, is_plain = c
        plain = plain and is_plain
        if pooled and settle != pool:
            if pool is not None:
                return None  # several pools: the general code
            pool = settle
        i = f.idx
        entry = pos.entry_f
        aq = abs(q) * cs
        vals = []
        for mark in ((f.ml[i], f.mh[i], f.mc[i]) if intrabar else (f.mc[i],)):
            if lin:
                notional = aq * mark
                value = q * cs * (mark - entry)
                usd = aq * mark
            else:
                notional = aq / mark
                value = q * cs * (1.0 / entry - 1.0 / mark)
                usd = aq
            mm = mfun(notional) if mfun is not None else notional * default_mmr
            vals.append((mark, value, notional, mm, usd))
        legs.append((sym, pos, base, settle, q, entry, vals,
                     _ONES if stable else _px3(settle, index_feeds)))

    balances = acct.balances
    if pooled and (pool not in balances or len(balances) > 1):
        for a, amount in balances.items():
            if amount and a != pool:
                if pool is not None:
                    return None
                pool = a
    face = me.face_value_assets()

    def haircut(asset: str) -> float:
        return 1.0 if asset in face else me.profile.haircut(asset)

    order_im = me._order_im() if e.orders else 0.0
    inf = _state._INF
    if plain:
        for a in balances:
            if a not in _STABLES:
                break
        else:
            return _plain_state(me, legs, intrabar=intrabar, order_im=order_im)

    scenario: dict[str, int] = {}
    if intrabar:
        by_group: dict[str, list[tuple[str, tuple[float, float, float], list[tuple[
            float, float, float, float, float]]]]] = {}
        for leg in legs:
            g = leg[2]
            lst = by_group.get(g)
            if lst is None:
                lst = by_group[g] = []
            lst.append((leg[3], leg[7], leg[6]))
        groups = set(by_group)
        for a, amount in balances.items():
            if amount != 0 and a not in _STABLES:
                groups.add(a)
        if not groups:
            return fused_state(me, intrabar=False)
        for g in sorted(groups):
            pg = _px3(g, index_feeds)
            best_w, best_excess = 2, inf
            bal = balances.get(g)
            members = by_group.get(g, ())
            for w in (0, 1, 2):
                # MarginEngine._group_excess(g, w): the group's legs in the account's order
                px_g = pg[w]
                excess = 0.0
                if bal is not None:
                    b = float(bal)
                    excess += b * px_g * (haircut(g) if b > 0 else 1.0)
                for settle, sp, vals in members:
                    px_settle = px_g if settle == g else sp[2]
                    _, value, _, p_mm, _ = vals[w]
                    excess += (value - p_mm) * px_settle
                if excess < best_excess:
                    best_w, best_excess = w, excess
            scenario[g] = best_w

    # MarginEngine._evaluate at the closes and (intrabar) at the worst scenario, in one pass:
    # the same terms summed in the same order as the general code
    st = _state.MarginState()
    bal_usd = mb_coll = fixed = moving = mb_coll_s = 0.0
    for asset, bal in balances.items():
        p = _px3(asset, index_feeds)
        b = float(bal)
        h = haircut(asset) if b > 0 else 1.0
        px = p[2]
        bal_usd += b * px
        v = b * px * h
        mb_coll += v
        if asset in _STABLES:
            fixed += v
        else:
            moving += v
        if intrabar:
            w = scenario.get(asset, 2)
            mb_coll_s += v if w == 2 else b * p[w] * h
    upnl = im = mm = gross = net = 0.0
    upnl_s = im_s = mm_s = 0.0
    rows = st.positions
    k_close = 2 if intrabar else 0
    for sym, pos, base, settle, q, entry, vals, sp in legs:
        lev = pos.leverage
        mark, value, notional, p_mm, usd = vals[k_close]
        px_settle = sp[2]
        upnl += value * px_settle
        im += notional / lev * px_settle
        mm += p_mm * px_settle
        gross += usd
        net += usd if q > 0 else -usd
        rows.append((sym, q, entry, mark, value, notional,
                     float(pos.isolated_margin) if pos.isolated_margin is not None
                     else float("nan")))
        if intrabar:
            _, value, notional, p_mm, _ = vals[scenario.get(base, 2)]
            px_settle = sp[scenario.get(settle, 2)]
            upnl_s += value * px_settle
            im_s += notional / lev * px_settle
            mm_s += p_mm * px_settle
    st.collateral_fixed = fixed
    st.collateral_moving = moving
    return _finish(st, bal_usd=bal_usd, mb_coll=mb_coll, upnl=upnl, im=im, mm=mm, gross=gross,
                   net=net, order_im=order_im, call_level=me.call_level,
                   worst=(mb_coll_s + upnl_s, mm_s, im_s) if intrabar else None,
                   has_liability=any(b < 0 for b in balances.values()))


def _finish(st: MarginState, *, bal_usd: float, mb_coll: float, upnl: float, im: float,
            mm: float, gross: float, net: float, order_im: float, call_level: float,
            worst: tuple[float, float, float] | None, has_liability: bool) -> MarginState:
    # the account totals of MarginEngine._evaluate at the closes; with ``worst`` (margin
    # balance, maintenance, initial margin at the worst scenario) the check's values (as _worst)
    inf = _state._INF
    st.wallet_balance = bal_usd
    st.unrealized_pnl = upnl
    st.equity = bal_usd + upnl
    mb = st.margin_balance = mb_coll + upnl
    st.initial_margin = im
    st.maintenance_margin = mm
    ratio = st.margin_ratio = mm / mb if mb > 0 else (inf if mm > 0 else 0.0)
    st.available = mb - im - order_im
    st.gross_exposure = gross
    st.net_exposure = net
    if worst is not None:
        mb, mm, im_s = worst
        st.margin_balance = mb
        st.maintenance_margin = mm
        ratio = st.margin_ratio = mm / mb if mb > 0 else (inf if mm > 0 else 0.0)
        st.available = min(st.available, mb - im_s - order_im)
    st.status = liquidation_status(mb, mm, ratio, call_level, has_liability=has_liability)
    return st


def _plain_state(me: MarginEngine, legs: list, *, intrabar: bool,  # type: ignore[type-arg]
                 order_im: float) -> MarginState:
    # fused_state for a book whose legs all settle in stablecoins, on coins that are not
    # stablecoins, with only stablecoin balances: every USD price involved is 1.0 exactly, so
    # "x * 1.0" is "x" and the coin groups hold no balance; the sums keep the general order
    inf = _state._INF
    haircut = me.profile.haircut
    st = _state.MarginState()
    bal_usd = mb_coll = 0.0
    for asset, bal in me.e.account.balances.items():
        b = float(bal)
        bal_usd += b
        v = b * (haircut(asset) if b > 0 else 1.0)
        mb_coll += v
    st.collateral_fixed = mb_coll
    scenario: dict[str, int] = {}
    if intrabar:
        # MarginEngine._group_excess per coin group and scenario, legs in the account's order
        sums: dict[str, list[float]] = {}
        for leg in legs:
            vals = leg[6]
            acc = sums.get(leg[2])
            if acc is None:
                acc = sums[leg[2]] = [0.0, 0.0, 0.0]
            for w in (0, 1, 2):
                x = vals[w]
                acc[w] += x[1] - x[3]
        for g, acc in sums.items():
            best_w, best_excess = 2, inf
            for w in (0, 1, 2):
                if acc[w] < best_excess:
                    best_w, best_excess = w, acc[w]
            scenario[g] = best_w
    upnl = im = mm = gross = net = 0.0
    upnl_s = im_s = mm_s = 0.0
    rows = st.positions
    k_close = 2 if intrabar else 0
    nan = float("nan")
    for sym, pos, base, _, q, entry, vals, _ in legs:
        lev = pos.leverage
        mark, value, notional, p_mm, usd = vals[k_close]
        upnl += value
        im += notional / lev
        mm += p_mm
        gross += usd
        net += usd if q > 0 else -usd
        iso = pos.isolated_margin
        rows.append((sym, q, entry, mark, value, notional,
                     float(iso) if iso is not None else nan))
        if intrabar:
            _, value, notional, p_mm, _ = vals[scenario[base]]
            upnl_s += value
            im_s += notional / lev
            mm_s += p_mm
    return _finish(st, bal_usd=bal_usd, mb_coll=mb_coll, upnl=upnl, im=im, mm=mm, gross=gross,
                   net=net, order_im=order_im, call_level=me.call_level,
                   worst=(mb_coll + upnl_s, mm_s, im_s) if intrabar else None,
                   has_liability=any(b < 0 for b in me.e.account.balances.values()))
