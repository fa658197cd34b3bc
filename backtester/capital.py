"""Deprecated: moved to :mod:`backtester.runs.capital`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.capital``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.runs.capital import (
    capital_metrics,
    utilization_series,
)

__all__ = [
    "capital_metrics",
    "utilization_series",
]

warn_moved("backtester.capital", "backtester.runs.capital")
