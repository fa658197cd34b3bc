"""The report's "capital" section: what the collateral pool bought (backtester.runs.capital).

Reads the per-bar capital columns of ``equity.parquet`` (``wallet``, ``available``,
``margin_utilization``, ``idle_collateral``, ``portfolio_initial_margin``), the capital metrics of
``metrics.json`` and the capital columns of ``comparison.csv``. Every part that has no data
says so in a note, so the section is always present.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtester.report._html import fmt, note, table
from backtester.report._load import RunData
from backtester.report.charts import figure_html, histogram_figure, line_figure

__all__ = ["CAPITAL_METRICS", "capital"]

#: ``(metrics.json key, label, unit)``; unit "%" = fraction shown as a percent, "USD" or "×".
CAPITAL_METRICS = (
    ("return_on_average_margin", "return on average initial margin", "%"),
    ("return_on_peak_margin", "return on peak initial margin", "%"),
    ("average_initial_margin", "average initial margin (bars with IM > 0)", "USD"),
    ("peak_initial_margin", "peak initial margin", "USD"),
    ("margin_utilization_mean", "margin utilization, mean (IM / margin balance)", "%"),
    ("margin_utilization_p50", "margin utilization, median", "%"),
    ("margin_utilization_p95", "margin utilization, 95th percentile", "%"),
    ("margin_utilization_max", "margin utilization, max", "%"),
    ("idle_collateral_mean", "idle collateral, mean (margin balance − IM)", "USD"),
    ("idle_collateral_min", "idle collateral, min", "USD"),
    ("traded_notional", "traded notional", "USD"),
    ("capital_velocity", "capital velocity (traded notional / avg margin balance, per year)",
     "×"),
    ("fee_drag", "fee drag (fees / return before costs)", "%"),
    ("funding_drag", "funding drag (funding paid / return before costs)", "%"),
    ("portfolio_to_standard_margin", "portfolio IM / standard IM (mean, option books)", "%"),
)

#: Columns of ``comparison.csv`` shown here, in order (those present).
_COMPARISON_COLS = ("margin_mode", "total_return", "return_on_average_margin",
                    "average_initial_margin", "survival_collateral_scale",
                    "survival_collateral_usd", "liquidations", "min_distance_to_liquidation")
_COMPARISON_PCT = ("total_return", "return_on_average_margin", "min_distance_to_liquidation")


def _col(run: RunData, name: str) -> pd.Series:
    if name in run.equity.columns:
        return pd.to_numeric(run.equity[name], errors="coerce").astype("float64")
    return pd.Series(np.nan, index=run.equity.index, dtype="float64")


def _has(run: RunData, name: str) -> bool:
    return name in run.equity.columns and bool(np.isfinite(_col(run, name).to_numpy()).any())


def _metrics_table(run: RunData) -> str:
    m = run.metrics
    rows = [{"metric": label, "value": fmt(m.get(key), percent=unit == "%")
             + (" USD" if unit == "USD" and m.get(key) is not None else "")
             + ("×" if unit == "×" and m.get(key) is not None else "")}
            for key, label, unit in CAPITAL_METRICS
            if key in m or key != "portfolio_to_standard_margin"]
    if not any(key in m for key, _, _ in CAPITAL_METRICS):
        return note("this run's metrics.json holds no capital-efficiency numbers (written by an "
                    "older version of backtester); re-run to add them")
    return note("'—' = undefined (no margin was used, or no positive return before costs). "
                "Drags are shares of the return before fees and funding.") \
        + table(pd.DataFrame(rows), sortable=False)


def _session_note(run: RunData) -> str:
    j = run.journal
    if j.empty or "ledger" not in j.columns:
        return ""
    session = j[j["ledger"].astype(str) == "session"]
    if session.empty:
        return ""
    return note(f"{len(session):,} journal entries were booked to the session ledger: their "
                "PnL counts in equity at once but reaches the wallet only at the daily "
                "settlement (08:00 UTC for Deribit), which is when the wallet line steps.")


def _comparison(run: RunData) -> str:
    cmp_ = run.comparison
    if cmp_ is None:
        return note("no margin-mode comparison in this run (run with --compare-margin-modes "
                    "to compare return on margin and survival collateral across modes)")
    cols = [c for c in _COMPARISON_COLS if c in cmp_.columns]
    frame = cmp_.loc[:, cols]
    parts = ["<h3>Capital by margin mode</h3>", table(frame, sortable=False,
                                                      percent=_COMPARISON_PCT)]
    surv = [c for c in ("survival_collateral_scale", "survival_collateral_usd") if c in cols]
    if not surv or frame[surv].isna().all().all():
        parts.append(note("survival collateral not computed (run with --compare-margin-modes "
                          "--survival-collateral to find the smallest starting collateral "
                          "with no liquidation in each mode)"))
    else:
        parts.append(note("survival collateral: the smallest multiple of the starting "
                          "collateral (and its USD value at the first bar) with no liquidation, "
                          "found by re-running the backtest"))
    return "".join(parts)


def capital(run: RunData) -> str:
    """Render the capital-efficiency section of ``run`` (HTML fragment)."""
    parts = ["<h3>Capital-efficiency metrics</h3>", _metrics_table(run)]
    if run.equity.empty:
        parts.append(note("no steps were recorded"))
        parts.append(_comparison(run))
        return "".join(parts)
    if _has(run, "wallet") or _has(run, "available"):
        parts.append(figure_html(line_figure(
            {"equity": _col(run, "equity"), "wallet balance": _col(run, "wallet"),
             "available (free for new margin)": _col(run, "available")},
            title="Wallet balance vs equity vs available: when profit becomes usable collateral",
            yaxis="USD"), "fig-capital-wallet"))
        parts.append(_session_note(run))
    else:
        parts.append(note("this run recorded no wallet / available balance per step"))
    util = _col(run, "margin_utilization").replace([np.inf, -np.inf], np.nan)
    if not _has(run, "margin_utilization") and _has(run, "margin_balance"):
        mb, im = _col(run, "margin_balance"), _col(run, "initial_margin")
        util = (im / mb).where(mb > 0)
    if np.isfinite(util.to_numpy()).any():
        parts.append(figure_html(line_figure(
            {"margin utilization (IM / margin balance)": util},
            title="Margin utilization (blank = margin balance ≤ 0)", yaxis="", how="max",
            percent=True), "fig-capital-utilization"))
        parts.append(figure_html(histogram_figure(
            util, title="Distribution of margin utilization", xaxis="IM / margin balance",
            percent=True), "fig-capital-utilization-hist"))
    else:
        parts.append(note("no margin utilization to show (no step had a positive margin "
                          "balance)"))
    idle = _col(run, "idle_collateral")
    if not _has(run, "idle_collateral") and _has(run, "margin_balance"):
        idle = _col(run, "margin_balance") - _col(run, "initial_margin")
    if np.isfinite(idle.to_numpy()).any():
        parts.append(figure_html(line_figure(
            {"idle collateral (margin balance − IM)": idle},
            title="Idle collateral", yaxis="USD", how="min"), "fig-capital-idle"))
    if _has(run, "portfolio_initial_margin"):
        parts.append(figure_html(line_figure(
            {"standard IM (summed per position)": _col(run, "initial_margin"),
             "portfolio IM (netted scenario grid)": _col(run, "portfolio_initial_margin")},
            title="Standard vs portfolio initial margin (blank = no options held)",
            yaxis="USD"), "fig-capital-portfolio-im"))
        ratio = run.metrics.get("portfolio_to_standard_margin")
        if isinstance(ratio, int | float):
            parts.append(note(f"on average the portfolio requirement was "
                              f"{fmt(float(ratio), percent=True)} of the standard one"))
    parts.append(_comparison(run))
    return "".join(parts)
