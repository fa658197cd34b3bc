"""BacktestResult: frames, metrics and files of one run (DESIGN §8).

Files written to ``reports/<run-id>/``: ``equity.parquet``, ``trades.parquet`` (fills),
``orders.parquet``, ``journal.parquet``, ``positions.parquet`` (positions per bar),
``events.json``, ``metrics.json``, ``state.json`` (the final account as a margin-calculator
snapshot), ``config.json`` (config hash, data fingerprint, package version).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester.data.store import atomic_write_bytes

__all__ = ["BacktestResult", "compute_metrics", "daily_closes"]

_YEAR_DAYS = 365.0


def _json_ready(value: Any) -> Any:
    # JSON has no infinity or NaN: non-finite floats (a margin ratio with no margin balance
    # left, say) are written as null
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def compute_metrics(equity: pd.Series, *, fills: pd.DataFrame, fees_paid: float,
                    funding_paid: float, liquidations: int, margin_calls: int,
                    min_distance: float | None, max_margin_ratio: float | None) -> dict[str, Any]:
    """Headline metrics on a 365-day year, from daily UTC closes of the equity curve.

    Returns JSON-ready values: fractions (not percent); undefined values are None, never NaN.
    ``fees_paid`` and ``funding_paid`` are in the valuation currency, positive = paid.
    """
    out: dict[str, Any] = {}
    eq = equity.dropna() if equity.isna().any() else equity
    if eq.empty:
        eq = pd.Series([0.0])
    start, end = float(eq.iloc[0]), float(eq.iloc[-1])
    out["total_return"] = _finite(end / start - 1.0) if start > 0 else None
    daily = daily_closes(eq) if isinstance(eq.index, pd.DatetimeIndex) else eq
    wiped = bool((eq <= 0).any())
    rets = daily.pct_change().dropna() if not wiped else daily.clip(lower=0).pct_change().dropna()
    rets = rets.replace([np.inf, -np.inf], np.nan).dropna()
    span_days = ((eq.index[-1] - eq.index[0]).total_seconds() / 86400.0
                 if isinstance(eq.index, pd.DatetimeIndex) and len(eq) > 1 else 0.0)
    years = span_days / _YEAR_DAYS
    if years > 0 and start > 0 and end > 0:
        growth = math.log(end / start) / years
        out["cagr"] = _finite(math.expm1(growth)) if growth < 700 else None
    elif start > 0 and end <= 0:
        out["cagr"] = -1.0
    else:
        out["cagr"] = None
    vol = float(rets.std(ddof=1)) * math.sqrt(_YEAR_DAYS) if len(rets) > 1 else None
    out["volatility"] = _finite(vol) if vol is not None else None
    mean = float(rets.mean()) if len(rets) else 0.0
    out["sharpe"] = _finite(mean / float(rets.std(ddof=1)) * math.sqrt(_YEAR_DAYS)) \
        if len(rets) > 1 and float(rets.std(ddof=1)) > 0 else None
    downside = rets[rets < 0]
    dd_dev = math.sqrt(float((downside ** 2).sum()) / len(rets)) if len(rets) else 0.0
    out["sortino"] = _finite(mean / dd_dev * math.sqrt(_YEAR_DAYS)) if dd_dev > 0 else None
    mdd = _max_drawdown(eq.to_numpy(dtype="float64"))
    out["max_drawdown"] = max(mdd, -1.0)
    out["calmar"] = _finite(out["cagr"] / abs(mdd)) if out["cagr"] is not None and mdd < 0 \
        else None
    closing = fills[fills["realized_pnl"] != 0] if len(fills) else fills
    out["trades"] = len(fills)
    out["win_rate"] = _finite(float((closing["realized_pnl"] > 0).mean())) if len(closing) \
        else None
    out["fees_paid"] = fees_paid
    out["funding_paid"] = funding_paid
    out["liquidations"] = liquidations
    out["margin_calls"] = margin_calls
    out["min_distance_to_liquidation"] = min_distance
    out["max_margin_ratio"] = max_margin_ratio
    out["is_wiped_out"] = wiped
    return out


_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def daily_closes(eq: pd.Series) -> pd.Series:
    """Return the close of each UTC day of a series stamped at bar closes, labelled by day.

    Steps are stamped with the close time of their bars (DESIGN §2), so the value stamped
    D+1 00:00 is the close of day D: day D holds the stamps in ``(D 00:00, D+1 00:00]``. A run
    ending at 2026-01-01 00:00 therefore ends on day 2025-12-31, not on a one-bar "day" (and
    calendar year) 2026. Days without a stamp are left out. Equal to
    ``eq.resample("1D", closed="right", label="left").last().dropna()``.

    >>> idx = pd.DatetimeIndex(["2025-12-31 23:00", "2026-01-01 00:00"], tz="UTC")
    >>> daily_closes(pd.Series([1.0, 2.0], index=idx))
    2025-12-31 00:00:00+00:00    2.0
    dtype: float64
    """
    # one search per day boundary instead of grouping every bar (no bar-sized temporaries)
    idx = eq.index
    per_day = _PER_DAY.get(str(getattr(idx, "unit", "")))
    utc = idx.tz is None or str(idx.tz) == "UTC"  # days are UTC days (or naive ones)
    if per_day is None or not utc or not len(eq) or not idx.is_monotonic_increasing:
        return eq.resample("1D", closed="right", label="left").last().dropna()
    ts = idx.asi8
    # the day of a stamp t is the one ending at or after it: (t - 1) // per_day
    first, last = (int(ts[0]) - 1) // per_day, (int(ts[-1]) - 1) // per_day
    edges = np.arange(first + 1, last + 2, dtype="int64") * per_day  # each day's end
    ends = np.searchsorted(ts, edges, side="right")  # one past each day's last stamp
    starts = np.concatenate(([0], ends[:-1]))
    has = ends > starts
    values = eq.to_numpy()[ends[has] - 1]
    days = pd.DatetimeIndex((edges[has] - per_day).view(f"datetime64[{idx.unit}]"),
                            dtype=idx.dtype)
    return pd.Series(values, index=days).dropna()


_DRAWDOWN_BLOCK = 1 << 16


def _max_drawdown(v: np.ndarray) -> float:
    # min of (eq / running peak - 1) where the peak is positive (0 elsewhere), NaN skipped: the
    # pandas (eq / eq.cummax() - 1).where(peak > 0, 0).min(), block by block with the running
    # peak carried over (the same numbers; block-sized temporaries, not bar-sized ones). A NaN
    # makes every later peak NaN, as np.maximum.accumulate over the whole series does.
    if not len(v):
        return 0.0
    worst = np.nan
    run = -np.inf
    for a in range(0, len(v), _DRAWDOWN_BLOCK):
        blk = v[a:a + _DRAWDOWN_BLOCK]
        peak = np.maximum.accumulate(blk)
        np.maximum(peak, run, out=peak)
        run = peak[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = blk / peak
        dd -= 1.0
        dd[~(peak > 0)] = 0.0
        worst = np.fmin(worst, np.fmin.reduce(dd))
    return float(worst)


@dataclass(slots=True, kw_only=True)
class BacktestResult:
    """What a run produced. ``equity`` is indexed by clock step time (UTC) and holds the
    account series in USD; other frames are flat tables; ``metrics`` the headline numbers."""

    strategy: str
    config: dict[str, Any]
    equity: pd.DataFrame
    fills: pd.DataFrame
    orders: pd.DataFrame
    journal: pd.DataFrame
    positions: pd.DataFrame
    records: pd.DataFrame
    events: list[dict[str, Any]]
    rejections: pd.DataFrame
    metrics: dict[str, Any]
    state: dict[str, Any]
    warnings: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    comparison: pd.DataFrame | None = None
    path: Path | None = None

    def write(self, path: str | Path) -> Path:
        """Write every file of the run folder (atomically, file by file) and return it."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        frames = {"equity": self.equity.reset_index(), "trades": self.fills,
                  "orders": self.orders, "journal": self.journal, "positions": self.positions,
                  "records": self.records.reset_index(), "rejections": self.rejections}
        for name, frame in frames.items():
            tmp = out / f".{name}.parquet.tmp"
            frame.to_parquet(tmp, index=False)
            tmp.replace(out / f"{name}.parquet")
        if self.comparison is not None:
            self.comparison.to_csv(out / "comparison.csv", index=False)
        if "final_margin" in self.meta:
            atomic_write_bytes(out / "margin.json", json.dumps(
                self.meta["final_margin"], indent=2, sort_keys=True, default=str,
                allow_nan=False).encode())
        for name, payload in (("metrics", self.metrics), ("state", self.state),
                              ("events", _json_ready(self.events)), ("warnings", self.warnings),
                              ("config", {**self.config, **{k: v for k, v in self.meta.items()
                                                            if k not in ("alternatives",
                                                                         "final_margin")}})):
            atomic_write_bytes(out / f"{name}.json",
                               json.dumps(payload, indent=2, sort_keys=True, default=str,
                                          allow_nan=False).encode())
        self.path = out
        return out
