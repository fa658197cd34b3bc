"""One backtest of a sweep as a task: what a worker receives, the per-process data cache
it runs from (the data is read once per worker, never pickled per task) and its summary row.
"""

from __future__ import annotations

import logging
import time
import traceback
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backtester.sweep.grid import METRICS, SweepSpec, param_hash, split_params

__all__ = ["Task", "cached_dataset", "make_task", "run_full", "run_task"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One backtest to run on a worker (small: no data inside)."""

    index: int
    strategy: str
    dataset: str
    datasets_root: str | None
    symbols: tuple[str, ...] | None
    start: str | None
    end: str | None
    run_keys: dict[str, Any]
    params: dict[str, Any]
    hash: str
    is_keep_equity: bool = False


#: Per-process cache: (datasets_root, dataset, symbols, timeframe) → (Dataset, {symbol: (open,
#: close) ms}).
_DATA_CACHE: dict[tuple[str | None, str, tuple[str, ...] | None, str | None], Any] = {}
#: Per-process cache of the last windows cut from a cached dataset (walk-forward reuses them).
_WINDOW_CACHE: dict[tuple[Any, ...], Any] = {}
_WINDOW_CACHE_SIZE = 4


def cached_dataset(root: str | None, name: str, symbols: tuple[str, ...] | None,
                   timeframe: str | None = None) -> tuple[Any, dict[str, tuple[int, int]]]:
    """Load a dataset once per process; return it and each symbol's ``[first open, last close)``
    span in ms (bars are stamped with their open time). ``timeframe`` picks the trade candles
    of a dataset that holds several (the run key)."""
    key = (root, name, symbols, timeframe)
    if key not in _DATA_CACHE:
        from backtester.data.catalog import load_dataset
        from backtester.runs.runner import dataset_frames
        from backtester.timeutil import timeframe_ms

        ds = load_dataset(name, root=root, symbols=list(symbols) if symbols else None,
                          timeframe=timeframe)
        spans = {}
        for sym, fr in dataset_frames(ds).items():
            ts = fr.ohlcv["ts"].dt.as_unit("ms").astype("int64").to_numpy()
            if len(ts):
                tf = timeframe_ms(fr.timeframe) if fr.timeframe else \
                    int(np.diff(ts).min()) if len(ts) > 1 else 0
                spans[sym] = (int(ts.min()), int(ts.max()) + tf)
        _DATA_CACHE[key] = (ds, spans)
    return typing.cast(tuple[Any, dict[str, tuple[int, int]]], _DATA_CACHE[key])


def _window(task: Task) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Any]:
    from dataclasses import replace

    from backtester.data.catalog import trim_window
    from backtester.runs.runner import dataset_frames
    from backtester.timeutil import parse_utc_ms

    tf = task.run_keys.get("timeframe")
    key = (task.datasets_root, task.dataset, task.symbols, task.start, task.end, tf)
    if key in _WINDOW_CACHE:
        return typing.cast(tuple[dict[str, Any], dict[str, Any], dict[str, Any], Any],
                           _WINDOW_CACHE[key])
    ds, _ = cached_dataset(task.datasets_root, task.dataset, task.symbols, tf)
    lo = parse_utc_ms(task.start) if task.start else None
    hi = parse_utc_ms(task.end) if task.end else None
    # cut every series exactly as load_dataset(start_ms=, end_ms=) does, then build the frames
    # as backtester.run(dataset=...) does: the same inputs as a stand-alone run, minus the I/O
    kinds = ("ohlcv", "mark", "index", "premium", "funding", "option_marks", "vol_index")
    cut = replace(ds, **{k: {s: trim_window(f, None if k == "vol_index" else lo, hi)
                             for s, f in getattr(ds, k).items()} for k in kinds})
    frames = dataset_frames(cut)  # instruments without data in the window are left out
    instruments = {s: ds.instruments[s] for s in frames}
    vol = {k.split("/")[0]: v for k, v in cut.vol_index.items()}
    if len(_WINDOW_CACHE) >= _WINDOW_CACHE_SIZE:
        _WINDOW_CACHE.pop(next(iter(_WINDOW_CACHE)))
    _WINDOW_CACHE[key] = (frames, instruments, vol, ds.leverage_tiers)
    return frames, instruments, vol, ds.leverage_tiers


def run_full(task: Task) -> Any:
    """Run the backtest of ``task`` on the cached data and return its full BacktestResult.

    Gives the same result as ``backtester.run(strategy, dataset=..., start=..., end=...)``
    (the dataset's leverage tiers included) without reading the files again.
    """
    from backtester.api import run

    frames, instruments, vol, tiers = _window(task)
    params, swept = split_params(task.params)
    keys = {**task.run_keys, **swept}
    return run(task.strategy, data=frames, instruments=instruments, vol_indexes=vol,
               dataset=task.dataset, start=task.start, end=task.end, params=params,
               dataset_tiers=tiers, **keys)


def run_task(task: Task) -> dict[str, Any]:
    """Run one backtest and return its summary row; an exception becomes the row's ``error``.

    Row keys: ``run`` (grid index), ``param_hash``, ``param_<name>`` per parameter, the
    :data:`METRICS`, ``error`` (``"Type: message"`` or None) and ``duration_s`` (wall time).
    """
    t0 = time.perf_counter()
    row: dict[str, Any] = {"run": task.index, "param_hash": task.hash}
    row.update({f"param_{k}": v for k, v in task.params.items()})
    error: str | None = None
    metrics: dict[str, Any] = {}
    equity = None
    try:
        result = run_full(task)
        metrics = result.metrics
        if task.is_keep_equity:
            equity = result.equity["equity"]
    except Exception as exc:  # a failing run is recorded, the sweep continues
        error = f"{type(exc).__name__}: {exc}"
        log.debug("run %s failed:\n%s", task.hash, traceback.format_exc())
    row.update({m: metrics.get(m) for m in METRICS})
    row["error"] = error
    row["duration_s"] = time.perf_counter() - t0
    if task.is_keep_equity:
        row["_equity"] = equity
    return row



def make_task(spec: SweepSpec, index: int, params: Mapping[str, Any], *,
              start: str | None = None, end: str | None = None,
              is_keep_equity: bool = False) -> Task:
    """Build the task of one parameter set (``start``/``end`` override the spec's window)."""
    strategy = spec.strategy
    target, sep, cls_name = strategy.partition(":")
    if target.endswith(".py") and Path(target).is_file():
        # workers may run in another directory: send an absolute path
        strategy = str(Path(target).resolve()) + (sep + cls_name if sep else "")
    return Task(index=index, strategy=strategy, dataset=spec.dataset,
                datasets_root=spec.datasets_root, symbols=spec.symbols,
                start=start or spec.start, end=end or spec.end, run_keys=dict(spec.run_keys),
                params=dict(params), hash=param_hash(spec, params, start=start, end=end),
                is_keep_equity=is_keep_equity)
