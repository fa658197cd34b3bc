"""A sweep's grid and spec: parameter ranges parsed from ``name=a:b:step`` items, the
swept run configuration keys, the metrics every run reports and the hash of one run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from backtester.errors import ConfigError

__all__ = ["MAX_GRID_RUNS", "METRICS", "RUN_KEY_PREFIX", "SWEEPABLE_RUN_KEYS", "SweepSpec",
           "expand_grid", "param_hash", "parse_grid", "sample_grid", "split_params"]

#: Metrics copied into each summary row (keys of ``BacktestResult.metrics``).
METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
           "trades", "win_rate", "fees_paid", "funding_paid", "liquidations", "margin_calls",
           "min_distance_to_liquidation", "max_margin_ratio", "is_wiped_out")
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
