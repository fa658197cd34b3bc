"""Distance to liquidation: the pruned search of cross books gives the full scan's numbers.

``distance_to_liquidation`` skips, for a cross book without options, the grid points where a
linear lower bound of the account's excess proves it safe. Every number must equal the full
scan's (bit for bit): random books (linear and inverse legs, tiered and flat maintenance,
hedges, coin collateral, accounts already under water) and books whose excess is zero, up to a
rounding, exactly at a grid point (where a bound without its rounding margin gets it wrong).
"""

from __future__ import annotations

import numpy as np
import pytest

from backtester.margin.profile_data import SimpleTiers
from backtester.risk.distance import BookRows, _full_scan, distance_to_liquidation

MMR = 0.005


def _tiers(rng: np.random.Generator) -> SimpleTiers:
    # continuous tiers: cum_k = cum_(k-1) + floor_k * (rate_k - rate_(k-1))
    k = int(rng.integers(1, 6))
    floors = [0.0, *sorted(rng.uniform(1e3, 1e7, k - 1).tolist())]
    rates = sorted(rng.uniform(0.002, 0.2, k).tolist())
    cum = [0.0]
    for i in range(1, k):
        cum.append(cum[-1] + floors[i] * (rates[i] - rates[i - 1]))
    return SimpleTiers(floors=tuple(floors), mmr=tuple(rates), cum=tuple(cum),
                       max_leverage=(10.0,) * k)


def _random_book(rng: np.random.Generator, n: int = 120) -> tuple[BookRows, dict[int, SimpleTiers]]:
    n_sym = int(rng.integers(1, 5))
    linear = rng.random(n_sym) < 0.6
    cs = np.where(linear, rng.choice([1.0, 0.001], n_sym), rng.choice([100.0, 10.0], n_sym))
    px = rng.choice([0.5, 100.0, 2_500.0, 50_000.0], n_sym)
    tiers = {s: _tiers(rng) for s in range(n_sym) if rng.random() < 0.5}
    bar, sid, qty, entry, mark = [], [], [], [], []
    for b in range(n):
        for _ in range(int(rng.choice([0, 1, 1, 2, 4]))):
            s = int(rng.integers(n_sym))
            m = float(px[s] * np.exp(rng.normal(0.0, 0.2)))
            notional = 10 ** rng.uniform(1, 6)  # USD, up to 100x the collateral
            q = notional / (m * cs[s]) if linear[s] else notional / cs[s]
            bar.append(b)
            sid.append(s)
            mark.append(m)
            entry.append(m * (1.0 + rng.normal(0.0, 0.1)))
            qty.append(q * rng.choice([-1.0, 1.0]))
    ids = np.asarray(sid, dtype=np.int64)
    marks = np.asarray(mark)
    if len(marks):
        marks[rng.integers(len(marks))] = np.nan  # a missing mark: left to the full scan
    rows = BookRows(n_bars=n, bar=np.asarray(bar, dtype=np.int64), qty=np.asarray(qty),
                    cs=cs[ids], entry=np.asarray(entry), mark=marks, is_linear=linear[ids],
                    is_option=np.zeros(len(ids), dtype=bool), symbol_id=ids,
                    isolated_margin=np.full(len(ids), np.nan),
                    collateral_fixed=10 ** rng.uniform(2, 5, n) * (rng.random(n) < 0.9),
                    collateral_moving=np.where(rng.random(n) < 0.3, 10 ** rng.uniform(2, 5, n),
                                               0.0))
    return rows, tiers


def _zero_at_grid_points(rng: np.random.Generator, n: int = 200) -> BookRows:
    # one linear leg a bar, flat 0.5 % maintenance; the collateral makes the excess
    # q*(m - entry) - |q|*m*0.005 + fixed exactly zero (in real numbers) at a grid point
    # m = mark*(1+x) of the search (longs down, shorts up), give or take a few roundings
    down = np.linspace(0.0, 0.99, 65)[1:]
    up = np.linspace(0.0, 10.0, 65)[1:]
    mark = rng.uniform(10.0, 1_000.0, n)
    entry = mark * (1.0 + rng.normal(0.0, 0.05, n))
    q = rng.uniform(0.1, 100.0, n) * rng.choice([-1.0, 1.0], n)
    x = np.where(q > 0, -down[rng.integers(0, 64, n)], up[rng.integers(0, 64, n)])
    m = mark * (1.0 + x)
    wobble = 1.0 + rng.choice([0.0, 1e-16, -1e-16, 1e-15, -1e-15, 1e-13], n)
    fixed = -(q * (m - entry) - np.abs(q) * m * MMR) * wobble
    return BookRows(n_bars=n, bar=np.arange(n, dtype=np.int64), qty=q, cs=np.ones(n),
                    entry=entry, mark=mark, is_linear=np.ones(n, dtype=bool),
                    is_option=np.zeros(n, dtype=bool), symbol_id=np.zeros(n, dtype=np.int64),
                    isolated_margin=np.full(n, np.nan), collateral_fixed=fixed,
                    collateral_moving=np.zeros(n))


def _full(rows: BookRows, tiers: dict[int, SimpleTiers]) -> np.ndarray:
    return _full_scan(rows, tiers=tiers, default_mmr=MMR, isolated=False, down_limit=0.99,
                      up_limit=10.0, grid=64, iterations=40)


@pytest.mark.parametrize("seed", range(12))
def test_pruned_search_equals_full_scan_on_random_books(seed: int) -> None:
    rows, tiers = _random_book(np.random.default_rng(seed))
    full = _full(rows, tiers)
    pruned = distance_to_liquidation(rows, tiers=tiers, default_mmr=MMR)
    np.testing.assert_array_equal(pruned, full)
    # the books reach every outcome: liquidated now, liquidated by a move, safe in range
    assert (full == 0).any()
    assert (np.isfinite(full) & (full != 0)).any()
    assert np.isinf(full).any()


@pytest.mark.parametrize("seed", range(6))
def test_pruned_search_equals_full_scan_at_grid_points(seed: int) -> None:
    rows = _zero_at_grid_points(np.random.default_rng(100 + seed))
    np.testing.assert_array_equal(distance_to_liquidation(rows, tiers={}, default_mmr=MMR),
                                  _full(rows, {}))


def test_safe_book_needs_no_evaluation_and_is_infinite() -> None:
    # 1 contract long at 100 against 1,000,000 USDT: no move in [-99 %, +1000 %] liquidates
    n = 5
    rows = BookRows(n_bars=n, bar=np.arange(n, dtype=np.int64), qty=np.ones(n),
                    cs=np.ones(n), entry=np.full(n, 100.0), mark=np.full(n, 101.0),
                    is_linear=np.ones(n, dtype=bool), is_option=np.zeros(n, dtype=bool),
                    symbol_id=np.zeros(n, dtype=np.int64), isolated_margin=np.full(n, np.nan),
                    collateral_fixed=np.full(n, 1e6), collateral_moving=np.zeros(n))
    out = distance_to_liquidation(rows, tiers={}, default_mmr=MMR)
    assert np.isinf(out).all()
    np.testing.assert_array_equal(out, _full(rows, {}))
