"""Deprecated: moved to :mod:`backtester.runs.results`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.results``.
"""

from __future__ import annotations

import warnings

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

msg = ("backtester.results is deprecated: import from backtester.runs.results "
       "(the old path is removed in the next release)")
warnings.warn(msg, DeprecationWarning, stacklevel=2)
del msg
