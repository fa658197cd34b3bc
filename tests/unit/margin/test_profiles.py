"""Exchange profiles load as data (margin-rules sources in each file)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from backtester.errors import ConfigError
from backtester.margin.profile import PROFILE_NAMES, load_profile
from backtester.margin.tiers import TierTable

PROFILE_DIR = Path(str(importlib.import_module("backtester.margin.profile").__file__)).parent \
    / "profiles"


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_profile_loads_and_names_its_assumptions(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.call_level == 0.8
    assert any("call_level" in a for a in profile.assumptions)
    assert any("liquidation_slippage_rate" in a for a in profile.assumptions)


def test_published_numbers() -> None:
    binance = load_profile("binance-usdm")
    assert binance.default_leverage == 20                                  # [B3] §2.1
    assert binance.liquidation_fee_rate_for("ETH") == 0.005                # [B14] §2.4
    assert binance.liquidation_fee_rate_for("BTC") == 0.003
    deribit = load_profile("deribit")
    assert deribit.liquidation_fee_rate_for("ETH") == 0.009                # [DB13] §7.5
    assert deribit.liquidation_fee_rate_for("BTC", is_option=True) == 0.002
    assert (deribit.daily_settlement_hour_utc, deribit.delivery_twap_minutes) == (8, 30)
    assert deribit.funding_style == "continuous"
    assert load_profile("bybit").option_fee_cap == 0.125                  # [BY8] §5.4
    assert load_profile("okx").has_exchange_margin_ratio


def test_overrides_and_errors() -> None:
    assert load_profile("bybit", {"call_level": 0.9}).call_level == 0.9
    with pytest.raises(ConfigError, match=r"unknown profile 'bybt' \(did you mean 'bybit'\?\)"):
        load_profile("bybt")
    with pytest.raises(ConfigError, match=r"'cal_level': unknown field \(did you mean 'call_level"):
        load_profile("bybit", {"cal_level": 0.9})


def test_bybit_btcusdt_tiers_are_the_published_margin_parameters() -> None:
    # Bybit "Margin Parameters", BTCUSDT (profile sources): every published MM deduction equals
    # the recursion RL(n-1) x (MMR(n) - MMR(n-1)) + deduction(n-1), so the 20 rows were read
    # consistently; tier 1 is [BY6] §5.2 (<= 2,000,000 USDT -> MMR 0.5 %, 100x)
    profile = load_profile("bybit")
    table = profile.tiers["BTC/USDT:USDT"]
    assert len(table) == 20
    derived = TierTable.from_rows([{"min_notional": t.min_notional,
                                    "max_notional": t.max_notional, "mmr": t.mmr,
                                    "max_leverage": t.max_leverage} for t in table.tiers])
    assert [t.maintenance_amount for t in derived.tiers] == pytest.approx(
        [t.maintenance_amount for t in table.tiers])
    assert (table.tiers[0].mmr, table.tiers[0].max_notional, table.tiers[0].max_leverage) == (
        0.005, 2_000_000, 100)
    # 4,000,000 USDT falls in tier 5 (3,800,000-4,400,000: MMR 0.71 %, deduction 5,820):
    # MM = 4,000,000 x 0.0071 - 5,820 = 22,580; at 5,000,000 (tier 7's floor) max leverage 55
    assert table.maintenance_margin(4_000_000.0) == pytest.approx(22_580.0)
    assert table.max_leverage(5_000_000.0) == 55
    assert "License: none stated" in json.loads(
        (PROFILE_DIR / "bybit.json").read_text())["sources"]["tiers"]


def test_binance_coinm_btcusd_tiers_reproduce_the_section_3_example() -> None:
    # margin-rules §3 [B13]: 100,000 contracts x 100 USD at 45,000 = 222.22 BTC falls in the
    # 200-400 BTC bracket: MMR 12.5 %, cum 11.605 (the profile's table, from ccxt's recorded
    # brackets with the cum recursion); MM = 222.22 x 0.125 - 11.605 = 16.1728 BTC
    table = load_profile("binance-coinm").tiers["BTC/USD:BTC"]
    notional = 10_000_000 / 45_000
    assert table.rate_and_amount(notional) == pytest.approx((0.125, 11.605))
    assert table.maintenance_margin(notional) == pytest.approx(notional * 0.125 - 11.605)
    # small positions: 0.4 % up to 5 BTC at 125x (Binance's COIN-M FAQ)
    assert table.rate_and_amount(1.0) == (0.004, 0.0)
    assert table.max_leverage(1.0) == 125


def test_okx_ships_no_tier_tables() -> None:
    # no public OKX position-tier table with a citable source was reachable: runs fall back to
    # the flat default with a warning (backtester.margin.sources)
    assert dict(load_profile("okx").tiers) == {}
