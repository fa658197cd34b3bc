"""Margin math: tier tables, exchange profiles, requirements, liquidation prices, the calculator.

Everything here works on plain floats (no pandas) so that the engine can call it every bar.
"""

from __future__ import annotations

from backtester.margin.calculator import evaluate
from backtester.margin.profile import PROFILE_NAMES, MarginRates, Profile, load_profile
from backtester.margin.requirements import (
    LeverageCheck,
    PositionRequirement,
    check_leverage,
    position_requirement,
    rated_requirement,
    tiered_requirement,
)
from backtester.margin.tiers import Tier, TierTable, load_binance_tiers

__all__ = [
    "PROFILE_NAMES",
    "LeverageCheck",
    "MarginRates",
    "PositionRequirement",
    "Profile",
    "Tier",
    "TierTable",
    "check_leverage",
    "evaluate",
    "load_binance_tiers",
    "load_profile",
    "position_requirement",
    "rated_requirement",
    "tiered_requirement",
]
