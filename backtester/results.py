"""Deprecated: moved to :mod:`backtester.runs.results`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.results``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.runs.results import (
    BacktestResult,
    compute_metrics,
    daily_closes,
)

__all__ = [
    "BacktestResult",
    "compute_metrics",
    "daily_closes",
]

warn_moved("backtester.results", "backtester.runs.results")
