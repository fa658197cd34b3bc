"""Risk: distance to liquidation, stress scenarios, risk controls."""

from __future__ import annotations
