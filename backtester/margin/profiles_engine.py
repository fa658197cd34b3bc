"""Build the engine's :class:`ProfileData` from a profile's JSON data and the run's tier tables.

Tier tables come, in order of precedence, from the run configuration (``tiers``), the dataset's
``leverage_tiers.json`` and the profile's own defaults. Every profile number comes from
``backtester/margin/profiles/<name>.json`` (with its sources and assumptions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from backtester.instruments import Instrument
from backtester.margin.options import (
    DEFAULT_BYBIT_LIQUIDATION_FEE_RATE,
    default_maintenance_rate,
    style_for_profile,
)
from backtester.margin.profile_data import ProfileData, SimpleTiers
from backtester.margin.profiles import load_profile
from backtester.margin.tiers import TierTable
from backtester.numeric import dec

__all__ = ["engine_profile", "tier_table"]



def tier_table(rows: Sequence[Mapping[str, Any]], *, where: str) -> TierTable:
    """Parse tier rows in either the calculator's format (``min_notional``, ``mmr`` ...) or
    ccxt's unified leverage tiers (``minNotional``, ``maintenanceMarginRate`` ...)."""
    if rows and "min_notional" in rows[0]:
        return TierTable.from_rows(list(rows), where=where)
    return TierTable.from_ccxt(list(rows), where=where)


def engine_profile(name: str, *, tiers: Any = None, symbols: Sequence[str] = (),
                   instruments: Mapping[str, Instrument] | None = None) -> ProfileData:
    """Return the engine parameters of profile ``name`` with tier tables for ``symbols`` and
    the profile's size-dependent margin rates for the futures among ``instruments``."""
    prof = load_profile(name)
    table: dict[str, SimpleTiers] = {s: SimpleTiers.from_table(t) for s, t in prof.tiers.items()
                                     if s in symbols}
    if isinstance(tiers, Mapping):
        src = tiers.get("tiers", tiers)
        for sym in symbols:
            rows = src.get(sym) if isinstance(src, Mapping) else None
            if rows:
                table[sym] = SimpleTiers.from_table(tier_table(rows, where=f"tiers.{sym}"))
    rates = {}
    for sym, inst in (instruments or {}).items():
        r = None if inst.is_option else prof.margin_rates_for(inst.base, inst.settle)
        if r is not None:
            rates[sym] = r
    coin_pool = prof.valuation == "coin"
    style = style_for_profile(name)
    fee_cap = prof.option_fee_cap if prof.option_fee_cap is not None else 0.125
    return ProfileData(
        name=name, pool=prof.pool, quote_asset="BTC" if coin_pool else "USDT",
        default_collateral=Decimal(2) if coin_pool else Decimal(100_000),
        default_leverage=prof.default_leverage, call_level=prof.call_level,
        liquidation_style=prof.liquidation_style,
        liquidation_fee_rate=prof.liquidation_fee_rate,
        liquidation_fee_rates=dict(prof.liquidation_fee_rates),
        liquidation_slippage_rate=prof.liquidation_slippage_rate,
        option_fee_cap=dec(fee_cap), delivery_fee_rate=dec(prof.delivery_fee_rate),
        delivery_window_ms=(prof.delivery_twap_minutes or 30) * 60_000,
        haircuts=dict(prof.haircuts), tiers=table, rates=rates,
        funding_style=prof.funding_style,
        daily_settlement_hour_utc=prof.daily_settlement_hour_utc,
        option_margin_style=style,
        option_maintenance_rate=default_maintenance_rate(style),
        option_liquidation_fee_rate=prof.option_liquidation_fee_rate
        or DEFAULT_BYBIT_LIQUIDATION_FEE_RATE,
        inverse_margin_at_face=prof.inverse_margin_at_face,
        bankruptcy_includes_close_fee=prof.bankruptcy_includes_close_fee,
        assumptions=prof.assumptions)
