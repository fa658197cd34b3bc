"""The per-bar margin evaluation of a cross book without options, in one fused pass.

:meth:`MarginEngine._worst` (intrabar) scans every underlying group at the mark low, high and
close (``_group_excess``), then evaluates the account at the worst scenario and at the closes
(``_evaluate`` twice), each time going through ``Instrument`` properties, ``requirement`` and
``price_usd``. For futures and perpetuals the three scenarios of a leg are independent of each
other, so this module computes each leg's PnL, notional and maintenance margin once per
scenario and assembles the group excesses and both evaluations from them.

The arithmetic is the general code's, operation for operation and summed in the same order,
so the results are bit-identical (``tests/integration/test_margin_fast_path.py`` runs random
books both ways). Books holding options, feeds carrying implied vols and the portfolio and
isolated modes go through the general code (:func:`fused_state` returns None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from backtester.margin import state as _state

if TYPE_CHECKING:
    from backtester.accounting import Position
    from backtester.data.feed import SymbolFeed
    from backtester.margin.state import MarginEngine, MarginState

__all__ = ["LegConstants", "fused_state"]

_STABLES = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "DAI"})


LegConstants = tuple["SymbolFeed", float, bool, str, str, Callable[[float], float] | None]


def _leg(me: MarginEngine, sym: str, pos: Position) -> LegConstants | None:
    # per-symbol constants: feed, contract size, linear?, base, settle, maintenance function
    inst = pos.instrument
    f = me.e.feed.symbols[sym]
    if inst.is_option or f.option_iv is not None:
        return None
    tiers = me.profile.tiers.get(inst.symbol)
    return (f, inst.cs, bool(inst.is_linear), inst.base, inst.settle,
            tiers.maintenance if tiers is not None else None)


def fused_state(me: MarginEngine, *, intrabar: bool) -> MarginState | None:
    """The state :meth:`MarginEngine._worst` (``intrabar``) or ``evaluate_now`` returns.

    None when the book is not eligible (options, implied vols on a feed).
    """
    e = me.e
    acct = e.account
    cache = me._legs
    default_mmr = me.profile.default_mmr
    legs = []
    for sym, pos in acct.positions.items():
        q = pos.qty_f
        if q == 0.0:
            continue
        if sym in cache:
            c = cache[sym]
        else:
            c = cache[sym] = _leg(me, sym, pos)
        if c is None:
            return None
        f, cs, lin, base, settle, mfun = c
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
        legs.append((sym, pos, base, settle, q, entry, vals))

    feed = e.feed
    index_feeds = feed.index_feeds
    prices: dict[str, tuple[float, float, float]] = {}

    def px3(asset: str) -> tuple[float, float, float]:
        # price_usd(asset, 0/1/2)
        p = prices.get(asset)
        if p is None:
            if asset in _STABLES:
                p = (1.0, 1.0, 1.0)
            else:
                g = index_feeds.get(asset)
                if g is None:
                    p = (0.0, 0.0, 0.0)
                elif g.idx < 0:
                    v = g.io[0]
                    p = (v, v, v)
                else:
                    j = g.idx
                    p = (g.il[j], g.ih[j], g.ic[j])
            prices[asset] = p
        return p

    balances = acct.balances
    haircut = me.profile.haircut
    order_im = me._order_im()
    inf = _state._INF
    new_state = _state.MarginState

    scenario: dict[str, int] = {}
    if intrabar:
        groups = {leg[2] for leg in legs}
        groups |= {a for a, b in balances.items() if b != 0 and a not in _STABLES}
        if not groups:
            return fused_state(me, intrabar=False)
        for g in sorted(groups):
            pg = px3(g)
            best_w, best_excess = 2, inf
            bal = balances.get(g)
            for w in (0, 1, 2):
                px_g = pg[w]
                excess = 0.0
                if bal is not None:
                    b = float(bal)
                    excess += b * px_g * (haircut(g) if b > 0 else 1.0)
                for _, _, base, settle, _, _, vals in legs:
                    if base != g:
                        continue
                    px_settle = px_g if settle == g else px3(settle)[2]
                    _, value, _, p_mm, _ = vals[w]
                    excess += (value - p_mm) * px_settle
                if excess < best_excess:
                    best_w, best_excess = w, excess
            scenario[g] = best_w

    def evaluate(scen: dict[str, int] | None) -> MarginState:
        # MarginEngine._evaluate for a cross book of futures/perps
        st = new_state()
        bal_usd = mb_coll = fixed = moving = 0.0
        for asset, bal in balances.items():
            w = scen.get(asset, 2) if scen else 2
            px = px3(asset)[w]
            b = float(bal)
            bal_usd += b * px
            v = b * px * (haircut(asset) if b > 0 else 1.0)
            mb_coll += v
            if asset in _STABLES:
                fixed += v
            else:
                moving += v
        upnl = im = mm = gross = net = 0.0
        rows = st.positions
        for sym, pos, base, settle, q, entry, vals in legs:
            w = scen.get(base, 2) if scen else 2
            mark, value, notional, p_mm, usd = vals[w if intrabar else 0]
            px_settle = px3(settle)[scen.get(settle, 2) if scen else 2]
            p_im = notional / pos.leverage
            upnl += value * px_settle
            im += p_im * px_settle
            mm += p_mm * px_settle
            gross += usd
            net += usd if q > 0 else -usd
            if scen is None:
                rows.append((sym, q, entry, mark, value, notional,
                             float(pos.isolated_margin) if pos.isolated_margin is not None
                             else float("nan")))
        st.collateral_fixed = fixed
        st.collateral_moving = moving
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
        st.status = ("liquidate" if mm > 0 and mb <= mm else
                     "call" if ratio >= me.call_level else "ok")
        return st

    close = evaluate(None)
    if not intrabar:
        return close
    st = evaluate(scenario)
    close.margin_balance, close.maintenance_margin = st.margin_balance, st.maintenance_margin
    close.margin_ratio, close.status = st.margin_ratio, st.status
    close.available = min(close.available, st.available)
    return close
