"""Stress testing: correlated shocks, smallest liquidating crash, distance, Monte Carlo.

``stress_test(source)`` reads an account — a run folder (its ``state.json``, plus
``positions.parquet`` for the Monte Carlo and ``equity.parquet`` for the per-bar distance to
liquidation) or a calculator snapshot (a ``SNAPSHOT.json`` path or a mapping) — and answers:

* named historical scenarios (``scenarios.json``) and user grids: equity, margin state and
  which positions the profile would liquidate after each shock (:mod:`backtester.risk.shock`);
* the nearest liquidating move: each non-stable underlying alone (the others held at their
  marks) and all of them together, each searched down and up; the nearest of them is the
  headline (which underlying, which direction). The smallest uniform crash of every asset and
  of BTC alone stay as they were (the ``down`` rows of the same searches);
* the distance to liquidation at every bar of the run (``equity.parquet``);
* the liquidation probability over a horizon from block-bootstrapped paths
  (:mod:`backtester.risk.montecarlo`).

Amounts are in the calculator's valuation currency; moves are fractions (``-0.1`` = −10 %).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from backtester.errors import ConfigError, DataError
from backtester.margin.calculator import evaluate
from backtester.margin.status import MarginStatus
from backtester.risk.montecarlo import (
    MonteCarloResult,
    liquidation_probability,
    returns_from_positions,
)
from backtester.risk.scenarios import Grid, Scenario, grid_scenarios, load_scenarios
from backtester.risk.shock import (
    FALL_LIMIT,
    RISE_LIMIT,
    Direction,
    ShockResult,
    account_equity,
    assets_of,
    judge,
    liquidated_positions,
    shock,
    smallest_crash,
    smallest_move,
)
from backtester.timeutil import ms_to_iso, timeframe_ms

__all__ = [
    "LIQUIDATION_RULE",
    "NEAREST_RULE",
    "CrashResult",
    "Direction",
    "DistanceSeries",
    "Grid",
    "LoadedSnapshot",
    "MonteCarloResult",
    "NearestLiquidation",
    "Scenario",
    "ShockResult",
    "StressReport",
    "liquidated_positions",
    "load_scenarios",
    "load_snapshot",
    "nearest_liquidation",
    "shock",
    "smallest_crash",
    "stress_test",
]


#: How ``liquidated`` lists are decided (see :func:`backtester.risk.shock.liquidated_positions`).
LIQUIDATION_RULE = (
    "cross/portfolio: when the status is liquidate, whole positions are closed at mark in the "
    "engine's order (perps and futures before options, then the largest maintenance margin) "
    "until the account is no longer liquidating; isolated: positions whose liquidation price "
    "is crossed by their mark. Fees, slippage and partial slices are not modelled.")

#: How the nearest liquidating move is searched (see :func:`nearest_liquidation`).
NEAREST_RULE = (
    "each non-stable underlying alone (every other price held at its mark) and all of them "
    f"together, moved down to {-FALL_LIMIT:.0%} and up to {RISE_LIMIT:+,.0%}: scan in 1% steps "
    "(10% steps above +100%), first crossing from 0, then bisection to 0.01%; the headline is "
    "the smallest absolute move (ties: a single underlying before all together, down before "
    "up). Options are repriced at held vol; marks only, no fees.")

#: ``underlying`` of a move of every non-stable asset together.
ALL = "all"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedSnapshot:
    """An account to stress: the calculator ``snapshot`` and, for a run folder, its frames.

    ``notes`` carries remarks about the loaded account into the report (none are added when
    loading: a run's state.json already holds every tier table the engine used).
    """

    snapshot: Mapping[str, object]
    run_dir: Path | None = None
    positions: pd.DataFrame | None = None
    equity: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashResult:
    """Smallest move of ``assets`` (together, the others held) that liquidates the account.

    ``direction`` is ``down`` (``move`` negative: ``-0.0955`` = a 9.55 % fall; searched to
    −99 %) or ``up`` (``move`` positive: ``+0.19`` = a 19 % rise; searched to +1,000 %).
    ``move`` is 0.0 when already liquidating and None when no move in range liquidates.
    ``underlying`` names what moved: an asset (``"BTC"``, moved alone) or ``"all"`` (every
    non-stable asset of the account together). ``liquidated`` are the positions liquidated at
    ``move``.
    """

    assets: tuple[str, ...]
    move: float | None
    liquidated: tuple[str, ...]
    direction: Direction = Direction.DOWN
    underlying: str = ALL


@dataclass(frozen=True, slots=True, kw_only=True)
class NearestLiquidation:
    """The nearest liquidating moves of an account, and the nearest of them.

    ``moves`` holds, in order, every non-stable asset together (``underlying == "all"``, only
    when the account has more than one) and then each asset alone (sorted), each ``down`` then
    ``up``. ``nearest`` is the one with the smallest absolute move — ties go to the move of
    fewer underlyings (one alone suffices), then down before up; an account already liquidating
    has every move 0.0 and ``nearest`` is the first row. None when no move in range liquidates
    the account — a hedged book may survive every uniform move and liquidate on one leg alone.
    """

    moves: tuple[CrashResult, ...]
    nearest: CrashResult | None

    def get(self, underlying: str, direction: Direction) -> CrashResult | None:
        """Return the move of ``underlying`` (an asset or ``"all"``) in ``direction``."""
        for c in self.moves:
            if c.underlying == underlying and c.direction is direction:
                return c
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class DistanceSeries:
    """Distance to liquidation per bar (signed uniform move; inf = none in range)."""

    ts_ms: tuple[int, ...]
    distance: tuple[float, ...]

    @property
    def minimum(self) -> float | None:
        """The smallest absolute distance (signed), None when no bar has a finite one."""
        finite = [d for d in self.distance if math.isfinite(d)]
        return min(finite, key=abs) if finite else None


@dataclass(frozen=True, slots=True, kw_only=True)
class StressReport:
    """Everything :func:`stress_test` found (see the module docstring)."""

    source: str
    profile: str
    mode: str
    time: str | None
    valuation_currency: str
    equity: float
    status: MarginStatus
    scenarios: tuple[ShockResult, ...]
    smallest_crash: CrashResult
    smallest_btc_crash: CrashResult | None
    nearest_liquidation: NearestLiquidation
    distance: DistanceSeries | None
    monte_carlo: MonteCarloResult | None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict (inf and NaN become null; times as ISO 8601 UTC)."""
        out: dict[str, object] = {
            "source": self.source, "profile": self.profile, "mode": self.mode,
            "time": self.time, "valuation_currency": self.valuation_currency,
            "equity": self.equity, "status": self.status,
            "scenarios": [_clean(asdict(s)) for s in self.scenarios],
            "smallest_crash": _clean(asdict(self.smallest_crash)),
            "smallest_btc_crash": (None if self.smallest_btc_crash is None
                                   else _clean(asdict(self.smallest_btc_crash))),
            "nearest_liquidation": {
                "nearest": (None if self.nearest_liquidation.nearest is None
                            else _clean(asdict(self.nearest_liquidation.nearest))),
                "moves": [_clean(asdict(c)) for c in self.nearest_liquidation.moves],
                "limits": {"down": -FALL_LIMIT, "up": RISE_LIMIT},
                "rule": NEAREST_RULE,
            },
            "distance_to_liquidation": None,
            "monte_carlo": None if self.monte_carlo is None else _clean(asdict(self.monte_carlo)),
            "notes": list(self.notes),
            "liquidation_rule": LIQUIDATION_RULE,
        }
        if self.distance is not None:
            minimum = self.distance.minimum
            at = (None if minimum is None
                  else self.distance.ts_ms[self.distance.distance.index(minimum)])
            out["distance_to_liquidation"] = {
                "minimum": minimum, "minimum_time": None if at is None else ms_to_iso(at),
                "series": [[ms_to_iso(t), _finite(d)]
                           for t, d in zip(self.distance.ts_ms, self.distance.distance,
                                           strict=True)]}
        return out

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (a file, or ``stress.json`` in a folder)."""
        target = Path(path)
        if target.is_dir():
            target = target / "stress.json"
        target.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        return target


def _finite(x: object) -> object:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _clean(obj: object) -> object:
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return _finite(obj)


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        msg = f"{path}: not valid JSON ({exc})"
        raise ConfigError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object (a margin snapshot, DESIGN §4)"
        raise ConfigError(msg)
    return data


def load_snapshot(path: str | Path) -> LoadedSnapshot:
    """Read a run folder (``state.json`` + frames) or a calculator ``SNAPSHOT.json``.

    Raises
    ------
    ConfigError
        When the file is not a JSON object; DataError when a run folder lacks state.json.
    """
    p = Path(path)
    if p.is_dir():
        state = p / "state.json"
        if not state.exists():
            msg = (f"{p}: no state.json; give a run folder written by 'backtester run' or a "
                   "SNAPSHOT.json")
            raise DataError(msg)
        snap = _read_json(state)
        frames = {}
        for name in ("positions", "equity"):
            f = p / f"{name}.parquet"
            frames[name] = pd.read_parquet(f) if f.exists() else None
        return LoadedSnapshot(snapshot=snap, run_dir=p, positions=frames["positions"],
                              equity=frames["equity"])
    if not p.exists():
        msg = f"{p}: no such run folder or snapshot file"
        raise ConfigError(msg)
    snap = _read_json(p)
    return LoadedSnapshot(snapshot=snap)


def distance_series(equity: pd.DataFrame) -> DistanceSeries | None:
    """Read the per-bar distance to liquidation written by the run (``equity.parquet``)."""
    if "distance_to_liquidation" not in equity.columns:
        return None
    frame = equity.reset_index() if "ts" not in equity.columns else equity
    ts = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).to_numpy()
    ts_ms = ts.astype("datetime64[ms]").astype(np.int64)
    dist = frame["distance_to_liquidation"].to_numpy(dtype=np.float64)
    return DistanceSeries(ts_ms=tuple(int(t) for t in ts_ms),
                          distance=tuple(float(d) for d in dist))


def _horizon_bars(horizon: str | int, bar_ms: int) -> int:
    if isinstance(horizon, int):
        return horizon
    try:
        ms = timeframe_ms(horizon)
    except ValueError:
        msg = (f"horizon: expected a duration such as '7d', '12h' or a number of bars, "
               f"got {horizon!r}")
        raise ConfigError(msg) from None
    return max(1, round(ms / bar_ms))


def _crash(snapshot: Mapping[str, object], assets: tuple[str, ...], *,
           direction: Direction = Direction.DOWN, underlying: str = ALL) -> CrashResult:
    move = smallest_move(snapshot, assets, direction=direction)
    liquidated: tuple[str, ...] = ()
    if move is not None:
        shocked = shock(snapshot, dict.fromkeys(assets, move))
        liquidated = liquidated_positions(shocked)
    return CrashResult(assets=assets, move=move, liquidated=liquidated, direction=direction,
                       underlying=underlying)


def nearest_liquidation(snapshot: Mapping[str, object]) -> NearestLiquidation:
    """Search the nearest liquidating move of each underlying alone and of all together.

    For every non-stable asset of ``snapshot`` (:func:`backtester.risk.shock.assets_of`) the
    asset alone is moved — its perp/future marks and indexes, option underlyings (options
    repriced at held vol) and its collateral — with every other price held at its mark; and,
    when there is more than one, all of them together by the same fraction. Each is searched
    down (to −99 %) and up (to +1,000 %) by :func:`backtester.risk.shock.smallest_move`. See
    :class:`NearestLiquidation` for the order and the headline.
    """
    assets = assets_of(snapshot)
    groups = ([(ALL, assets)] if len(assets) > 1 else []) + [(a, (a,)) for a in assets]
    moves = tuple(_crash(snapshot, names, direction=d, underlying=label)
                  for label, names in groups for d in (Direction.DOWN, Direction.UP))
    found = [c for c in moves if c.move is not None]
    if not assets:
        # nothing to move: liquidating already (a liability in the pool) or never
        found = [c for c in (_crash(snapshot, ()),) if c.move is not None]
    # ties: the move of fewer underlyings (one alone suffices), then the earlier (min keeps
    # the first); at 0.0 (already liquidating) every row ties and the first (all, down) stands
    nearest = min(found, key=lambda c: (abs(c.move or 0.0), len(c.assets) if c.move else 0),
                  default=None)
    return NearestLiquidation(moves=moves, nearest=nearest)


def stress_test(source: str | Path | Mapping[str, object] | LoadedSnapshot, *,
                scenarios: Sequence[str | Scenario] | None = None,
                grid: Grid | None = None, monte_carlo: int = 0,
                horizon: str | int = "7d", seed: int = 0, block_bars: int | None = None,
                checkpoints: int = 4,
                progress: Callable[[int, int], None] | None = None) -> StressReport:
    """Stress an account and return a :class:`StressReport` (nothing is written).

    Parameters
    ----------
    source
        A run folder, a ``SNAPSHOT.json`` path, a snapshot mapping or a :class:`LoadedSnapshot`.
    scenarios
        Names from ``scenarios.json`` or :class:`Scenario` objects; None runs every named
        scenario, ``[]`` none.
    grid
        A user grid (BTC moves × betas × vol moves), appended after the named scenarios.
    monte_carlo
        Number of Monte Carlo paths (0 = skip). Needs a run folder's ``positions.parquet``.
    horizon
        Monte Carlo horizon: a duration (``"7d"``, ``"12h"``) or a number of bars.
    seed, block_bars, checkpoints, progress
        See :func:`backtester.risk.montecarlo.liquidation_probability`.
    """
    if isinstance(source, LoadedSnapshot):
        loaded = source
    elif isinstance(source, Mapping):
        loaded = LoadedSnapshot(snapshot=dict(source))
    else:
        loaded = load_snapshot(source)
    snap = loaded.snapshot
    base = evaluate(snap)
    base_equity = account_equity(snap, base)
    named = load_scenarios()
    chosen: list[Scenario] = []
    for s in (named.values() if scenarios is None else scenarios):
        if isinstance(s, Scenario):
            chosen.append(s)
        elif s in named:
            chosen.append(named[s])
        else:
            msg = f"scenario {s!r}: unknown; expected one of {', '.join(sorted(named))}"
            raise ConfigError(msg)
    if grid is not None:
        chosen.extend(grid_scenarios(grid))
    results = tuple(judge(snap, name=s.name, moves=s.moves, vol_moves=s.vol_moves,
                          base_equity=base_equity) for s in chosen)
    assets = assets_of(snap)
    nearest = nearest_liquidation(snap)
    # the legacy fields are the down rows of the same searches (one asset: itself is "all")
    crash = nearest.get(ALL, Direction.DOWN)
    if crash is None:
        alone = nearest.get(assets[0], Direction.DOWN) if assets else None
        crash = _crash(snap, ()) if alone is None else replace(alone, underlying=ALL)
    btc = nearest.get("BTC", Direction.DOWN) if len(assets) > 1 else None
    notes = list(loaded.notes)
    mc = None
    if monte_carlo > 0:
        if loaded.positions is None:
            msg = ("monte carlo: needs a run folder with positions.parquet (the run's own "
                   "returns); a snapshot alone has no history")
            raise ConfigError(msg)
        sample = returns_from_positions(loaded.positions)
        missing = [a for a in assets if a not in sample.assets]
        if missing:
            notes.append(f"monte carlo: no return history for {', '.join(missing)}; held still")
        mc = liquidation_probability(snap, sample, n_paths=monte_carlo,
                                     horizon_bars=_horizon_bars(horizon, sample.bar_ms),
                                     seed=seed, block_bars=block_bars, checkpoints=checkpoints,
                                     progress=progress)
    distance = None if loaded.equity is None else distance_series(loaded.equity)
    source_name = (str(loaded.run_dir) if loaded.run_dir is not None
                   else str(source) if isinstance(source, str | Path) else "snapshot")
    return StressReport(source=source_name, profile=str(snap.get("profile")),
                        mode=str(snap.get("mode") or "cross"),
                        time=None if snap.get("time") is None else str(snap.get("time")),
                        valuation_currency=str(base["valuation_currency"]),
                        equity=base_equity, status=MarginStatus(str(base["status"])),
                        scenarios=results,
                        smallest_crash=crash, smallest_btc_crash=btc,
                        nearest_liquidation=nearest,
                        distance=distance, monte_carlo=mc, notes=tuple(notes))
