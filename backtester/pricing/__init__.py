"""Option pricing: Black-76 prices and greeks, implied vol, vol surfaces (numpy-vectorized)."""

from __future__ import annotations

from backtester.pricing.black76 import (
    DAYS_PER_YEAR,
    MS_PER_YEAR,
    delta,
    gamma,
    inverse_delta,
    inverse_price,
    price,
    theta,
    vega,
    years_between,
)
from backtester.pricing.iv import implied_vol
from backtester.pricing.surface import IndexVolSurface, MarkVolSurface, SmileParams, VolSurface

__all__ = [
    "DAYS_PER_YEAR",
    "MS_PER_YEAR",
    "IndexVolSurface",
    "MarkVolSurface",
    "SmileParams",
    "VolSurface",
    "delta",
    "gamma",
    "implied_vol",
    "inverse_delta",
    "inverse_price",
    "price",
    "theta",
    "vega",
    "years_between",
]
