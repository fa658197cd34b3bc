"""Deprecated: moved to :mod:`backtester.runs.capital`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.capital``.
"""

from __future__ import annotations

import warnings

from backtester.runs.capital import (
    capital_metrics,
    utilization_series,
)

__all__ = [
    "capital_metrics",
    "utilization_series",
]

msg = ("backtester.capital is deprecated: import from backtester.runs.capital "
       "(the old path is removed in the next release)")
warnings.warn(msg, DeprecationWarning, stacklevel=2)
del msg
