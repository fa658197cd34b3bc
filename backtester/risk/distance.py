"""Distance to liquidation: the uniform move of every underlying that would trigger liquidation.

For each bar, every non-stable price (marks, indexes, coin collateral) is moved by the same
fraction ``x`` from its close; the account is liquidated at the first ``x`` (searched downwards
and upwards from 0) where its margin balance no longer exceeds its maintenance margin. The result
is signed: ``-0.23`` means a 23 % fall of every underlying liquidates the account, ``+0.4`` a 40 %
rise. Cross margin is judged on the account; isolated margin on each position's allocation, the
nearest position deciding. Options are held at their current value (not repriced) here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from backtester.margin.profile_data import SimpleTiers

__all__ = ["BookRows", "distance_to_liquidation"]

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class BookRows:
    """Positions of many bars as flat arrays (one row per position per bar).

    ``bar`` indexes the bar (0..n_bars-1); ``qty`` signed contracts; ``cs`` contract size;
    ``entry``, ``mark`` prices; ``is_linear``; ``is_option``; ``symbol_id`` indexes ``tiers``;
    ``isolated_margin`` (settle currency, NaN in cross). Per bar: ``collateral_fixed`` (margin
    value of stablecoins, USD) and ``collateral_moving`` (haircut value of coins, USD at close).
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


def _mm(notional: F64, symbol_id: NDArray[np.int64], tiers: Mapping[int, SimpleTiers],
        default_mmr: float) -> F64:
    out = notional * default_mmr
    for sid, t in tiers.items():
        sel = symbol_id == sid
        if not sel.any():
            continue
        fl = np.asarray(t.floors)
        k = np.clip(np.searchsorted(fl, notional[sel], side="right") - 1, 0, len(fl) - 1)
        out[sel] = notional[sel] * np.asarray(t.mmr)[k] - np.asarray(t.cum)[k]
    return out


def _row_excess(rows: BookRows, x_row: F64, tiers: Mapping[int, SimpleTiers],
                default_mmr: float) -> F64:
    m = rows.mark * (1.0 + x_row)
    q = rows.qty * rows.cs
    lin = rows.is_linear | rows.is_option
    value = np.where(rows.is_option, q * rows.mark,
                     np.where(lin, q * (m - rows.entry), q * (1.0 / rows.entry - 1.0 / m)))
    notional = np.where(lin, np.abs(q) * m, np.abs(q) / m)
    mm = np.where(rows.is_option, 0.0, _mm(notional, rows.symbol_id, tiers, default_mmr))
    settle_px = np.where(lin, 1.0, m)  # inverse contracts settle in the coin that moves
    return (value - mm) * settle_px


def distance_to_liquidation(rows: BookRows, *, tiers: Mapping[int, SimpleTiers],
                            default_mmr: float, isolated: bool = False,
                            down_limit: float = 0.99, up_limit: float = 10.0,
                            grid: int = 64, iterations: int = 40) -> F64:
    """Return the signed move per bar that triggers liquidation (inf where none in range).

    The search scans ``grid`` points each way (a hedged book need not be monotonic), then
    bisects the first bracket ``iterations`` times. Bars without positions get ``inf``.
    """
    n = rows.n_bars
    out = np.full(n, np.inf)
    if len(rows.bar) == 0:
        return out
    has = np.bincount(rows.bar, minlength=n) > 0

    def excess(x_bar: F64) -> F64:
        x_row = x_bar[rows.bar]
        ex = _row_excess(rows, x_row, tiers, default_mmr)
        if isolated:
            per_row = np.where(np.isnan(rows.isolated_margin), np.inf,
                               rows.isolated_margin * np.where(rows.is_linear, 1.0,
                                                               rows.mark * (1 + x_row)) + ex)
            worst = np.full(n, np.inf)
            np.minimum.at(worst, rows.bar, per_row)
            return worst
        total = np.bincount(rows.bar, weights=ex, minlength=n)
        return total + rows.collateral_fixed + rows.collateral_moving * (1.0 + x_bar)

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
