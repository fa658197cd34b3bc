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
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import time
import traceback
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from backtester.errors import ConfigError
from backtester.paths import safe_component

__all__ = ["RUN_KEY_PREFIX", "SWEEPABLE_RUN_KEYS", "InProcessExecutor", "SchedulerTls",
           "SweepResult", "SweepSpec", "check_scheduler_address", "expand_grid", "local_cluster",
           "make_executor", "param_hash", "parse_grid", "run_sweep", "run_task", "sample_grid",
           "select_best", "split_params"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Metrics copied into each summary row (keys of ``BacktestResult.metrics``).
METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
           "trades", "win_rate", "fees_paid", "funding_paid", "liquidations", "margin_calls",
           "min_distance_to_liquidation", "max_margin_ratio", "is_wiped_out")
_INT_METRICS = ("trades", "liquidations", "margin_calls")
#: Default largest grid (parameter sets) a sweep builds; ``--max-runs`` changes it.
MAX_GRID_RUNS = 100_000

#: A grid name ``run.<key>`` sweeps a run configuration key instead of a strategy parameter.
RUN_KEY_PREFIX = "run."

#: Run configuration keys a grid can vary, with the type of one value (str: validated by the
#: run configuration). Others (dataset, window, collateral, files) are fixed per sweep.
SWEEPABLE_RUN_KEYS: Mapping[str, type] = {
    "leverage": float, "default_leverage": float, "margin_mode": str, "margin_check": str,
    "call_level": float, "fill": str, "slippage_bps": float, "volume_impact": float,
    "liquidation_slippage_bps": float, "funding": str, "profile": str, "adl": bool,
    "stop_on_bankruptcy": bool,
}


# -- grid -----------------------------------------------------------------------------------
def _convert(strategy: str, name: str, typ: Any, text: str) -> Any:
    text = text.strip()
    try:
        if typ is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
    except ValueError:
        owner = "run key " if name.startswith(RUN_KEY_PREFIX) else f"{strategy}."
        msg = f"--grid {name}: {text!r} is not a valid {typ.__name__} for {owner}{name}"
        raise ConfigError(msg) from None
    return text


def _range(strategy: str, name: str, typ: Any, text: str, *, max_runs: int) -> list[Any]:
    parts = text.split(":")
    if len(parts) != 3:
        msg = f"--grid {name}={text}: a range is start:stop:step (stop inclusive)"
        raise ConfigError(msg)
    if typ not in (int, float):
        msg = f"--grid {name}={text}: ranges need an int or float parameter; list the values"
        raise ConfigError(msg)
    start, stop, step = (_convert(strategy, name, typ, p) for p in parts)
    if step <= 0 or stop < start:
        msg = f"--grid {name}={text}: expected start <= stop and step > 0"
        raise ConfigError(msg)
    # count before building: a fine step over a wide range must not fill the memory
    n = (stop - start) // step if typ is int else math.floor((stop - start) / step + 1e-9)
    if n + 1 > max_runs:
        msg = (f"--grid {name}={text}: {n + 1:,} values, more runs than the limit of "
               f"{max_runs:,} (--max-runs); use a coarser step or a narrower range")
        raise ConfigError(msg)
    if typ is int:
        return list(range(start, stop + 1, step))
    # stop is inclusive; round to 12 significant digits so 0.1 steps give 0.3, not 0.30000000004
    return [float(f"{start + k * step:.12g}") for k in range(n + 1)]


