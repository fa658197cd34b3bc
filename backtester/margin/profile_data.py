"""Deprecated: moved to :mod:`backtester.margin.profile`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.margin.profile``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.margin.profile import (
    ProfileData,
    SimpleTiers,
)

__all__ = [
    "ProfileData",
    "SimpleTiers",
]

warn_moved("backtester.margin.profile_data", "backtester.margin.profile")
