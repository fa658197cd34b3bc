"""Per-position requirements against exchange worked examples (docs/margin-rules.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backtester.errors import ConfigError
from backtester.instruments import instrument_from_symbol
from backtester.margin.profile import MarginRates, load_profile
from backtester.margin.requirements import (
    check_leverage,
    position_requirement,
    rated_requirement,
    tiered_requirement,
)
from backtester.margin.tiers import TierTable

ONE_TIER_05 = TierTable.from_rows([{"min_notional": 0, "max_notional": 2_000_000, "mmr": 0.005,
                                    "max_leverage": 100}])


def test_binance_coinm_mm_0_0016_btc_section3() -> None:
    # §3 [B2]: 100 BTCUSD_PERP contracts (100 USD) at mark 25,000 → 0.4 BTC; 0.4 × 0.4 % = 0.0016
    perp = instrument_from_symbol("BTC/USD:BTC")
    tiers = TierTable.from_rows([{"min_notional": 0, "max_notional": 5, "mmr": 0.004,
                                  "max_leverage": 125}])
    req = tiered_requirement(perp, 100, 25_000.0, leverage=20, tiers=tiers)
    assert req.notional == pytest.approx(0.4)
    assert req.maintenance_margin == pytest.approx(0.0016)
    assert req.initial_margin == pytest.approx(0.02)
    assert req.tier == 1


def test_bybit_linear_im_400_mm_100_section_5_2() -> None:
    # §5.2 [BY5]: 1 BTC @ 20,000, 50x, MMR 0.5 % → IM 400, MM 100
    perp = instrument_from_symbol("BTC/USDT:USDT")
    req = tiered_requirement(perp, 1.0, 20_000.0, leverage=50, tiers=ONE_TIER_05)
    assert (req.notional, req.initial_margin, req.maintenance_margin) == pytest.approx(
        (20_000.0, 400.0, 100.0))


def test_bybit_inverse_pv_1_2_im_0_12_section_5_3() -> None:
    # §5.3 [BY4]: 60,000 USD @ 50,000, 10x → PV 1.2 BTC, IM 0.12 BTC (1 USD contracts)
    perp = instrument_from_symbol("BTC/USD:BTC", contract_size=Decimal(1))
    req = tiered_requirement(perp, -60_000, 50_000.0, leverage=10, tiers=ONE_TIER_05)
    assert req.notional == pytest.approx(1.2)
    assert req.initial_margin == pytest.approx(0.12)
    assert req.maintenance_margin == pytest.approx(0.006)   # 1.2 × 0.5 %


def test_binance_2024_table_tier3() -> None:
    # BTC/USDT:USDT 2024-10-24: 10 BTC @ 60,000 = 600,000 → tier 3 (floor belongs to the upper
    # tier), MM = 600,000 × 0.65 % − 950 = 2,950; IM at 20x = 30,000
    tiers = load_profile("binance-usdm").tiers["BTC/USDT:USDT"]
    perp = instrument_from_symbol("BTC/USDT:USDT")
    req = tiered_requirement(perp, 10, 60_000.0, leverage=20, tiers=tiers)
    assert req.tier == 3
    assert req.maintenance_margin == pytest.approx(2_950.0)
    assert req.initial_margin == pytest.approx(30_000.0)
    assert req.max_leverage == 75
    assert not req.is_leverage_exceeded
    over = tiered_requirement(perp, 10, 60_000.0, leverage=100, tiers=tiers)
    assert over.is_leverage_exceeded


DERIBIT_BTC_USDC = MarginRates(im_base=0.02, im_per_coin=0.00005, mm_base=0.01,
                               mm_per_coin=0.00005)
DERIBIT_SOL_USDC = MarginRates(im_base=0.04, im_per_coin=0.000005, mm_base=0.02,
                               mm_per_coin=0.000005)


def test_deribit_btc_usdc_25_btc_section_7_2() -> None:
    # §7.2 [DB2]: 25 BTC @ 100,000 → IM 2.125 % = 53,125 USDC; MM 1.125 % = 28,125 USDC
    perp = instrument_from_symbol("BTC/USDC:USDC")
    req = rated_requirement(perp, 25, 100_000.0, rates=DERIBIT_BTC_USDC, index_price=100_000.0)
    assert req.initial_margin == pytest.approx(53_125.0)
    assert req.maintenance_margin == pytest.approx(28_125.0)
    assert req.tier is None


@pytest.mark.parametrize(("size", "im", "mm"), [(25, 200.625, 100.625), (6_000, 84_000.0, None)])
def test_deribit_sol_usdc_section_7_2(size: float, im: float, mm: float | None) -> None:
    # §7.2 [DB2]: 25 SOL @ 200 → IM 200.625, MM 100.625; 6,000 SOL → IM 7 % = 84,000
    perp = instrument_from_symbol("SOL/USDC:USDC")
    req = rated_requirement(perp, -size, 200.0, rates=DERIBIT_SOL_USDC)
    assert req.initial_margin == pytest.approx(im)
    if mm is not None:
        assert req.maintenance_margin == pytest.approx(mm)


@pytest.mark.parametrize(("size_btc", "im_btc"), [(25, 0.53125), (350, 13.125)])
def test_deribit_inverse_futures_legacy_section_7_2(size_btc: float, im_btc: float) -> None:
    # §7.2 [DB5]: 25 BTC → 2.125 % = 0.53125 BTC; 350 BTC → 3.75 % = 13.125 BTC
    # size_coin = USD face / index; 10 USD contracts at index 100,000
    rates = load_profile("deribit").margin_rates_for("BTC", "BTC")
    assert rates is not None
    fut = instrument_from_symbol("BTC/USD:BTC", contract_size=Decimal(10))
    contracts = size_btc * 100_000 / 10
    req = position_requirement(fut, contracts, 100_000.0, leverage=1, margin_rates=rates,
                               index_price=100_000.0)
    assert req.initial_margin == pytest.approx(im_btc)


def test_check_leverage_bracket_b3() -> None:
    tiers = load_profile("binance-usdm").tiers["BTC/USDT:USDT"]
    refused = check_leverage(tiers, 60_000.0, 125)
    assert (refused.is_allowed, refused.tier, refused.max_leverage) == (False, 2, 100.0)
    assert check_leverage(tiers, 40_000.0, 125).is_allowed


def test_position_requirement_needs_a_model() -> None:
    perp = instrument_from_symbol("BTC/USDT:USDT")
    with pytest.raises(ConfigError, match="no tier table"):
        position_requirement(perp, 1, 50_000.0, leverage=10)
    option = instrument_from_symbol("BTC/USD:BTC-261225-100000-C")
    with pytest.raises(ConfigError, match=r"backtester\.margin\.options"):
        position_requirement(option, 1, 0.05, leverage=10, tiers=ONE_TIER_05)
