"""Build the engine's :class:`ProfileData` for a profile name and a dataset's tier tables."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from backtester.margin.profile_data import ProfileData, SimpleTiers

__all__ = ["engine_profile", "tiers_from_ccxt"]

# Parameters per profile (margin-rules.md). Values marked in ``assumptions`` are not published.
_BASE: dict[str, dict[str, Any]] = {
    "binance-usdm": {"quote_asset": "USDT", "default_leverage": 20.0,
                     "liquidation_style": "binance", "liquidation_fee_rate": 0.005,
                     "haircuts": {"USDT": 1.0, "USDC": 1.0}},
    "binance-coinm": {"quote_asset": "BTC", "default_collateral": Decimal(2),
                      "default_leverage": 20.0, "liquidation_style": "binance",
                      "liquidation_fee_rate": 0.005},
    "bybit": {"quote_asset": "USDT", "default_leverage": 10.0, "liquidation_style": "tiered",
              "liquidation_fee_rate": 0.0055,
              "haircuts": {"USDT": 1.0, "USDC": 1.0, "BTC": 0.95, "ETH": 0.95},
              "option_margin_style": "bybit", "option_maintenance_rate": 0.03},
    "okx": {"quote_asset": "USDT", "default_leverage": 10.0, "liquidation_style": "tiered",
            "liquidation_fee_rate": 0.005,
            "haircuts": {"USDT": 1.0, "USDC": 1.0, "BTC": 0.95, "ETH": 0.95}},
    "deribit": {"quote_asset": "BTC", "default_collateral": Decimal(2), "default_leverage": 50.0,
                "liquidation_style": "incremental", "liquidation_fee_rate": 0.005,
                "option_margin_style": "deribit", "option_maintenance_rate": 0.075,
                "funding_style": "continuous"},
}
_ASSUMPTIONS = ("call_level 0.8 (no exchange publishes a call level)",
                "liquidation_slippage_rate 0.005 (unpublished)",
                "collateral haircuts 0.95 for BTC/ETH (illustrative)")


def tiers_from_ccxt(rows: Sequence[dict[str, Any]]) -> SimpleTiers:
    """Build tiers from ccxt leverage-tier rows (``minNotional``, ``maintenanceMarginRate``,
    ``maxLeverage``; ``info.cum`` when present, else the cum recursion
    ``cum_n = floor_n (MMR_n - MMR_n-1) + cum_n-1``)."""
    rows = [_from_calculator(r) if "min_notional" in r else r for r in rows]
    rows = sorted(rows, key=lambda r: float(r["minNotional"]))
    floors, mmr, cum, lev = [], [], [], []
    prev_mmr, prev_cum = 0.0, 0.0
    for r in rows:
        fl = float(r["minNotional"])
        m = float(r["maintenanceMarginRate"])
        info = r.get("info") or {}
        c = float(info["cum"]) if info.get("cum") is not None else fl * (m - prev_mmr) + prev_cum
        floors.append(fl)
        mmr.append(m)
        cum.append(c)
        lev.append(float(r.get("maxLeverage") or 1.0))
        prev_mmr, prev_cum = m, c
    return SimpleTiers(floors=tuple(floors), mmr=tuple(mmr), cum=tuple(cum),
                       max_leverage=tuple(lev))


def _from_calculator(row: dict[str, Any]) -> dict[str, Any]:
    # the calculator's tier format (DESIGN §4): min_notional, mmr, maintenance_amount, ...
    return {"minNotional": row["min_notional"], "maintenanceMarginRate": row["mmr"],
            "maxLeverage": row.get("max_leverage"),
            "info": {"cum": row.get("maintenance_amount")}}


def engine_profile(name: str, *, tiers: Any = None,
                   symbols: Sequence[str] = ()) -> ProfileData:
    """Return the profile's engine parameters with tier tables for ``symbols`` where known."""
    base = dict(_BASE.get(name, _BASE["bybit"]))
    table: dict[str, SimpleTiers] = {}
    if isinstance(tiers, dict):
        src = tiers.get("tiers", tiers)
        for sym in symbols:
            rows = src.get(sym) if isinstance(src, dict) else None
            if rows:
                table[sym] = tiers_from_ccxt(rows)
    return ProfileData(name=name, tiers=table, assumptions=_ASSUMPTIONS, **base)
