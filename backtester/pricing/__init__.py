"""Option pricing: Black-76 prices and greeks, implied volatility, vol surfaces."""

from __future__ import annotations
