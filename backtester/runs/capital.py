"""Capital efficiency: what the shared pool buys, measured (issue: capital efficiency).

* :func:`capital_metrics` — return on average and on peak initial margin, margin utilization
  (IM / margin balance) and idle collateral (margin balance − IM) over time, capital velocity
  (traded notional / average margin balance, annualised) and the drag of funding and fees as a
  share of the gross return. Undefined values are None, never NaN.

Survival collateral and the margin-mode comparison (which re-run backtests) are in
:mod:`backtester.runs.modes`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["capital_metrics", "utilization_series"]

_YEAR_DAYS = 365.0


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def capital_metrics(equity: pd.DataFrame, *, traded_notional_usd: float, fees_paid: float,
                    funding_paid: float,
                    series: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
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
    series
        The frame's :func:`utilization_series` when already computed (not recomputed then).
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
    util, idle = series if series is not None else utilization_series(equity)
    u = util[np.isfinite(util)]
    del util
    out["margin_utilization_mean"] = _finite(float(u.mean())) if len(u) else None
    mx = _finite(float(u.max())) if len(u) else None
    # percentiles last: they may reorder u in place (no second copy of it)
    p50, p95 = (float(x) for x in np.percentile(u, [50, 95], overwrite_input=True)) \
        if len(u) else (None, None)
    out["margin_utilization_p50"] = _finite(p50)
    out["margin_utilization_p95"] = _finite(p95)
    out["margin_utilization_max"] = mx
    del u
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
    util = np.full(len(mb), np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(im, mb, out=util, where=mb > 0)  # one array, no quotient temporary
    return util, mb - im
