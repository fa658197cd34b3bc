"""Deprecated: moved to :mod:`backtester.runs.modes`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.modes``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.runs.modes import (
    Survival,
    compare_modes,
    survival_collateral,
)

__all__ = [
    "Survival",
    "compare_modes",
    "survival_collateral",
]

warn_moved("backtester.modes", "backtester.runs.modes")
