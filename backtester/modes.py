"""Deprecated: moved to :mod:`backtester.runs.modes`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.modes``.
"""

from __future__ import annotations

import warnings

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

msg = ("backtester.modes is deprecated: import from backtester.runs.modes "
       "(the old path is removed in the next release)")
warnings.warn(msg, DeprecationWarning, stacklevel=2)
del msg
