"""Capital efficiency: what the shared pool buys, measured (issue: capital efficiency).

* :func:`capital_metrics` — return on average and on peak initial margin, margin utilization
  (IM / margin balance) and idle collateral (margin balance − IM) over time, capital velocity
  (traded notional / average margin balance, annualised) and the drag of funding and fees as a
  share of the gross return. Undefined values are None, never NaN.
* :func:`survival_collateral` — the smallest starting collateral (a multiple of the configured
  one, found by re-running the backtest, bisection to 1 %) that avoids every liquidation.
* :func:`compare_modes` — the same strategy under cross, isolated and portfolio margin, side by
  side: the table people use to choose a margin mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtester.config import MarginMode

if TYPE_CHECKING:
    from backtester.api import PreparedRun
    from backtester.results import BacktestResult

__all__ = ["Survival", "capital_metrics", "compare_modes", "survival_collateral"]

_YEAR_DAYS = 365.0


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def capital_metrics(equity: pd.DataFrame, *, traded_notional_usd: float, fees_paid: float,
                    funding_paid: float) -> dict[str, Any]:
    """Capital-efficiency metrics of a run (fractions, USD; None where undefined).

    Parameters
    ----------
    equity
        The run's per-bar frame (``equity``, ``margin_balance``, ``initial_margin``), indexed by
        UTC time.
    traded_notional_usd
        Sum of ``|qty|`` × notional of every fill, USD (options: premium value).
    fees_paid, funding_paid
        Positive = paid, USD.
    """
    out: dict[str, Any] = {}
    eq = equity["equity"].to_numpy(dtype="float64")
    pnl = float(eq[-1] - eq[0]) if len(eq) else 0.0
    im = equity["initial_margin"].to_numpy(dtype="float64")
    mb = equity["margin_balance"].to_numpy(dtype="float64")
    used = im > 0
    out["average_initial_margin"] = _finite(float(im[used].mean())) if used.any() else None
    out["peak_initial_margin"] = _finite(float(im.max())) if used.any() else None
    out["return_on_average_margin"] = _finite(pnl / out["average_initial_margin"]) \
        if out["average_initial_margin"] else None
    out["return_on_peak_margin"] = _finite(pnl / out["peak_initial_margin"]) \
        if out["peak_initial_margin"] else None
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(mb > 0, im / mb, np.nan)
    u = util[np.isfinite(util)]
    out["margin_utilization_mean"] = _finite(float(u.mean())) if len(u) else None
    out["margin_utilization_p50"] = _finite(float(np.percentile(u, 50))) if len(u) else None
    out["margin_utilization_p95"] = _finite(float(np.percentile(u, 95))) if len(u) else None
    out["margin_utilization_max"] = _finite(float(u.max())) if len(u) else None
    idle = mb - im
    out["idle_collateral_mean"] = _finite(float(idle.mean())) if len(idle) else None
    out["idle_collateral_min"] = _finite(float(idle.min())) if len(idle) else None
    days = 0.0
    if isinstance(equity.index, pd.DatetimeIndex) and len(equity) > 1:
        days = (equity.index[-1] - equity.index[0]).total_seconds() / 86_400.0
    avg_mb = float(mb.mean()) if len(mb) else 0.0
    out["traded_notional"] = traded_notional_usd
    out["capital_velocity"] = _finite(traded_notional_usd / avg_mb * _YEAR_DAYS / days) \
        if avg_mb > 0 and days > 0 else (0.0 if traded_notional_usd == 0 else None)
    gross = pnl + fees_paid + funding_paid  # the return before costs
    out["fee_drag"] = _finite(fees_paid / gross) if gross > 0 else None
    out["funding_drag"] = _finite(funding_paid / gross) if gross > 0 else None
    return out


def utilization_series(equity: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per bar: margin utilization (IM / margin balance, NaN when the balance is not positive)
    and idle collateral (margin balance − IM), USD."""
    im = equity["initial_margin"].to_numpy(dtype="float64")
    mb = equity["margin_balance"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(mb > 0, im / mb, np.nan)
    return util, mb - im


@dataclass(frozen=True, slots=True, kw_only=True)
class Survival:
    """The smallest multiple ``scale`` of the starting collateral that avoided every
    liquidation (``collateral`` = that many of each starting asset), found in ``runs``
    re-runs; ``is_bounded`` is False when even 1,024x liquidated (or no run liquidated down to
    1/1,024 of it)."""

    margin_mode: str
    scale: float
    collateral: dict[str, float]
    runs: int
    is_bounded: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"margin_mode": self.margin_mode, "scale": self.scale,
                "collateral": self.collateral, "runs": self.runs, "is_bounded": self.is_bounded}


