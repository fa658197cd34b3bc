"""Run a parameter sweep: every run of the grid, its results table, the best runs and the page.

Results go to ``<output_dir>/<sweep-id>/``: ``results.parquet`` (one row per run, in grid order,
rewritten atomically as runs complete), ``sweep.json`` (the spec) and ``index.html``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester.errors import ConfigError
from backtester.paths import safe_component
from backtester.sweep.execution import SchedulerTls, execute, make_executor
from backtester.sweep.grid import METRICS, SweepSpec
from backtester.sweep.results import (
    SweepResult,
    read_done,
    results_table,
    select_best,
    write_table,
)
from backtester.sweep.tasks import make_task, run_full

__all__ = ["default_sweep_id", "run_sweep", "write_best"]

def run_sweep(spec: SweepSpec, *, output_dir: str | Path = "reports", sweep_id: str | None = None,
              executor: Executor | None = None, workers: int | None = None,
              scheduler: str | None = None, tls: SchedulerTls | None = None,
              is_resume: bool = False, best: int = 0,
              on_progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run every parameter set of ``spec`` and write ``results.parquet``, ``sweep.json`` and
    ``index.html`` under ``output_dir/sweep_id``.

    Parameters
    ----------
    executor
        Any :class:`concurrent.futures.Executor`; when None one is made with
        :func:`make_executor` from ``workers`` / ``scheduler`` / ``tls``.
    is_resume
        Skip runs whose parameter hash is already in ``results.parquet`` (their rows are kept).
    best
        Re-run the top ``best`` runs by ``spec.metric`` in process and write their full run
        folders under ``best/``.
    on_progress
        Called with (finished, total) after each run completes.
    """
    from backtester.api import load_strategy

    cls = load_strategy(spec.strategy)
    if spec.metric not in METRICS:
        msg = f"--metric: unknown metric {spec.metric!r} (metrics: {', '.join(METRICS)})"
        raise ConfigError(msg)
    sweep_id = safe_component(sweep_id or default_sweep_id(spec, cls.__name__),
                              field="sweep_id")
    out = Path(output_dir) / sweep_id
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.parquet"
    names = list(spec.grid)
    params = spec.param_sets()
    tasks = [make_task(spec, i, p) for i, p in enumerate(params)]
    done = read_done(results_path) if is_resume else {}
    rows: dict[int, dict[str, Any]] = {}
    todo = []
    for t in tasks:
        if t.hash in done:
            rows[t.index] = {**done[t.hash], "run": t.index}
        else:
            todo.append(t)
    n_skipped = len(tasks) - len(todo)
    from backtester.data.store import atomic_write_bytes

    atomic_write_bytes(out / "sweep.json", json.dumps(
        {**spec.as_dict(), "sweep_id": sweep_id, "runs": len(tasks)}, indent=2,
        sort_keys=True, default=str).encode())
    last_write = [0.0]

    def on_row(row: dict[str, Any]) -> None:
        rows[row["run"]] = row
        now = time.monotonic()
        if now - last_write[0] >= 1.0:  # atomic rewrites, at most once a second
            write_table(results_table(rows, names), results_path)
            last_write[0] = now

    is_complete = True
    if todo:
        with contextlib.ExitStack() as stack:
            ex = executor or stack.enter_context(
                make_executor(workers=workers, scheduler=scheduler, n_tasks=len(todo), tls=tls))
            _, is_complete = execute(todo, ex, on_row=on_row, on_progress=on_progress)
    table = results_table(rows, names)
    write_table(table, results_path)
    result = SweepResult(spec=spec, table=table, path=out, n_run=len(rows) - n_skipped,
                         n_skipped=n_skipped, is_complete=is_complete)
    if is_complete and best > 0:
        result.best_paths = write_best(spec, table, out, k=best)
    from backtester.sweep.report import write_sweep_page

    write_sweep_page(result)
    return result


def default_sweep_id(spec: SweepSpec, strategy_name: str) -> str:
    """Return ``<Strategy>-<dataset>-<spec hash>``: the same spec resumes into the same folder."""
    return f"{strategy_name}-{spec.dataset}-{spec.spec_hash()[:8]}"


def write_best(spec: SweepSpec, table: pd.DataFrame, out: Path, *, k: int) -> list[Path]:
    """Re-run the top ``k`` runs in process and write their full run folders under ``best/``."""
    names = list(spec.grid)
    paths = []
    top = select_best(table, spec.metric, is_maximize=spec.is_maximize, k=k)
    try:
        from backtester.report import write_report
    except ImportError:  # the report extra is optional
        write_report = None  # type: ignore[assignment]
    for rank, row in enumerate(top.to_dict("records"), start=1):
        params = {n: _plain(row[f"param_{n}"]) for n in names}
        result = run_full(make_task(spec, int(row["run"]), params))
        path = result.write(out / "best" / f"{rank:02d}-{row['param_hash']}")
        if write_report is not None:
            write_report(path, datasets_root=spec.datasets_root)
        paths.append(path)
    return paths


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
