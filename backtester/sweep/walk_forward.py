"""Walk-forward optimisation: optimise on each train window, trade the next test window.

Windows tile the dataset's time range. With ``train=180d,test=30d`` window *k* trains on
``[S + k·test, S + k·test + train)`` (rolling) or ``[S, S + train + k·test)`` (anchored) and
tests on the ``test`` span that starts where its train span ends. Bars are half-open
``[start, end)``, so a test window never contains a bar of its train window.

The out-of-sample equity chains the test windows' returns: each window's equity is rescaled so
that it starts where the previous window ended. Indicators warm up again at the start of each
test window (each test run starts flat, from the configured collateral).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester.errors import ConfigError
from backtester.paths import safe_component
from backtester.sweep.execution import SchedulerTls, execute, make_executor
from backtester.sweep.grid import METRICS, SweepSpec
from backtester.sweep.results import SweepResult, select_best, write_table
from backtester.sweep.runner import default_sweep_id
from backtester.sweep.tasks import cached_dataset, make_task
from backtester.timeutil import MS_PER_DAY, MS_PER_HOUR, ms_to_iso, parse_utc_ms

__all__ = ["WalkForwardSpec", "Window", "make_windows", "parse_walk_forward", "run_walk_forward",
           "run_walk_forward_sweep"]

_UNITS = {"h": MS_PER_HOUR, "d": MS_PER_DAY, "w": 7 * MS_PER_DAY}


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkForwardSpec:
    """Train and test spans in milliseconds; ``is_anchored`` keeps every train window's start."""

    train_ms: int
    test_ms: int
    is_anchored: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """One walk-forward window: half-open train ``[train_start, train_end)`` and test spans (ms)."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


def _span(key: str, text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text)
    if m is None:
        msg = f"--walk-forward {key}={text}: expected a span like 180d, 12h or 4w"
        raise ConfigError(msg)
    value = int(m.group(1)) * _UNITS[m.group(2)]
    if value <= 0:
        msg = f"--walk-forward {key}={text}: expected a positive span"
        raise ConfigError(msg)
    return value


def parse_walk_forward(text: str) -> WalkForwardSpec:
    """Parse ``train=180d,test=30d[,anchored]`` (units h, d, w).

    >>> parse_walk_forward("train=2d,test=1d,anchored").is_anchored
    True
    """
    train = test = None
    anchored = False
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep and key == "anchored":
            anchored = True
        elif key == "train" and sep:
            train = _span(key, value)
        elif key == "test" and sep:
            test = _span(key, value)
        else:
            msg = f"--walk-forward: unexpected {part!r}; expected train=180d,test=30d[,anchored]"
            raise ConfigError(msg)
    if train is None or test is None:
        msg = f"--walk-forward {text!r}: give both train= and test= spans"
        raise ConfigError(msg)
    return WalkForwardSpec(train_ms=train, test_ms=test, is_anchored=anchored)


def make_windows(start_ms: int, end_ms: int, wf: WalkForwardSpec) -> list[Window]:
    """Tile ``[start_ms, end_ms)`` with windows whose test span fits entirely in the range.

    >>> [(w.train_start, w.train_end, w.test_end) for w in
    ...  make_windows(0, 10, WalkForwardSpec(train_ms=4, test_ms=3))]
    [(0, 4, 7), (3, 7, 10)]
    """
    windows = []
    k = 0
    while True:
        train_end = start_ms + wf.train_ms + k * wf.test_ms
        test_end = train_end + wf.test_ms
        if test_end > end_ms:
            break
        train_start = start_ms if wf.is_anchored else train_end - wf.train_ms
        windows.append(Window(index=k, train_start=train_start, train_end=train_end,
                              test_start=train_end, test_end=test_end))
        k += 1
    if not windows:
        msg = (f"--walk-forward: the data range {ms_to_iso(start_ms)} to {ms_to_iso(end_ms)} "
               f"is shorter than one train + test span")
        raise ConfigError(msg)
    return windows


def data_range(spec: SweepSpec) -> tuple[int, int]:
    """Return the ``[start, end)`` range (ms) of the sweep: the spec's window cut to the data."""
    _, spans = cached_dataset(spec.datasets_root, spec.dataset, spec.symbols,
                              spec.run_keys.get("timeframe"))
    if not spans:
        msg = f"dataset {spec.dataset!r} has no candles"
        raise ConfigError(msg)
    first = min(a for a, _ in spans.values())
    last = max(b for _, b in spans.values())  # the close of the last bar (exclusive end)
    lo = max(first, parse_utc_ms(spec.start)) if spec.start else first
    hi = min(last, parse_utc_ms(spec.end)) if spec.end else last
    return lo, hi


