"""Which source a run's fee rates and tier tables come from (backtester.margin.sources)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from backtester.errors import ConfigError
from backtester.instruments import instrument_from_ccxt, instrument_from_symbol
from backtester.margin.profile import load_profile
from backtester.margin.snapshot import parse_snapshot
from backtester.margin.sources import (
    DEFAULT_MAKER_RATE,
    DEFAULT_OPTION_FEE_RATE,
    DEFAULT_TAKER_RATE,
    FeeSource,
    TierSource,
    fee_rates,
    resolve_fee_rates,
    resolve_tiers,
)

PERP = "BTC/USDT:USDT"
CALL = "BTC/USDC:USDC-250131-42000-C"


# -- fees -----------------------------------------------------------------------------------------
def test_bybit_taker_fill_pays_the_profiles_0055_percent() -> None:
    # a perp from the symbol grammar states no fee rates: Bybit's profile rates apply.
    # A taker fill of 1 BTC at 50,000 pays 1 x 50,000 x 0.055 % = 27.50 USDT (maker 0.02 %:
    # 10.00 USDT); the former grammar default charged 0.05 % = 25.00
    res = resolve_fee_rates({PERP: instrument_from_symbol(PERP)}, load_profile("bybit"))
    inst = res.instruments[PERP]
    assert inst.fee_exact(Decimal(1), Decimal(50_000), is_maker=False) == Decimal("27.5")
    assert inst.fee_exact(Decimal(-1), Decimal(50_000), is_maker=True) == Decimal("10")
    r = res.rates[PERP]
    assert (r.maker_source, r.taker_source) == (FeeSource.PROFILE, FeeSource.PROFILE)
    assert res.warnings == (
        "fees of BTC/USDT:USDT: maker 0.02 %, taker 0.055 % from profile bybit; the data gives "
        "no fee rates of its own (a ccxt market's maker/taker), and an account's fee tier or "
        "rebates are not modelled",)


def test_market_rates_win_over_the_profile_rate_by_rate() -> None:
    # a ccxt market with taker 0.04 % but no maker: taker from the market (1 BTC at 50,000 ->
    # 20.00 USDT), maker from the OKX profile (0.02 % -> 10.00 USDT)
    market = {"symbol": PERP, "type": "swap", "swap": True, "linear": True, "base": "BTC",
              "quote": "USDT", "settle": "USDT", "taker": 0.0004}
    res = resolve_fee_rates({PERP: instrument_from_ccxt(market)}, load_profile("okx"))
    inst = res.instruments[PERP]
    assert inst.fee_exact(Decimal(1), Decimal(50_000), is_maker=False) == Decimal("20")
    assert inst.fee_exact(Decimal(1), Decimal(50_000), is_maker=True) == Decimal("10")
    r = res.rates[PERP]
    assert (r.maker_source, r.taker_source) == (FeeSource.PROFILE, FeeSource.INSTRUMENT)
    assert "maker 0.02 % from profile okx, taker 0.04 % from the market data" in res.warnings[0]
    # both rates from the market: nothing to warn about
    full = resolve_fee_rates({PERP: instrument_from_ccxt({**market, "maker": 0.0001})},
                             load_profile("okx"))
    assert full.warnings == ()
    assert full.instruments[PERP].maker_rate == Decimal("0.0001")


def test_profile_without_rates_falls_back_to_the_defaults() -> None:
    bare = replace(load_profile("bybit"), maker_rate=None, taker_rate=None,
                   option_fee_rate=None)
    r = fee_rates(instrument_from_symbol(PERP), bare)
    assert (r.maker, r.taker) == (DEFAULT_MAKER_RATE, DEFAULT_TAKER_RATE) == (
        Decimal("0.0002"), Decimal("0.0005"))
    assert r.taker_source is FeeSource.DEFAULT
    opt = fee_rates(instrument_from_symbol(CALL), bare)
    assert opt.taker == DEFAULT_OPTION_FEE_RATE == Decimal("0.0003")
    res = resolve_fee_rates({PERP: instrument_from_symbol(PERP)}, bare)
    assert "from the project default (an assumption)" in res.warnings[0]


def test_option_fees_use_the_profiles_option_rate_and_cap() -> None:
    # margin-rules §5.4 [BY8]: 0.3 BTC call at 3,500 USDC, index 42,000:
    # fee = min(0.03 % x 42,000, 12.5 % x 3,500) x 0.3 = min(12.6, 437.5) x 0.3 = 3.78 USDC
    res = resolve_fee_rates({CALL: instrument_from_symbol(CALL)}, load_profile("bybit"))
    call = res.instruments[CALL]
    assert (call.maker_rate, call.taker_rate) == (Decimal("0.0003"), Decimal("0.0003"))
    fee = call.fee_exact(Decimal("0.3"), Decimal(3_500), is_maker=False,
                         underlying_price=Decimal(42_000), option_fee_cap=Decimal("0.125"))
    assert fee == Decimal("3.78")
    assert "of the underlying and capped at 12.5 % of the premium" in res.warnings[0]


def test_the_calculator_follows_the_same_precedence() -> None:
    # a snapshot position without maker/taker: the profile's (Bybit taker 0.055 %; OKX option
    # rate 0.03 %, not its futures taker 0.05 %); one with its own taker keeps it
    def snap(profile: str, symbol: str, instrument: dict[str, object]) -> object:
        price = {"mark": 100.0, "underlying": 42_000.0} if "-C" in symbol else {"mark": 100.0}
        return parse_snapshot({
            "profile": profile, "time": "2025-01-01T00:00:00Z", "collateral": {"USDT": 1e6},
            "prices": {symbol: price},
            "positions": [{"symbol": symbol, "side": "long", "size": 1, "entry_price": 100.0,
                           "instrument": instrument,
                           "tiers": [{"min_notional": 0, "mmr": 0.005}]}]}).positions[0]

    assert snap("bybit", PERP, {}).instrument.taker_rate == Decimal("0.00055")
    assert snap("bybit", PERP, {"taker": 0.0004}).instrument.taker_rate == Decimal("0.0004")
    assert snap("okx", CALL, {}).instrument.taker_rate == Decimal("0.0003")


# -- tier tables ----------------------------------------------------------------------------------
def _rows(mmr: float) -> list[dict[str, float]]:
    return [{"min_notional": 0.0, "max_notional": 1e9, "mmr": mmr, "maintenance_amount": 0.0,
             "max_leverage": 50.0}]


def _ccxt(mmr: float) -> list[dict[str, object]]:
    return [{"tier": 1, "minNotional": 0, "maxNotional": 1e9, "maintenanceMarginRate": mmr,
             "maxLeverage": 20}]


def test_tier_precedence_run_then_dataset_then_profile_then_flat() -> None:
    syms = (PERP, "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT")
    insts = {s: instrument_from_symbol(s) for s in syms}
    insts[CALL] = instrument_from_symbol(CALL)  # options need no tiers
    profile = replace(load_profile("bybit"), tiers={
        "ETH/USDT:USDT": load_profile("bybit").tiers[PERP],
        "SOL/USDT:USDT": load_profile("bybit").tiers[PERP]})
    res = resolve_tiers(
        insts, profile,
        run_tiers={PERP: _rows(0.011)},                                      # calculator rows
        dataset_tiers={"tiers": {PERP: _ccxt(0.022), "ETH/USDT:USDT": _ccxt(0.033)}},
        dataset="bybit")
    assert res.sources == {PERP: TierSource.RUN, "ETH/USDT:USDT": TierSource.DATASET,
                           "SOL/USDT:USDT": TierSource.PROFILE, "XRP/USDT:USDT": TierSource.FLAT}
    # MM of a 10,000 notional under each chosen table: 1.1 %, 3.3 %, the profile's 0.5 %
    assert res.tables[PERP].maintenance_margin(10_000.0) == pytest.approx(110.0)
    assert res.tables["ETH/USDT:USDT"].maintenance_margin(10_000.0) == pytest.approx(330.0)
    assert res.tables["SOL/USDT:USDT"].maintenance_margin(10_000.0) == pytest.approx(50.0)
    assert "XRP/USDT:USDT" not in res.tables
    assert CALL not in res.sources
    assert res.warnings == (
        "no tier table: XRP/USDT:USDT has none in the run's tiers, the dataset or profile "
        "bybit; maintenance margin at a flat 0.5 % of the notional at every size, no bracket "
        "leverage cap and no tier-by-tier liquidation (an assumption); give tiers with the run "
        "key `tiers`, `backtester fetch` or `data import --tiers-file`",)


def test_deribit_rated_symbols_need_no_tiers() -> None:
    # size-dependent margin_rates replace tiers (margin-rules §7.2): no flat-default warning
    insts = {"BTC/USD:BTC": instrument_from_symbol("BTC/USD:BTC")}
    res = resolve_tiers(insts, load_profile("deribit"))
    assert res.sources == {"BTC/USD:BTC": TierSource.MARGIN_RATES}
    assert res.warnings == ()


def test_a_bad_dataset_table_is_named() -> None:
    insts = {PERP: instrument_from_symbol(PERP)}
    with pytest.raises(ConfigError, match=r"dataset okx leverage_tiers.json: tiers.BTC/USDT:USDT"
                                          r"\[0\].maintenanceMarginRate"):
        resolve_tiers(insts, load_profile("okx"), dataset="okx",
                      dataset_tiers={"tiers": {PERP: [{"minNotional": 0,
                                                       "maintenanceMarginRate": 2}]}})
    with pytest.raises(ConfigError, match=r"^tiers: expected an object"):
        resolve_tiers(insts, load_profile("okx"), run_tiers=[1, 2])