def _grid_name(name: str, parameters: Mapping[str, tuple[Any, Any]],
               strategy: str) -> tuple[str, Any]:
    # (grid name, value type): a strategy parameter, else a run key (stored as run.<key>)
    key = name.removeprefix(RUN_KEY_PREFIX)
    if name == key and name in parameters:
        return name, parameters[name][0]
    if key in SWEEPABLE_RUN_KEYS:
        return RUN_KEY_PREFIX + key, SWEEPABLE_RUN_KEYS[key]
    import difflib

    choices = [*parameters, *SWEEPABLE_RUN_KEYS] if name == key else list(SWEEPABLE_RUN_KEYS)
    close = difflib.get_close_matches(key, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    what = f"{strategy} has no parameter" if name == key else "not a sweepable run key:"
    msg = (f"--grid: {what} {name!r}{hint} (parameters: {', '.join(sorted(parameters)) or 'none'}"
           f"; run keys: {', '.join(SWEEPABLE_RUN_KEYS)})")
    raise ConfigError(msg)


def _check_run_value(name: str, value: Any) -> Any:
    from backtester.config import load_config

    key = name.removeprefix(RUN_KEY_PREFIX)
    try:
        load_config(**{key: value})
    except ConfigError as exc:
        msg = f"--grid {name}: {exc}"
        raise ConfigError(msg) from None
    return value


def parse_grid(items: Sequence[str], parameters: Mapping[str, tuple[Any, Any]], *,
               strategy: str = "strategy", max_runs: int = MAX_GRID_RUNS) -> dict[str, list[Any]]:
    """Parse ``name=v1,v2,...`` and ``name=start:stop:step`` (stop inclusive) into a grid.

    A name is a strategy parameter (values typed by ``Strategy.parameters``) or, when the
    strategy has no parameter of that name, a run configuration key of
    :data:`SWEEPABLE_RUN_KEYS` (``leverage=2,5,10``, ``margin_mode=cross,isolated``); write
    ``run.<key>`` to sweep the run key when the strategy has a parameter of the same name.
    Run keys are stored as ``run.<key>``. The grid keeps the order of ``items``; duplicated
    values of one name are dropped. A grid of more than ``max_runs`` parameter sets is
    refused, with its size, before it is built.

    >>> parse_grid(["n=1:5:2", "x=0.5,1", "leverage=2,5"], {"n": (int, 3), "x": (float, 1.0)})
    {'n': [1, 3, 5], 'x': [0.5, 1.0], 'run.leverage': [2.0, 5.0]}
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        raw, sep, values = item.partition("=")
        raw = raw.strip()
        if not sep or not raw or not values.strip():
            msg = f"--grid: expected name=v1,v2,... or name=start:stop:step, got {item!r}"
            raise ConfigError(msg)
        name, typ = _grid_name(raw, parameters, strategy)
        if name in grid:
            msg = f"--grid: {name!r} given twice"
            raise ConfigError(msg)
        if ":" in values and "," not in values and typ is not str:
            parsed = _range(strategy, name, typ, values, max_runs=max_runs)
        else:
            parsed = [_convert(strategy, name, typ, v) for v in values.split(",")]
        if name.startswith(RUN_KEY_PREFIX):
            parsed = [_check_run_value(name, v) for v in parsed]
        grid[name] = list(dict.fromkeys(parsed))
        runs = math.prod(len(v) for v in grid.values())
        if runs > max_runs:
            sizes = " × ".join(f"{len(v):,} {k}" for k, v in grid.items())
            msg = (f"--grid: the grid makes {sizes} = {runs:,} runs, more than the limit of "
                   f"{max_runs:,} (--max-runs); use fewer values, or --random N to sample")
            raise ConfigError(msg)
    return grid


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split one parameter set of a grid into (strategy parameters, run keys).

    >>> split_params({"lookback": 48, "run.leverage": 5.0})
    ({'lookback': 48}, {'leverage': 5.0})
    """
    strategy = {k: v for k, v in params.items() if not k.startswith(RUN_KEY_PREFIX)}
    run_keys = {k.removeprefix(RUN_KEY_PREFIX): v for k, v in params.items()
                if k.startswith(RUN_KEY_PREFIX)}
    return strategy, run_keys


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Return every parameter set of ``grid`` in grid order (the last parameter varies fastest).

    >>> expand_grid({"a": [1, 2], "b": [0.5, 1.0]})
    [{'a': 1, 'b': 0.5}, {'a': 1, 'b': 1.0}, {'a': 2, 'b': 0.5}, {'a': 2, 'b': 1.0}]
    """
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def sample_grid(combos: Sequence[dict[str, Any]], n: int, *, seed: int) -> list[int]:
    """Pick ``n`` distinct parameter sets at random; return their grid indices, ascending.

    Uses ``numpy.random.default_rng(seed)``: the same seed gives the same picks. ``n`` larger
    than the grid returns the whole grid.
    """
    if n <= 0:
        msg = f"--random: expected a positive number of runs, got {n}"
        raise ConfigError(msg)
    if n >= len(combos):
        return list(range(len(combos)))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(len(combos), size=n, replace=False))


# -- spec and hashing ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SweepSpec:
    """What a sweep runs: strategy, data window, run keys, grid and the objective.

    ``start``/``end`` are UTC ISO dates or None (the whole dataset); ``run_keys`` are any other
    run configuration keys (DESIGN §7) shared by every run; ``symbols`` limits which instruments
    of the dataset are loaded (None = all).
    """

    strategy: str
    dataset: str
    grid: dict[str, list[Any]]
    datasets_root: str | None = None
    start: str | None = None
    end: str | None = None
    symbols: tuple[str, ...] | None = None
    run_keys: dict[str, Any] = field(default_factory=dict)
    metric: str = "sharpe"
    is_maximize: bool = True
    random: int | None = None
    seed: int = 0

    def param_sets(self) -> list[dict[str, Any]]:
        """Return the parameter sets to run, in grid order (a seeded sample with ``random``)."""
        combos = expand_grid(self.grid)
        if self.random is None:
            return combos
        return [combos[i] for i in sample_grid(combos, self.random, seed=self.seed)]

    def as_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-ready values (written to ``sweep.json``)."""
        out = asdict(self)
        out["symbols"] = list(self.symbols) if self.symbols is not None else None
        return out

    def spec_hash(self) -> str:
        """Return a short stable hash of the spec."""
        payload = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def param_hash(spec: SweepSpec, params: Mapping[str, Any], *, start: str | None = None,
               end: str | None = None) -> str:
    """Return the hash identifying one run: strategy, data, window, run keys and parameters.

    ``--resume`` skips a run whose hash is already in ``results.parquet``.
    """
    payload = json.dumps({"strategy": spec.strategy, "dataset": spec.dataset,
                          "symbols": spec.symbols, "start": start or spec.start,
                          "end": end or spec.end, "run_keys": spec.run_keys,
                          "params": dict(params)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# -- the task that runs on a worker ----------------------------------------------------------
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
        from backtester.runs.runner import _dataset_frames
        from backtester.timeutil import timeframe_ms

        ds = load_dataset(name, root=root, symbols=list(symbols) if symbols else None,
                          timeframe=timeframe)
        spans = {}
        for sym, fr in _dataset_frames(ds).items():
            ts = fr.ohlcv["ts"].dt.as_unit("ms").astype("int64").to_numpy()
            if len(ts):
                tf = timeframe_ms(fr.timeframe) if fr.timeframe else \
                    int(np.diff(ts).min()) if len(ts) > 1 else 0
                spans[sym] = (int(ts.min()), int(ts.max()) + tf)
        _DATA_CACHE[key] = (ds, spans)
    return typing.cast(tuple[Any, dict[str, tuple[int, int]]], _DATA_CACHE[key])


def _window(task: Task) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Any]:
    from dataclasses import replace

    from backtester.data.catalog import _trim
    from backtester.runs.runner import _dataset_frames
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
    cut = replace(ds, **{k: {s: _trim(f, None if k == "vol_index" else lo, hi)
                             for s, f in getattr(ds, k).items()} for k in kinds})
    frames = _dataset_frames(cut)  # instruments without data in the window are left out
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


# -- executors -------------------------------------------------------------------------------
class InProcessExecutor(Executor):
    """A synchronous Executor: ``submit`` runs the call at once and returns a done future."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` now; its result or exception is in the returned future."""
        fut: Future[T] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            fut.set_exception(exc)
        return fut


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerTls:
    """PEM files for a TLS connection to a remote Dask scheduler (``--tls-*`` flags).

    ``ca_file`` is the certificate authority that signed the scheduler's (and workers')
    certificates; ``cert_file``/``key_file`` are this client's certificate and private key.
    """

    ca_file: str
    cert_file: str
    key_file: str

    def security(self) -> Any:
        """Return the ``distributed.security.Security`` of a client using these files."""
        from distributed.security import Security

        for flag, path in (("--tls-ca-file", self.ca_file), ("--tls-cert", self.cert_file),
                           ("--tls-key", self.key_file)):
            if not Path(path).is_file():
                msg = f"{flag}: file {path} not found"
                raise ConfigError(msg)
        return Security(tls_ca_file=self.ca_file, tls_client_cert=self.cert_file,
                        tls_client_key=self.key_file, require_encryption=True)


def check_scheduler_address(address: str) -> str:
    """Return ``address`` when it is ``tcp://host:port`` or ``tls://host:port``.

    >>> check_scheduler_address("tls://10.0.0.5:8786")
    'tls://10.0.0.5:8786'
    """
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None \
            or parts.path not in ("", "/"):
        msg = (f"--scheduler: {address!r} is not a Dask scheduler address; expected "
               "tls://host:port (or tcp://host:port on a trusted network), e.g. "
               "tls://10.0.0.5:8786")
        raise ConfigError(msg)
    return address


@contextlib.contextmanager
def local_cluster(n_workers: int) -> Iterator[Any]:
    """Start a loopback Dask cluster secured with temporary TLS credentials; yield its Client.

    The scheduler and workers listen on 127.0.0.1 with ``tls://`` only. A fresh self-signed
    key and certificate are made in memory for this cluster (``Security.temporary()``; never
    written to disk) and every connection must present them, so another local user (or
    process) that reaches the port cannot submit work or read results.
    """
    from distributed import Client, LocalCluster
    from distributed.security import Security

    security = Security.temporary()
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           protocol="tls://", security=security,
                           silence_logs=logging.ERROR)
    try:
        client = Client(cluster, security=security)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


@contextlib.contextmanager
def make_executor(*, workers: int | None = None, scheduler: str | None = None,
                  n_tasks: int | None = None,
                  tls: SchedulerTls | None = None) -> Iterator[Executor]:
    """Yield the Executor of a sweep and shut it down afterwards.

    ``scheduler`` (or ``$DASK_SCHEDULER_ADDRESS``) → that Dask cluster, over TLS with ``tls``
    (or Dask's own ``distributed.comm.tls.*`` configuration for a ``tls://`` address);
    ``workers=1`` → in process; otherwise a local TLS-secured Dask cluster
    (:func:`local_cluster`) of ``min(workers or cpu count, n_tasks)`` processes with one thread
    each.
    """
    scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if scheduler is not None:
        check_scheduler_address(scheduler)
    elif tls is not None:
        msg = "--tls-ca-file/--tls-cert/--tls-key: only for a remote --scheduler"
        raise ConfigError(msg)
    if scheduler is None and workers == 1:
        yield InProcessExecutor()
        return
    try:
        from distributed import Client
        from distributed.security import Security
    except ImportError:
        msg = ("sweeps on a Dask cluster need dask[distributed]: pip install "
               "'backtester[distributed]' (or use --workers 1)")
        raise ConfigError(msg) from None
    if scheduler is not None:
        security = tls.security() if tls is not None else (
            Security() if scheduler.startswith("tls://") else None)
        try:
            client = Client(scheduler, timeout="10s", security=security)
        except (OSError, TypeError, ValueError) as exc:
            msg = f"--scheduler: cannot connect to Dask scheduler {scheduler}: {exc}"
            raise ConfigError(msg) from None
        try:
            yield client.get_executor()
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    if n_tasks is not None:
        n = max(1, min(n, n_tasks))
    with local_cluster(n) as local:
        yield local.get_executor()


# -- the runner ------------------------------------------------------------------------------
@dataclass(slots=True, kw_only=True)
class SweepResult:
    """A finished (or interrupted) sweep: the results table in grid order and its folder."""

    spec: SweepSpec
    table: pd.DataFrame
    path: Path
    n_run: int
    n_skipped: int
    is_complete: bool
    best_paths: list[Path] = field(default_factory=list)


def _table(rows: Mapping[int, dict[str, Any]], names: Sequence[str]) -> pd.DataFrame:
    cols = ["run", "param_hash", *(f"param_{n}" for n in names), *METRICS, "error",
            "duration_s"]
    df = pd.DataFrame([rows[k] for k in sorted(rows)], columns=cols)
    for m in METRICS:
        if m in _INT_METRICS:
            df[m] = df[m].astype("Int64")
        elif m == "is_wiped_out":
            df[m] = df[m].astype("boolean")
        else:
            df[m] = df[m].astype("float64")
    # missing (NA) = the run succeeded
    df["error"] = df["error"].astype("str")
    df["run"] = df["run"].astype("int64")
    return df.reset_index(drop=True)


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` as Parquet atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Return the rows of an existing ``results.parquet`` by parameter hash (for resume)."""
    if not path.is_file():
        return {}
    df = pd.read_parquet(path)
    out: dict[str, dict[str, Any]] = {}
    for rec in df.to_dict("records"):
        rec = {k: (None if _is_missing(v) else v) for k, v in rec.items()}
        out[str(rec["param_hash"])] = rec
    return out


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def execute(tasks: Sequence[Task], executor: Executor, *,
            on_row: Callable[[dict[str, Any]], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> tuple[list[dict[str, Any]],
                                                                            bool]:
    """Run ``tasks`` on ``executor``; return (rows in completion order, is_complete).

    Ctrl-C (KeyboardInterrupt) cancels the futures not yet finished and returns the rows done.
    """
    rows: list[dict[str, Any]] = []
    futures: list[Future[dict[str, Any]]] = []
    seen: set[int] = set()

    def collect(fut: Future[dict[str, Any]]) -> None:
        seen.add(id(fut))
        row = fut.result()
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if on_progress is not None:
            on_progress(len(rows), len(tasks))

    try:
        for t in tasks:
            fut = executor.submit(run_task, t)
            futures.append(fut)
            if fut.done():  # a synchronous executor: report progress as runs finish
                collect(fut)
        for fut in as_completed([f for f in futures if id(f) not in seen]):
            collect(fut)
    except KeyboardInterrupt:
        for fut in futures:
            fut.cancel()
        for fut in futures:  # keep runs that finished but were not collected yet
            if id(fut) not in seen and fut.done() and not fut.cancelled() \
                    and fut.exception() is None:
                seen.add(id(fut))
                rows.append(fut.result())
                if on_row is not None:
                    on_row(rows[-1])
        return rows, False
    return rows, True


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
            write_table(_table(rows, names), results_path)
            last_write[0] = now

    is_complete = True
    if todo:
        with contextlib.ExitStack() as stack:
            ex = executor or stack.enter_context(
                make_executor(workers=workers, scheduler=scheduler, n_tasks=len(todo), tls=tls))
            _, is_complete = execute(todo, ex, on_row=on_row, on_progress=on_progress)
    table = _table(rows, names)
    write_table(table, results_path)
    result = SweepResult(spec=spec, table=table, path=out, n_run=len(rows) - n_skipped,
                         n_skipped=n_skipped, is_complete=is_complete)
    if is_complete and best > 0:
        result.best_paths = write_best(spec, table, out, k=best)
    from backtester.sweep_report import write_sweep_page

    write_sweep_page(result)
    return result


def default_sweep_id(spec: SweepSpec, strategy_name: str) -> str:
    """Return ``<Strategy>-<dataset>-<spec hash>``: the same spec resumes into the same folder."""
    return f"{strategy_name}-{spec.dataset}-{spec.spec_hash()[:8]}"


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


def select_best(table: pd.DataFrame, metric: str, *, is_maximize: bool,
                k: int = 1) -> pd.DataFrame:
    """Return the top ``k`` successful rows by ``metric`` (ties keep grid order)."""
    ok = table[table["error"].isna() & table[metric].notna()]
    return ok.sort_values([metric, "run"], ascending=[not is_maximize, True],
                          kind="stable").head(k)


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
