"""Liquidation probability over a horizon from block-bootstrapped paths of a run's own returns.

Returns are per underlying: log returns of one mark series per asset (a perp or future of that
asset; options excluded) on the run's own bars, kept only at bars where every asset has one so
that blocks are sampled **jointly** — a block is the same run of bars for every asset, which
keeps their correlation and short-range dependence. Each path concatenates blocks of
``block_bars`` consecutive bars (start drawn uniformly) until it spans the horizon; the
account snapshot is shocked by the path's cumulative move at a few checkpoints and evaluated by
the margin calculator; a path counts as liquidated when any checkpoint is. Vol is held, time
is held (no theta, no expiry), and no strategy action happens along the path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtester.errors import DataError
from backtester.instruments import symbol_underlying
from backtester.margin.calculator import evaluate
from backtester.risk.shock import shock

__all__ = ["MonteCarloResult", "ReturnSample", "liquidation_probability", "returns_from_positions",
           "wilson_interval"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnSample:
    """Joint per-bar log returns: ``returns[i, j]`` of ``assets[j]`` at bar ``i``."""

    assets: tuple[str, ...]
    returns: NDArray[np.float64]
    bar_ms: int
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MonteCarloResult:
    """Liquidation probability: ``liquidated_paths / n_paths`` with a Wilson interval.

    ``checkpoints`` are bar offsets (1-based) along the path where the account is evaluated;
    ``horizon_bars × bar_ms`` is the horizon; ``confidence`` the interval's level.
    """

    n_paths: int
    liquidated_paths: int
    probability: float
    ci_low: float
    ci_high: float
    confidence: float
    horizon_bars: int
    bar_ms: int
    block_bars: int
    checkpoints: tuple[int, ...]
    seed: int
    assets: tuple[str, ...]
    n_returns: int


def _is_option(symbol: str) -> bool:
    tail = symbol.split(":", 1)[1] if ":" in symbol else ""
    return tail.count("-") >= 3 or tail.endswith(("-C", "-P"))


def returns_from_positions(positions: pd.DataFrame) -> ReturnSample:
    """Build joint per-asset log returns from a run's ``positions.parquet`` (marks per bar).

    One symbol per asset (the non-option symbol with the most rows; ties by name). Only
    consecutive bars (one bar apart) where every asset has a mark are kept.
    """
    need = {"ts", "symbol", "mark"}
    if not need.issubset(positions.columns):
        msg = f"positions.parquet: expected columns {sorted(need)}, got {list(positions.columns)}"
        raise DataError(msg)
    frame = positions[~positions["symbol"].astype(str).map(_is_option)]
    if frame.empty:
        msg = "positions.parquet: no perp or future marks to bootstrap returns from"
        raise DataError(msg)
    counts = frame.groupby("symbol").size()
    chosen: dict[str, str] = {}
    for sym in sorted(counts.index, key=lambda s: (-int(counts[s]), str(s))):
        chosen.setdefault(symbol_underlying(str(sym)), str(sym))
    assets = tuple(sorted(chosen))
    ts = pd.to_datetime(frame["ts"], utc=True)
    frame = frame.assign(ts_ms=_to_ms(ts))
    wide = (frame[frame["symbol"].isin(list(chosen.values()))]
            .pivot_table(index="ts_ms", columns="symbol", values="mark", aggfunc="last")
            .sort_index())
    wide = wide[[chosen[a] for a in assets]]
    steps = np.diff(wide.index.to_numpy())
    if len(steps) == 0:
        msg = "positions.parquet: fewer than two bars of marks; nothing to bootstrap"
        raise DataError(msg)
    bar_ms = int(np.median(steps))
    marks = wide.to_numpy(dtype=np.float64)
    logret = np.log(marks[1:] / marks[:-1])
    ok = (steps == bar_ms) & np.isfinite(logret).all(axis=1)
    sample = logret[ok]
    if len(sample) < 2:
        msg = "positions.parquet: fewer than two joint returns; nothing to bootstrap"
        raise DataError(msg)
    return ReturnSample(assets=assets, returns=sample, bar_ms=bar_ms,
                        symbols=tuple(chosen[a] for a in assets))


def _to_ms(ts: pd.Series) -> NDArray[np.int64]:
    # pandas 3 keeps the stored resolution (us here): convert through the unit, not by guess
    values = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ms]")
    return values.astype(np.int64)


def wilson_interval(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval of a binomial proportion ``k / n``.

    >>> [round(x, 4) for x in wilson_interval(0, 100)]
    [0.0, 0.037]
    """
    if n <= 0:
        return 0.0, 1.0
    z = float(_z(confidence))
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def _z(confidence: float) -> float:
    # inverse normal CDF by bisection on erf (no scipy dependency)
    target = 0.5 + confidence / 2.0
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def liquidation_probability(snapshot: Mapping[str, object], sample: ReturnSample, *,
                            n_paths: int, horizon_bars: int, seed: int,
                            block_bars: int | None = None, checkpoints: int = 4,
                            confidence: float = 0.95,
                            progress: Callable[[int, int], None] | None = None
                            ) -> MonteCarloResult:
    """Estimate the probability that ``snapshot`` is liquidated within ``horizon_bars``.

    Parameters
    ----------
    snapshot
        The account (calculator snapshot) at the start of every path.
    sample
        Joint per-asset log returns (:func:`returns_from_positions`).
    n_paths, horizon_bars
        Number of paths and their length in bars (> 0).
    seed
        Seed of the ``numpy.random.Generator``: the same seed gives the same answer.
    block_bars
        Block length in bars (default ``ceil(n_returns ** (1/3))``, capped at the sample).
    checkpoints
        How many evenly spaced bars of each path (the last one included) are evaluated.
    confidence
        Level of the Wilson score interval.
    progress
        Called as ``progress(paths_done, n_paths)`` after each chunk of paths.
    """
    if n_paths <= 0 or horizon_bars <= 0:
        msg = f"monte carlo: n_paths and horizon must be positive, got {n_paths}, {horizon_bars}"
        raise DataError(msg)
    rng = np.random.default_rng(seed)
    n = len(sample.returns)
    block = min(n, max(1, block_bars if block_bars is not None else math.ceil(n ** (1 / 3))))
    n_blocks = math.ceil(horizon_bars / block)
    cps = sorted({max(1, math.ceil(horizon_bars * (i + 1) / checkpoints))
                  for i in range(max(1, checkpoints))})
    offsets = np.arange(block)
    liquidated = 0
    chunk = 64
    for start in range(0, n_paths, chunk):
        m = min(chunk, n_paths - start)
        starts = rng.integers(0, n - block + 1, size=(m, n_blocks))
        idx = (starts[:, :, None] + offsets).reshape(m, -1)[:, :horizon_bars]
        cum = np.cumsum(sample.returns[idx], axis=1)         # (m, horizon, assets)
        moves = np.expm1(cum[:, [c - 1 for c in cps], :])    # (m, checkpoints, assets)
        for path in moves:
            for point in path:
                shocked = shock(snapshot, dict(zip(sample.assets, point.tolist(), strict=True)))
                if evaluate(shocked).get("status") == "liquidate":
                    liquidated += 1
                    break
        if progress is not None:
            progress(start + m, n_paths)
    low, high = wilson_interval(liquidated, n_paths, confidence=confidence)
    return MonteCarloResult(n_paths=n_paths, liquidated_paths=liquidated,
                            probability=liquidated / n_paths, ci_low=low, ci_high=high,
                            confidence=confidence, horizon_bars=horizon_bars,
                            bar_ms=sample.bar_ms, block_bars=block, checkpoints=tuple(cps),
                            seed=seed, assets=sample.assets, n_returns=n)
