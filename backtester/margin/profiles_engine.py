"""Build the engine's :class:`ProfileData` from a profile's JSON data and the run's tier tables.

Tier tables are chosen per symbol by :func:`backtester.margin.sources.resolve_tiers` (run
configuration > dataset ``leverage_tiers.json`` > profile > flat default with a warning). Every
profile number comes from ``backtester/margin/profiles/<name>.json`` (with its sources and
assumptions).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from backtester.instruments import Instrument
from backtester.margin.options import (
    DEFAULT_BYBIT_LIQUIDATION_FEE_RATE,
    default_maintenance_rate,
    style_for_profile,
)
from backtester.margin.profile_data import ProfileData, SimpleTiers
from backtester.margin.profiles import load_profile
from backtester.margin.sources import FLAT_MAINTENANCE_RATE, option_fee_cap
from backtester.margin.tiers import TierTable
from backtester.numeric import dec

__all__ = ["engine_profile"]


def engine_profile(name: str, *, tiers: Mapping[str, TierTable] | None = None,
                   instruments: Mapping[str, Instrument] | None = None) -> ProfileData:
    """Return the engine parameters of profile ``name`` with the run's tier tables ``tiers``
    (symbol → table, as chosen by :func:`~backtester.margin.sources.resolve_tiers`) and the
    profile's size-dependent margin rates for the futures among ``instruments``."""
    prof = load_profile(name)
    table = {s: SimpleTiers.from_table(t) for s, t in (tiers or {}).items()}
    rates = {}
    for sym, inst in (instruments or {}).items():
        r = None if inst.is_option else prof.margin_rates_for(inst.base, inst.settle)
        if r is not None:
            rates[sym] = r
    coin_pool = prof.valuation == "coin"
    style = style_for_profile(name)
    return ProfileData(
        name=name, pool=prof.pool, quote_asset="BTC" if coin_pool else "USDT",
        default_collateral=Decimal(2) if coin_pool else Decimal(100_000),
        default_leverage=prof.default_leverage, call_level=prof.call_level,
        liquidation_style=prof.liquidation_style,
        liquidation_fee_rate=prof.liquidation_fee_rate,
        liquidation_fee_rates=dict(prof.liquidation_fee_rates),
        liquidation_slippage_rate=prof.liquidation_slippage_rate,
        default_mmr=FLAT_MAINTENANCE_RATE,
        option_fee_cap=option_fee_cap(prof), delivery_fee_rate=dec(prof.delivery_fee_rate),
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