def _chain(curves: list[pd.Series]) -> pd.Series:
    out: list[pd.Series] = []
    level = 1.0
    for eq in curves:
        eq = eq.dropna()
        if eq.empty or float(eq.iloc[0]) <= 0:
            continue
        scaled = eq / float(eq.iloc[0]) * level
        out.append(scaled)
        level = float(scaled.iloc[-1])
    if not out:
        return pd.Series(dtype="float64", name="equity")
    s = pd.concat(out)
    s = s[~s.index.duplicated(keep="last")]
    s.name = "equity"
    return s


def run_walk_forward(spec: SweepSpec, wf: WalkForwardSpec, *, out: Path,
                     executor: Executor | None = None, workers: int | None = None,
                     scheduler: str | None = None, tls: SchedulerTls | None = None,
                     on_progress: Callable[[int, int], None] | None = None
                     ) -> tuple[pd.DataFrame, pd.Series, bool]:
    """Optimise ``spec.grid`` on every train window and run the best set on its test window.

    Writes ``walk_forward.parquet`` (one row per window plus an ``overall`` row: best
    parameters, in-sample ``is_<metric>`` and out-of-sample metrics) and ``oos_equity.parquet``
    (the stitched out-of-sample equity, starting at 1.0) under ``out``. Returns
    (table, stitched equity, is_complete).
    """
    from backtester.runs.results import compute_metrics

    windows = make_windows(*data_range(spec), wf)
    params = spec.param_sets()
    names = list(spec.grid)
    train_tasks = [make_task(spec, w.index * len(params) + j, p, start=ms_to_iso(w.train_start),
                             end=ms_to_iso(w.train_end))
                   for w in windows for j, p in enumerate(params)]
    total = len(train_tasks) + len(windows)
    done = [0]

    def progress(_: int, __: int) -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total)

    with contextlib.ExitStack() as stack:
        ex = executor or stack.enter_context(
            make_executor(workers=workers, scheduler=scheduler, n_tasks=len(train_tasks),
                          tls=tls))
        train_rows, ok = execute(train_tasks, ex, on_progress=progress)
        if not ok:
            return pd.DataFrame(), pd.Series(dtype="float64"), False
        by_window: dict[int, list[dict[str, Any]]] = {}
        for r in train_rows:
            by_window.setdefault(r["run"] // len(params), []).append(r)
        test_tasks = []
        chosen: dict[int, dict[str, Any]] = {}
        for w in windows:
            rows = sorted(by_window.get(w.index, []), key=lambda r: r["run"])
            table = pd.DataFrame(rows)
            table["error"] = table["error"].astype("str")
            table[spec.metric] = table[spec.metric].astype("float64")
            top = select_best(table, spec.metric, is_maximize=spec.is_maximize, k=1)
            if top.empty:
                continue
            row = top.iloc[0].to_dict()
            best = {n: params[int(row["run"]) % len(params)][n] for n in names}
            chosen[w.index] = {"params": best, "in_sample": row}
            test_tasks.append(make_task(spec, w.index, best, start=ms_to_iso(w.test_start),
                                        end=ms_to_iso(w.test_end), is_keep_equity=True))
        test_rows, ok = execute(test_tasks, ex, on_progress=progress)
    by_test = {r["run"]: r for r in test_rows}
    records = []
    curves = []
    for w in windows:
        rec: dict[str, Any] = {"window": str(w.index), "train_start": ms_to_iso(w.train_start),
                               "train_end": ms_to_iso(w.train_end),
                               "test_start": ms_to_iso(w.test_start),
                               "test_end": ms_to_iso(w.test_end)}
        pick = chosen.get(w.index)
        test = by_test.get(w.index)
        for n in names:
            rec[f"param_{n}"] = pick["params"][n] if pick else None
        for m in ("total_return", "sharpe", "max_drawdown", "liquidations", spec.metric):
            rec[f"is_{m}"] = pick["in_sample"].get(m) if pick else None
            rec[f"oos_{m}"] = test.get(m) if test else None
        rec["error"] = (test or {}).get("error") or (None if pick else "no successful train run")
        records.append(rec)
        if test is not None and test.get("_equity") is not None:
            curves.append(test["_equity"])
    equity = _chain(curves)
    overall: dict[str, Any] = {"window": "overall",
                               "train_start": ms_to_iso(windows[0].train_start),
                               "train_end": ms_to_iso(windows[-1].train_end),
                               "test_start": ms_to_iso(windows[0].test_start),
                               "test_end": ms_to_iso(windows[-1].test_end)}
    if len(equity) > 1:
        fills = pd.DataFrame({"realized_pnl": pd.Series(dtype="float64")})
        tests = list(by_test.values())
        oos = compute_metrics(equity, fills=fills, fees_paid=_sum(tests, "fees_paid"),
                            funding_paid=_sum(tests, "funding_paid"),
                            liquidations=int(_sum(tests, "liquidations")),
                            margin_calls=int(_sum(tests, "margin_calls")), min_distance=None,
                            max_margin_ratio=None)
        for key in ("total_return", "sharpe", "max_drawdown", spec.metric):
            overall[f"oos_{key}"] = oos.get(key)
        overall["oos_liquidations"] = oos["liquidations"]
        is_vals = [c["in_sample"].get(spec.metric) for c in chosen.values()]
        is_vals = [v for v in is_vals if v is not None and np.isfinite(v)]
        overall[f"is_{spec.metric}"] = float(np.mean(is_vals)) if is_vals else None
    records.append(overall)
    table = pd.DataFrame(records)
    for col in table.columns:
        if col.startswith(("is_", "oos_")):
            table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    for n in names:  # keep int parameters int although the overall row has none
        if all(isinstance(v, int) and not isinstance(v, bool) for v in spec.grid[n]):
            table[f"param_{n}"] = table[f"param_{n}"].astype("Int64")
    table["error"] = table.get("error", pd.Series(dtype="str")).astype("str")
    write_table(table, out / "walk_forward.parquet")
    eq_frame = equity.rename_axis("ts").reset_index()
    write_table(eq_frame, out / "oos_equity.parquet")
    return table, equity, ok


def _sum(rows: list[dict[str, Any]], key: str) -> float:
    vals = [r.get(key) for r in rows]
    return float(sum(v for v in vals if v is not None and v == v))



def run_walk_forward_sweep(spec: SweepSpec, wf: WalkForwardSpec, *,
                           output_dir: str | Path = "reports", sweep_id: str | None = None,
                           executor: Executor | None = None, workers: int | None = None,
                           scheduler: str | None = None, tls: SchedulerTls | None = None,
                           on_progress: Callable[[int, int], None] | None = None) -> Any:
    """Run a walk-forward into ``output_dir/sweep_id`` and write its page; return a SweepResult.

    The folder holds ``sweep.json``, ``walk_forward.parquet``, ``oos_equity.parquet`` and
    ``index.html``; the SweepResult's table is empty (the per-window table is the result).
    """
    import json

    from backtester.api import load_strategy
    from backtester.data.store import atomic_write_bytes
    from backtester.sweep.report import write_sweep_page

    cls = load_strategy(spec.strategy)
    if spec.metric not in METRICS:
        msg = f"--metric: unknown metric {spec.metric!r} (metrics: {', '.join(METRICS)})"
        raise ConfigError(msg)
    sweep_id = safe_component(sweep_id or default_sweep_id(spec, cls.__name__) + "-wf",
                              field="sweep_id")
    out = Path(output_dir) / sweep_id
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "sweep.json", json.dumps(
        {**spec.as_dict(), "sweep_id": sweep_id, "walk_forward": {
            "train_ms": wf.train_ms, "test_ms": wf.test_ms, "anchored": wf.is_anchored}},
        indent=2, sort_keys=True, default=str).encode())
    table, equity, ok = run_walk_forward(spec, wf, out=out, executor=executor, workers=workers,
                                         scheduler=scheduler, tls=tls,
                                         on_progress=on_progress)
    result = SweepResult(spec=spec, table=pd.DataFrame({"error": pd.Series(dtype="str")}),
                         path=out, n_run=0, n_skipped=0, is_complete=ok)
    write_sweep_page(result, walk_forward=table, oos_equity=equity)
    return result