def survival_collateral(prep: PreparedRun, base: BacktestResult, *,
                        margin_mode: MarginMode | None = None,
                        tolerance: float = 0.01) -> Survival:
    """Find, by re-running the backtest, the smallest starting collateral with no liquidation.

    The starting balances are scaled together by ``k`` (in isolated mode each position's
    allocation too, ``margin_scale = k``); the re-runs keep the run's trades by admitting
    orders without the initial-margin check, so only maintenance decides. ``k`` is bracketed by
    doubling or halving from 1 and then bisected until ``(hi - lo) / hi <= tolerance``.
    Liquidation counts need not be monotonic in ``k`` for an arbitrary strategy (sizing may
    follow equity); the result is the boundary the bisection finds.
    """
    from backtester.api import run_prepared

    mode = margin_mode or prep.config.margin_mode
    start = prep.config.collateral or {prep.profile.quote_asset:
                                       prep.profile.default_collateral}
    runs = 0

    def liquidated(k: float) -> bool:
        nonlocal runs
        runs += 1
        coll = {a: str(v * _dec(k)) for a, v in start.items()}
        scale = k if mode is MarginMode.ISOLATED else 1.0
        r = run_prepared(prep, margin_mode=mode, collateral=coll, check_initial_margin=False,
                         margin_scale=scale, compare_margin_modes=False,
                         survival_collateral=False)
        return bool(r.metrics["liquidations"])

    base_liq = liquidated(1.0)
    lo, hi = (1.0, None) if base_liq else (None, 1.0)
    k = 1.0
    bounded = True
    for _ in range(10):
        if hi is None:
            k *= 2.0
            if liquidated(k):
                lo = k
            else:
                hi = k
        elif lo is None:
            k /= 2.0
            if liquidated(k):
                lo = k
            else:
                hi = k
        else:
            break
    if lo is None or hi is None:
        bounded = False
        lo = lo or 0.0
        hi = hi or k
    while lo is not None and hi is not None and bounded and (hi - lo) / hi > tolerance:
        mid = 0.5 * (lo + hi)
        if liquidated(mid):
            lo = mid
        else:
            hi = mid
    scale = float(hi)
    return Survival(margin_mode=mode.value, scale=scale,
                    collateral={a: float(v) * scale for a, v in start.items()}, runs=runs,
                    is_bounded=bounded)


def _usd(prep: PreparedRun, s: Survival) -> float:
    # value of the survival collateral at the first bar's index prices
    total = 0.0
    for asset, amount in s.collateral.items():
        if prep.feed.is_stable(asset):
            total += amount
        else:
            f = prep.feed.index_feeds.get(asset)
            total += amount * (float(f.arrays["index_close"][0]) if f is not None else 0.0)
    return total


def _dec(x: float) -> Any:
    from backtester.numeric import dec

    return dec(x)


def compare_modes(prep: PreparedRun, result: BacktestResult) -> None:
    """Run the other margin modes and attach ``result.comparison`` (one row per mode) and the
    other runs as ``result.meta["alternatives"]``."""
    from backtester.api import run_prepared

    first = prep.config.margin_mode
    results = {first.value: result}
    for mode in (MarginMode.CROSS, MarginMode.ISOLATED, MarginMode.PORTFOLIO):
        if mode is not first:
            results[mode.value] = run_prepared(prep, margin_mode=mode,
                                               compare_margin_modes=False)
    survival: dict[str, Survival] = {}
    if prep.config.survival_collateral:
        for mode_name, r in results.items():
            survival[mode_name] = survival_collateral(prep, r, margin_mode=MarginMode(mode_name))
            r.meta["survival_collateral"] = survival[mode_name].as_dict()
    rows = []
    for mode_name, r in results.items():
        m = r.metrics
        s = survival.get(mode_name)
        rows.append({"margin_mode": mode_name, "total_return": m["total_return"],
                     "max_drawdown": m["max_drawdown"], "liquidations": m["liquidations"],
                     "margin_calls": m["margin_calls"],
                     "return_on_average_margin": m.get("return_on_average_margin"),
                     "average_initial_margin": m.get("average_initial_margin"),
                     "survival_collateral_scale": None if s is None else s.scale,
                     "survival_collateral_usd": None if s is None else _usd(prep, s),
                     "min_distance_to_liquidation": m["min_distance_to_liquidation"],
                     "fees_paid": m["fees_paid"], "funding_paid": m["funding_paid"]})
    result.comparison = pd.DataFrame(rows)
    result.meta["alternatives"] = {k: v for k, v in results.items() if k != first.value}
