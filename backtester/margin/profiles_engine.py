"""Deprecated: moved to :mod:`backtester.margin.profile`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.margin.profile``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.margin.profile import (
    engine_profile,
)

__all__ = [
    "engine_profile",
]

warn_moved("backtester.margin.profiles_engine", "backtester.margin.profile")
