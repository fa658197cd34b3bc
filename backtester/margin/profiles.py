"""Deprecated: moved to :mod:`backtester.margin.profile`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.margin.profile``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.margin.profile import (
    PROFILE_NAMES,
    FundingStyle,
    IsolatedFormula,
    LiquidationStyle,
    MarginRates,
    PoolRule,
    Profile,
    Valuation,
    load_profile,
)

__all__ = [
    "PROFILE_NAMES",
    "FundingStyle",
    "IsolatedFormula",
    "LiquidationStyle",
    "MarginRates",
    "PoolRule",
    "Profile",
    "Valuation",
    "load_profile",
]

warn_moved("backtester.margin.profiles", "backtester.margin.profile")
