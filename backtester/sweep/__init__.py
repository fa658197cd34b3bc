"""Parameter sweeps: grids, a per-worker data cache and a runner over any ``Executor``.

A sweep runs one backtest per parameter set of a grid. The runner is written against
:class:`concurrent.futures.Executor`, so the same code runs

* in-process (``workers=1``: :class:`InProcessExecutor`),
* on a local Dask cluster sized to the machine (default), or
* on a remote Dask cluster (``scheduler="tcp://host:8786"``).

The backtester package (and the strategy) must be importable on the Dask scheduler and on every
worker (see ``docs/sweeps.md``). Each task loads its dataset through a per-process cache, so the
data is read once per worker and never pickled per task; a task returns one small summary row.

Results go to ``<output_dir>/<sweep-id>/``: ``results.parquet`` (one row per run, in grid order,
rewritten atomically as runs complete), ``sweep.json`` (the spec) and ``index.html``.

Modules, each importing only those listed after it:

* :mod:`~backtester.sweep.walk_forward` — walk-forward optimisation (train, then trade the
  next window);
* :mod:`~backtester.sweep.runner` — :func:`run_sweep`: every run, the table, the best runs, the
  page;
* :mod:`~backtester.sweep.report` — the page ``index.html``;
* :mod:`~backtester.sweep.results` — :class:`SweepResult`, the results table and the best rows;
* :mod:`~backtester.sweep.execution` — the executors (in process, local or remote Dask);
* :mod:`~backtester.sweep.tasks` — one run on a worker and the per-process data cache;
* :mod:`~backtester.sweep.grid` — :class:`SweepSpec`, the grid, the metrics, the run hash.

The names below (those of the former ``backtester.sweep`` module) import from the package.
"""

from __future__ import annotations

from backtester.sweep.execution import (
    InProcessExecutor,
    SchedulerTls,
    check_scheduler_address,
    execute,
    local_cluster,
    make_executor,
)
from backtester.sweep.grid import (
    MAX_GRID_RUNS,
    METRICS,
    RUN_KEY_PREFIX,
    SWEEPABLE_RUN_KEYS,
    SweepSpec,
    expand_grid,
    param_hash,
    parse_grid,
    sample_grid,
    split_params,
)
from backtester.sweep.results import (
    SweepResult,
    read_done,
    select_best,
    write_table,
)
from backtester.sweep.runner import (
    default_sweep_id,
    run_sweep,
    write_best,
)
from backtester.sweep.tasks import (
    Task,
    cached_dataset,
    make_task,
    run_full,
    run_task,
)

__all__ = [
    "MAX_GRID_RUNS",
    "METRICS",
    "RUN_KEY_PREFIX",
    "SWEEPABLE_RUN_KEYS",
    "InProcessExecutor",
    "SchedulerTls",
    "SweepResult",
    "SweepSpec",
    "Task",
    "cached_dataset",
    "check_scheduler_address",
    "default_sweep_id",
    "execute",
    "expand_grid",
    "local_cluster",
    "make_executor",
    "make_task",
    "param_hash",
    "parse_grid",
    "read_done",
    "run_full",
    "run_sweep",
    "run_task",
    "sample_grid",
    "select_best",
    "split_params",
    "write_best",
    "write_table",
]
