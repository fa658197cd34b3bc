"""Distance to liquidation: the uniform move of every underlying that would trigger liquidation.

For each bar, every non-stable price (marks, indexes, coin collateral) is moved by the same
fraction ``x`` from its close; the account is liquidated at the first ``x`` (searched downwards
and upwards from 0) where its margin balance no longer exceeds its maintenance margin. The result
is signed: ``-0.23`` means a 23 % fall of every underlying liquidates the account, ``+0.4`` a 40 %
rise. Cross margin is judged on the account; isolated margin on each position's allocation, the
nearest position deciding. Options are held at their current value (not repriced) in their
settle currency — a coin-settled option's value moves with the coin — and their maintenance
margin is not counted (short options' requirement is not modelled here). Futures' maintenance
follows the profile: tier tables, or size-dependent rates (Deribit). An
account of several collateral pools (``margin.pools``) is judged pool by pool, each pool's rows
and collateral handed in on their own, the nearest pool deciding (``runner._distances``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from backtester.margin.profile_data import SimpleTiers
from backtester.margin.profiles import MarginRates

__all__ = ["BookRows", "distance_to_liquidation"]

F64 = NDArray[np.float64]
#: a symbol's maintenance margin: a tier table, or size-dependent rates (Deribit)
Margin = SimpleTiers | MarginRates


@dataclass(frozen=True, slots=True, kw_only=True)
class BookRows:
    """Positions of many bars as flat arrays (one row per position per bar).

    ``bar`` indexes the bar (0..n_bars-1); ``qty`` signed contracts; ``cs`` contract size;
    ``entry``, ``mark`` prices; ``is_linear``; ``is_option``; ``symbol_id`` indexes ``tiers``;
    ``isolated_margin`` (settle currency, NaN in cross). Per bar: ``collateral_fixed`` (margin
    value of stablecoins, USD) and ``collateral_moving`` (haircut value of coins, USD at close).
    ``settle_usd`` (per row, optional): the USD price of an option's settle currency at the
    close — an inverse (coin-settled) option's value ``qty × cs × mark`` is in coin and moves
    with the coin; None: every option settles in a stablecoin (1.0).
    """

    n_bars: int
    bar: NDArray[np.int64]
    qty: F64
    cs: F64
    entry: F64
    mark: F64
    is_linear: NDArray[np.bool_]
    is_option: NDArray[np.bool_]
    symbol_id: NDArray[np.int64]
    isolated_margin: F64
    collateral_fixed: F64
    collateral_moving: F64
    settle_usd: F64 | None = None


def _mm(notional: F64, symbol_id: NDArray[np.int64], tiers: Mapping[int, Margin],
        default_mmr: float, size_coin: F64) -> F64:
    out = notional * default_mmr
    for sid, t in tiers.items():
        sel = symbol_id == sid
        if not sel.any():
            continue
        if isinstance(t, MarginRates):
            # size-dependent rate (Deribit): notional x (base + per coin x size in coins)
            out[sel] = notional[sel] * (t.mm_base + t.mm_per_coin * size_coin[sel])
            continue
        fl = np.asarray(t.floors)
        k = np.clip(np.searchsorted(fl, notional[sel], side="right") - 1, 0, len(fl) - 1)
        out[sel] = notional[sel] * np.asarray(t.mmr)[k] - np.asarray(t.cum)[k]
    return out


def _row_excess(rows: BookRows, x_row: F64, tiers: Mapping[int, Margin],
                default_mmr: float) -> F64:
    m = rows.mark * (1.0 + x_row)
    q = rows.qty * rows.cs
    lin = rows.is_linear | rows.is_option
    opt_value = q * rows.mark  # options: held at their current value, in the settle currency
    if rows.settle_usd is not None:
        # coin-settled options: USD at the coin's price, which moves with every underlying
        opt_value = opt_value * rows.settle_usd * np.where(rows.is_linear, 1.0, 1.0 + x_row)
    # the inverse branches are computed for every row and discarded for linear ones and options,
    # whose mark (a worthless option) and entry (bought at 0) may be 0
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse_pnl = q * (1.0 / rows.entry - 1.0 / m)
        inverse_notional = np.abs(q) / m
    value = np.where(rows.is_option, opt_value,
                     np.where(lin, q * (m - rows.entry), inverse_pnl))
    notional = np.where(lin, np.abs(q) * m, inverse_notional)
    size_coin = np.where(lin, np.abs(q), notional)  # linear: q is in coins; inverse: USD
    mm = np.where(rows.is_option, 0.0,
                  _mm(notional, rows.symbol_id, tiers, default_mmr, size_coin))
    settle_px = np.where(lin, 1.0, m)  # inverse contracts settle in the coin that moves
    return (value - mm) * settle_px


def _cross_excess(rows: BookRows, x_bar: F64, tiers: Mapping[int, Margin],
                  default_mmr: float) -> F64:
    # the account's excess per bar (cross margin) with every underlying moved by x_bar
    ex = _row_excess(rows, x_bar[rows.bar], tiers, default_mmr)
    total = np.bincount(rows.bar, weights=ex, minlength=rows.n_bars)
    return total + rows.collateral_fixed + rows.collateral_moving * (1.0 + x_bar)


def distance_to_liquidation(rows: BookRows, *, tiers: Mapping[int, Margin],
                            default_mmr: float, isolated: bool = False,
                            down_limit: float = 0.99, up_limit: float = 10.0,
                            grid: int = 64, iterations: int = 40) -> F64:
    """Return the signed move per bar that triggers liquidation (inf where none in range).

    The search scans ``grid`` points each way (a hedged book need not be monotonic), then
    bisects the first bracket ``iterations`` times. Bars without positions get ``inf``.

    A cross book without options skips the grid points where a linear lower bound of the
    excess (with a margin far above float rounding) proves the account safe, and evaluates only
    the bars still searching; the numbers are exactly those of the full scan.
    """
    if isolated or bool(rows.is_option.any()) or any(
            isinstance(t, MarginRates) for t in tiers.values()):
        return _full_scan(rows, tiers=tiers, default_mmr=default_mmr, isolated=isolated,
                          down_limit=down_limit, up_limit=up_limit, grid=grid,
                          iterations=iterations)
    return _pruned_scan(rows, tiers=tiers, default_mmr=default_mmr, down_limit=down_limit,
                        up_limit=up_limit, grid=grid, iterations=iterations)


def _full_scan(rows: BookRows, *, tiers: Mapping[int, Margin], default_mmr: float,
               isolated: bool, down_limit: float, up_limit: float, grid: int,
               iterations: int) -> F64:
    # every bar at every grid point, then bisection of every bar's first bracket
    n = rows.n_bars
    out = np.full(n, np.inf)
    if len(rows.bar) == 0:
        return out
    has = np.bincount(rows.bar, minlength=n) > 0

    def excess(x_bar: F64) -> F64:
        if not isolated:
            return _cross_excess(rows, x_bar, tiers, default_mmr)
        x_row = x_bar[rows.bar]
        ex = _row_excess(rows, x_row, tiers, default_mmr)
        per_row = np.where(np.isnan(rows.isolated_margin), np.inf,
                           rows.isolated_margin * np.where(rows.is_linear, 1.0,
                                                           rows.mark * (1 + x_row)) + ex)
        worst = np.full(n, np.inf)
        np.minimum.at(worst, rows.bar, per_row)
        return worst

    base = excess(np.zeros(n))
    out[has & (base <= 0)] = 0.0
    best = np.full(n, np.inf)
    for sign, limit in ((-1.0, down_limit), (1.0, up_limit)):
        steps = np.linspace(0.0, limit, grid + 1)[1:]
        lo = np.zeros(n)
        hi = np.full(n, np.nan)
        prev = np.zeros(n)
        for s in steps:
            ex = excess(np.full(n, sign * s))
            hit = np.isnan(hi) & (ex <= 0) & has & (base > 0)
            hi[hit] = s
            lo[hit] = prev[hit]
            prev = np.where(np.isnan(hi), s, prev)
        found = ~np.isnan(hi)
        if found.any():
            a, b = lo.copy(), np.where(found, hi, 0.0)
            for _ in range(iterations):
                mid = 0.5 * (a + b)
                ex = excess(sign * mid)
                bad = ex <= 0
                b = np.where(found & bad, mid, b)
                a = np.where(found & ~bad, mid, a)
            cand = np.where(found, b, np.inf)
            better = cand < np.abs(best)
            best = np.where(better, sign * cand, best)
    sel = has & (base > 0)
    out[sel] = best[sel]
    return out


def _take_bars(rows: BookRows, bars: NDArray[np.int64]) -> BookRows:
    # the rows of the (sorted) ``bars``, renumbered 0..len(bars)-1, in their original order
    keep = np.zeros(rows.n_bars, dtype=bool)
    keep[bars] = True
    sel = keep[rows.bar]
    renumber = np.cumsum(keep) - 1
    return BookRows(n_bars=len(bars), bar=renumber[rows.bar[sel]], qty=rows.qty[sel],
                    cs=rows.cs[sel], entry=rows.entry[sel], mark=rows.mark[sel],
                    is_linear=rows.is_linear[sel], is_option=rows.is_option[sel],
                    symbol_id=rows.symbol_id[sel], isolated_margin=rows.isolated_margin[sel],
                    collateral_fixed=rows.collateral_fixed[bars],
                    collateral_moving=rows.collateral_moving[bars],
                    settle_usd=None if rows.settle_usd is None else rows.settle_usd[sel])


def _safe_floor(rows: BookRows, tiers: Mapping[int, Margin], default_mmr: float,
                up_limit: float) -> tuple[F64, F64, F64]:
    # A lower bound a + b*x (per bar, real arithmetic) of the cross excess for x in
    # [-1, up_limit], and a margin exceeding the float rounding of the excess there.
    # Tiered maintenance margin is rate_k * notional - cum_k for some tier k, so it is at most
    # notional * max(rate) - min(cum) whichever tier is picked. Linear leg: excess
    # q*m - q*entry - mm(|q|*m) >= q*m - q*entry - |q|*m*rate_max + cum_min. Inverse leg
    # (valued in USD at m): q*m/entry - q - m*mm(|q|/m) >= q*m/entry - q - |q|*rate_max
    # + m*cum_min. Both are linear in m = mark*(1+x). Collateral: fixed + moving*(1+x).
    n = rows.n_bars
    n_sym = int(rows.symbol_id.max()) + 1 if len(rows.symbol_id) else 0
    rate_max = np.full(max(n_sym, 1), float(default_mmr))
    cum_min = np.zeros(max(n_sym, 1))
    cum_abs = np.zeros(max(n_sym, 1))
    for sid, t in tiers.items():
        if isinstance(t, MarginRates):
            continue  # books with size-dependent rates take the full scan
        if 0 <= sid < n_sym and len(t.mmr):
            rate_max[sid] = max(t.mmr)
            cum_min[sid] = min(t.cum)
            cum_abs[sid] = max(abs(c) for c in t.cum)
    if (rate_max == rate_max[0]).all() and (cum_min == cum_min[0]).all() \
            and (cum_abs == cum_abs[0]).all():  # one symbol, or symbols alike: constants
        r, cmin, cabs = rate_max[0], cum_min[0], cum_abs[0]
    else:
        k = rows.symbol_id
        r, cmin, cabs = rate_max[k], cum_min[k], cum_abs[k]
    q = rows.qty * rows.cs
    aq = np.abs(q)
    mark = rows.mark
    entry = rows.entry
    lin = rows.is_linear
    m_hi = mark * (1.0 + up_limit)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if lin.all():
            qm = q * mark
            aqmr = aq * mark * r
            a_row = qm - q * entry - aqmr + cmin
            b_row = qm - aqmr
            mag = aq * (m_hi * (1.0 + r) + np.abs(entry)) + cabs
            ok = (mark > 0) & np.isfinite(mag)
        else:
            inv_e = 1.0 / entry
            a_row = np.where(lin, q * mark - q * entry - aq * mark * r + cmin,
                             q * mark * inv_e - q - aq * r + mark * cmin)
            b_row = np.where(lin, q * mark - aq * mark * r, q * mark * inv_e + mark * cmin)
            mag = np.where(lin, aq * (m_hi * (1.0 + r) + np.abs(entry)) + cabs,
                           aq * (m_hi * np.abs(inv_e) + 1.0 + r) + cabs * m_hi)
            ok = (mark > 0) & np.isfinite(mag) & (lin | (entry > 0))
        # the bound assumes positive prices; anything else is left to the full search
        if not ok.all():
            a_row = np.where(ok, a_row, np.nan)
    count = np.bincount(rows.bar, minlength=n)
    moving = rows.collateral_moving
    a = np.bincount(rows.bar, weights=a_row, minlength=n) + rows.collateral_fixed + moving
    b = np.bincount(rows.bar, weights=b_row, minlength=n) + moving
    size = (np.bincount(rows.bar, weights=mag, minlength=n) + np.abs(rows.collateral_fixed)
            + np.abs(moving) * (1.0 + up_limit))
    # each leg's excess takes about ten roundings, the sum one per leg: 2 * (64 + 2 * legs)
    # units of 2**-52 of the magnitudes bounds the error of the excess and of this bound
    margin = 2.0 * (64.0 + 2.0 * count) * np.finfo(np.float64).eps * size
    return a, b, margin


def _pruned_scan(rows: BookRows, *, tiers: Mapping[int, Margin], default_mmr: float,
                 down_limit: float, up_limit: float, grid: int, iterations: int) -> F64:
    n = rows.n_bars
    out = np.full(n, np.inf)
    if len(rows.bar) == 0:
        return out
    has = np.bincount(rows.bar, minlength=n) > 0
    a, b, margin = _safe_floor(rows, tiers, default_mmr, up_limit)
    with np.errstate(invalid="ignore"):
        sure = np.isfinite(a) & np.isfinite(b) & np.isfinite(margin) & (a > margin)
    # the base excess where the bound does not prove it positive
    base_pos = sure.copy()
    check = np.flatnonzero(has & ~sure)
    if len(check):
        sub = _take_bars(rows, check)
        base = _cross_excess(sub, np.zeros(len(check)), tiers, default_mmr)
        out[check[base <= 0]] = 0.0
        base_pos[check[base > 0]] = True
    active = has & base_pos
    best = np.full(n, np.inf)
    for sign, limit in ((-1.0, down_limit), (1.0, up_limit)):
        steps = np.linspace(0.0, limit, grid + 1)[1:]
        start = _first_unproven(a, b, margin, sure, sign, limit, steps)
        todo = np.flatnonzero(active & (start < grid))
        if not len(todo):
            continue
        lo, hi, found = _first_bracket(_take_bars(rows, todo), start[todo], steps, sign,
                                       tiers, default_mmr)
        if not found.any():
            continue
        idx = todo[found]
        sub = _take_bars(rows, idx)
        lo_f, hi_f = lo[found], hi[found]
        for _ in range(iterations):
            mid = 0.5 * (lo_f + hi_f)
            bad = _cross_excess(sub, sign * mid, tiers, default_mmr) <= 0
            hi_f = np.where(bad, mid, hi_f)
            lo_f = np.where(~bad, mid, lo_f)
        better = hi_f < np.abs(best[idx])
        best[idx] = np.where(better, sign * hi_f, best[idx])
    out[active] = best[active]
    return out


def _first_unproven(a: F64, b: F64, margin: F64, sure: NDArray[np.bool_], sign: float,
                    limit: float, steps: F64) -> NDArray[np.int64]:
    # per bar, the first grid step (0..grid) the bound does not prove safe: all of them when
    # the bound clears the margin at both ends of the direction (it is linear); else up to
    # one step before the bound's crossing of the margin
    grid = len(steps)
    slope = sign * b  # d(bound)/d(distance) in this direction
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        whole = sure & (a + slope * limit > margin)
        if whole.all():
            return np.full(len(a), grid, dtype=np.int64)
        cross = (a - margin) / -slope
        k = np.searchsorted(steps, np.where(slope < 0, cross, 0.0), side="left") - 1
    return np.where(whole, grid, np.where(sure, np.maximum(k, 0), 0)).astype(np.int64)


def _first_bracket(rows: BookRows, start: NDArray[np.int64], steps: F64, sign: float,
                   tiers: Mapping[int, Margin], default_mmr: float,
                   ) -> tuple[F64, F64, NDArray[np.bool_]]:
    # the grid scan from each bar's first unproven step: the first step whose excess is not
    # positive (hi) and the step before it (lo; 0 before the first step)
    n = rows.n_bars
    grid = len(steps)
    lo = np.zeros(n)
    hi = np.zeros(n)
    found = np.zeros(n, dtype=bool)
    j = start.copy()
    live = np.arange(n)  # bars still scanning (indexes into 0..n-1)
    cur = rows
    while len(live):
        x = sign * steps[j[live]]
        hit = _cross_excess(cur, x, tiers, default_mmr) <= 0
        done = live[hit]
        found[done] = True
        hi[done] = steps[j[done]]
        lo[done] = np.where(j[done] > 0, steps[np.maximum(j[done] - 1, 0)], 0.0)
        j[live] += 1
        keep = ~hit & (j[live] < grid)
        if keep.all():
            continue
        live = live[keep]
        cur = _take_bars(cur, np.flatnonzero(keep))
    return lo, hi, found
