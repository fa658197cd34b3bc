"""Margin modes compared, and the collateral a run needed: backtests re-run with other settings.

* :func:`survival_collateral` — the smallest starting collateral (a multiple of the configured
  one, found by re-running the backtest, bisection to 1 %) that avoids every liquidation.
* :func:`compare_modes` — the same strategy under cross, isolated and portfolio margin, side by
  side: the table people use to choose a margin mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from backtester.config import MarginMode
from backtester.runs.runner import PreparedRun, run_prepared

if TYPE_CHECKING:
    from backtester.runs.results import BacktestResult

__all__ = ["Survival", "compare_modes", "survival_collateral"]


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
                         survival_collateral=False,
                         label=f"survival collateral ({mode}): collateral × {k:.4g}")
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
