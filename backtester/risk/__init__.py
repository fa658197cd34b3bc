"""Risk: distance to liquidation, stress scenarios, risk controls."""

from __future__ import annotations

from backtester.risk.controls import (
    ExitBracket,
    MarginGuard,
    PositionLimits,
    RiskControls,
    attach_exits,
    gross_notional_usd,
    limit_leverage,
)

__all__ = ["ExitBracket", "MarginGuard", "PositionLimits", "RiskControls", "attach_exits",
           "gross_notional_usd", "limit_leverage"]
