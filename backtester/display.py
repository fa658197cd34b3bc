"""How numbers are written for people: one format for the console and the report.

* fractions (returns, drawdowns, ratios of margin) as percentages: ``-2.70%``;
* money (USD valuations, fees, funding) with two decimals and thousands separators:
  ``7,079.20``;
* statistics (Sharpe, Sortino, Calmar) with two decimals, multiples with ``×``;
* counts as integers: ``1,234``;
* times as UTC dates: ``2025-03-01 08:00`` (never raw milliseconds);
* :data:`UNDEFINED` (``—``) where a value is not defined for the run (no closing trade, no
  liquidation price, ...); tables that can show it print :data:`LEGEND` under them.

Sign convention of costs (:data:`COST_SIGNS`): ``fees_paid`` and ``funding_paid`` are positive
when the account paid and negative when it received.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

import numpy as np
import pandas as pd

__all__ = ["COST_SIGNS", "LEGEND", "METRIC_UNITS", "UNDEFINED", "Unit", "count", "date",
           "metric", "money", "number", "percent", "value"]

#: Written where a value is not defined.
UNDEFINED = "—"

#: The note printed under a table that shows :data:`UNDEFINED`.
LEGEND = f"{UNDEFINED} = not defined for this run (e.g. no trade closed, no liquidation price)"

#: The one sign convention of fees and funding, stated wherever they are shown.
COST_SIGNS = "fees and funding: + = paid by the account, − = received"


class Unit(StrEnum):
    """What a number is, which decides how it is written."""

    PERCENT = "percent"
    MONEY = "money"
    STATISTIC = "statistic"
    MULTIPLE = "multiple"
    COUNT = "count"
    DATE = "date"


#: Unit of every metric a run or a sweep reports (``metrics.json``, ``comparison.csv``).
METRIC_UNITS: Mapping[str, Unit] = MappingProxyType({
    "total_return": Unit.PERCENT, "cagr": Unit.PERCENT, "volatility": Unit.PERCENT,
    "sharpe": Unit.STATISTIC, "sortino": Unit.STATISTIC, "calmar": Unit.STATISTIC,
    "max_drawdown": Unit.PERCENT, "trades": Unit.COUNT, "win_rate": Unit.PERCENT,
    "fees_paid": Unit.MONEY, "funding_paid": Unit.MONEY, "liquidations": Unit.COUNT,
    "margin_calls": Unit.COUNT, "min_distance_to_liquidation": Unit.PERCENT,
    "max_margin_ratio": Unit.PERCENT, "return_on_average_margin": Unit.PERCENT,
    "return_on_peak_margin": Unit.PERCENT, "average_initial_margin": Unit.MONEY,
    "peak_initial_margin": Unit.MONEY, "margin_utilization_mean": Unit.PERCENT,
    "margin_utilization_p50": Unit.PERCENT, "margin_utilization_p95": Unit.PERCENT,
    "margin_utilization_max": Unit.PERCENT, "idle_collateral_mean": Unit.MONEY,
    "idle_collateral_min": Unit.MONEY, "traded_notional": Unit.MONEY,
    "capital_velocity": Unit.MULTIPLE, "fee_drag": Unit.PERCENT, "funding_drag": Unit.PERCENT,
    "portfolio_to_standard_margin": Unit.PERCENT, "survival_collateral_scale": Unit.MULTIPLE,
    "survival_collateral_usd": Unit.MONEY, "duration_s": Unit.STATISTIC,
})


def _finite(x: object) -> float | None:
    # the float of a number, or None when it is missing or not a number (NaN, None, NA)
    if x is None or x is pd.NA or isinstance(x, bool | str):
        return None
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, Decimal):
        return None if x.is_nan() else float(x)
    if isinstance(x, int | float):
        return None if math.isnan(x) else float(x)
    return None


def _infinite(x: float) -> str | None:
    return None if math.isfinite(x) else ("∞" if x > 0 else "-∞")


def percent(x: object, *, signed: bool = False) -> str:
    """Write a fraction as a percentage (two decimals; more for tiny non-zero values).

    >>> percent(-0.027), percent(0.5, signed=True), percent(2e-7), percent(None)
    ('-2.70%', '+50.00%', '0.00002%', '—')
    """
    f = _finite(x)
    if f is None:
        return UNDEFINED
    inf = _infinite(f)
    if inf is not None:
        return inf
    sign = "+" if signed else ""
    if f != 0 and abs(f) < 5e-5:
        text = np.format_float_positional(f * 100, precision=2, fractional=False, trim="-")
        return f"{'+' if signed and f > 0 else ''}{text}%"
    return f"{f:{sign}.2%}"


def money(x: object, *, signed: bool = False) -> str:
    """Write an amount of money with two decimals and thousands separators.

    >>> money(7079.2), money(-4447.853), money(Decimal("12.346")), money(float("nan"))
    ('7,079.20', '-4,447.85', '12.35', '—')
    """
    if isinstance(x, Decimal) and x.is_finite():
        return f"{x:{'+' if signed else ''},.2f}"
    f = _finite(x)
    if f is None:
        return UNDEFINED
    return _infinite(f) or f"{f:{'+' if signed else ''},.2f}"


def number(x: object) -> str:
    """Write a statistic or a plain measurement: two decimals (significant digits below 0.01).

    >>> number(-0.1241), number(126.6512), number(0.000123), number(0)
    ('-0.12', '126.65', '0.000123', '0.00')
    """
    f = _finite(x)
    if f is None:
        return UNDEFINED
    inf = _infinite(f)
    if inf is not None:
        return inf
    if f != 0 and abs(f) < 0.01:
        return f"{f:.3g}"
    return f"{f:,.2f}"


def count(x: object) -> str:
    """Write a count: ``1,234``.

    >>> count(1234), count(None)
    ('1,234', '—')
    """
    f = _finite(x)
    return UNDEFINED if f is None else (_infinite(f) or f"{int(f):,}")


def date(x: object) -> str:
    """Write a time as a UTC date and minute: int milliseconds, a Timestamp or an ISO string.

    >>> date(1736334000000), date("2025-01-08T11:00:00Z"), date(None)
    ('2025-01-08 11:00', '2025-01-08 11:00', '—')
    """
    if x is None or x is pd.NaT or (isinstance(x, float) and math.isnan(x)):
        return UNDEFINED
    if isinstance(x, pd.Timestamp | datetime):
        ts = pd.Timestamp(x)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    elif isinstance(x, str):
        try:
            ts = pd.Timestamp(x)
        except ValueError:
            return x
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    else:
        f = _finite(x)
        if f is None:
            return UNDEFINED
        ts = pd.Timestamp(datetime.fromtimestamp(f / 1000, tz=UTC))
    return str(ts.strftime("%Y-%m-%d %H:%M"))


def value(x: object, unit: Unit | None = None) -> str:
    """Write ``x`` in ``unit``; without one, booleans as yes/no, integers as counts, other
    numbers with :func:`number` and text as it is."""
    if unit is Unit.PERCENT:
        return percent(x)
    if unit is Unit.MONEY:
        return money(x)
    if unit is Unit.STATISTIC:
        return number(x)
    if unit is Unit.MULTIPLE:
        text = number(x)
        return text if text == UNDEFINED else f"{text}×"
    if unit is Unit.COUNT:
        return count(x)
    if unit is Unit.DATE:
        return date(x)
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, pd.Timestamp | datetime):
        return date(x)
    if isinstance(x, int | np.integer):
        return count(x)
    if isinstance(x, float | np.floating | Decimal):
        return number(x)
    if x is None or x is pd.NA:
        return UNDEFINED
    return str(x)


def metric(key: str, x: object) -> str:
    """Write the value of metric ``key`` in its unit (:data:`METRIC_UNITS`).

    >>> metric("total_return", -0.027), metric("fees_paid", 7079.2), metric("sharpe", None)
    ('-2.70%', '7,079.20', '—')
    """
    unit = METRIC_UNITS.get(key)
    if unit is None and key.endswith("_ms"):
        unit = Unit.DATE
    return value(x, unit)
