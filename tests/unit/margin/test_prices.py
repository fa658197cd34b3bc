"""Liquidation and bankruptcy prices against exchange worked examples (docs/margin-rules.md)."""

from __future__ import annotations

import pytest

from backtester.errors import ConfigError
from backtester.margin.prices import (
    Leg,
    bankruptcy_price,
    binance_coinm_liquidation_price,
    binance_usdm_liquidation_price,
    isolated_bankruptcy_price,
    isolated_liquidation_price,
    liquidation_price,
    margin_surplus,
)
from backtester.margin.profiles import load_profile
from backtester.margin.tiers import TierTable

FLAT_04 = TierTable.from_rows([{"min_notional": 0, "mmr": 0.004, "max_leverage": 125}])


def test_binance_coinm_example_33599_section3() -> None:
    # §3 [B13][B2]: WB 101 BTC, long 100,000 contracts (CS 100) @ 45,000, MMR 12.5 %,
    # cum 11.605 BTC → 33,599.42 (Binance calculator 33,599.40)
    leg = Leg(qty=100_000, entry_price=45_000.0, contract_size=100, is_linear=False, mmr=0.125,
              maintenance_amount=11.605)
    assert liquidation_price([leg], mark=45_000.0, balance=101.0) == pytest.approx(33_599.42,
                                                                                   abs=0.01)
    verbatim = binance_coinm_liquidation_price(wallet_balance=101.0, contract_size=100,
                                               both=(1, 100_000, 45_000.0, 0.125, 11.605))
    assert verbatim == pytest.approx(33_599.42, abs=0.01)


def test_binance_usdm_one_way_redoes_with_the_tier_at_lp_section_2_3() -> None:
    # §2.3 [B1], 2024 BTC/USDT table. Long 10 BTC @ 60,000, mark 60,000, isolated wallet 20,000.
    # Tier at mark: 600,000 → tier 3 (0.65 %, cum 950):
    #   LP = (20,000 + 950 − 600,000) / (10·0.0065 − 10) = 58,283.84 → notional 582,838: tier 2
    # Redo with tier 2 (0.5 %, cum 50):
    #   LP = (20,000 + 50 − 600,000) / (10·0.005 − 10) = 58,286.43 → notional 582,864: tier 2 ✓
    tiers = load_profile("binance-usdm").tiers["BTC/USDT:USDT"]
    first = binance_usdm_liquidation_price(wallet_balance=20_000.0,
                                           both=(1, 10.0, 60_000.0, 0.0065, 950.0))
    second = binance_usdm_liquidation_price(wallet_balance=20_000.0,
                                            both=(1, 10.0, 60_000.0, 0.005, 50.0))
    assert first == pytest.approx(58_283.84, abs=0.01)
    assert second == pytest.approx(58_286.43, abs=0.01)
    leg = Leg(qty=10.0, entry_price=60_000.0, tiers=tiers)
    assert liquidation_price([leg], mark=60_000.0, balance=20_000.0) == pytest.approx(second)
    assert isolated_liquidation_price(leg, mark=60_000.0, margin=20_000.0) == pytest.approx(second)


def test_binance_usdm_hedge_mode_and_other_positions_section_2_3() -> None:
    # §2.3 [B1] hedge mode, cross: long 1 @ 60,000 and short 0.5 @ 62,000 of one symbol share
    # one LP; other contracts: TMM1 = 300, UPNL1 = −1,000; WB 5,000; MMR 0.4 %, cum 0:
    #   LP = (5,000 − 300 − 1,000 − 60,000 + 0.5·62,000) / (0.004 + 0.002 − 1 + 0.5)
    #      = −25,300 / −0.494 = 51,214.57
    verbatim = binance_usdm_liquidation_price(
        wallet_balance=5_000.0, other_maintenance=300.0, other_upnl=-1_000.0,
        long=(1.0, 60_000.0, 0.004, 0.0), short=(0.5, 62_000.0, 0.004, 0.0))
    assert verbatim == pytest.approx(25_300 / 0.494)
    legs = [Leg(qty=1.0, entry_price=60_000.0, tiers=FLAT_04),
            Leg(qty=-0.5, entry_price=62_000.0, tiers=FLAT_04)]
    solved = liquidation_price(legs, mark=59_000.0, balance=5_000.0 - 1_000.0,
                               other_maintenance=300.0)
    assert solved == pytest.approx(verbatim)


def test_bybit_isolated_linear_19700_section_5_2() -> None:
    # §5.2 [BY5]: 1 BTC @ 20,000, 50x, MMR 0.5 % → IM 400, MM 100, LP 19,700 (short: 20,300)
    long = Leg(qty=1.0, entry_price=20_000.0, mmr=0.005)
    short = Leg(qty=-1.0, entry_price=20_000.0, mmr=0.005)
    assert isolated_liquidation_price(long, mark=20_000.0, margin=400.0,
                                      formula="bybit") == pytest.approx(19_700.0)
    assert isolated_liquidation_price(short, mark=20_000.0, margin=400.0,
                                      formula="bybit") == pytest.approx(20_300.0)


def test_bybit_isolated_inverse_section_5_3() -> None:
    # §5.3 [BY4]: 60,000 USD @ 50,000, 10x → PV 1.2 BTC, IM 0.12 BTC; MMR 0.5 % → MM 0.006.
    # LP_long = C / (PV + IM − MM) = 60,000 / 1.314 = 45,662.10
    # LP_short = C / (PV − (IM − MM)) = 60,000 / 1.086 = 55,248.62
    long = Leg(qty=60_000, entry_price=50_000.0, is_linear=False, mmr=0.005)
    short = Leg(qty=-60_000, entry_price=50_000.0, is_linear=False, mmr=0.005)
    assert isolated_liquidation_price(long, mark=50_000.0, margin=0.12,
                                      formula="bybit") == pytest.approx(60_000 / 1.314)
    assert isolated_liquidation_price(short, mark=50_000.0, margin=0.12,
                                      formula="bybit") == pytest.approx(60_000 / 1.086)


def test_okx_isolated_with_taker_section_6() -> None:
    # §6 [F1]: LP_long = (EP − margin/Q) / (1 − (MMR + taker)), LP_short = (EP + margin/Q) /
    # (1 + MMR + taker). 1 BTC @ 20,000, margin 400, MMR 0.5 %, taker 0.05 %:
    #   long  = 19,600 / 0.9945 = 19,708.40;  short = 20,400 / 1.0055 = 20,288.41
    long = Leg(qty=1.0, entry_price=20_000.0, mmr=0.005)
    short = Leg(qty=-1.0, entry_price=20_000.0, mmr=0.005)
    assert isolated_liquidation_price(long, mark=20_000.0, margin=400.0, formula="okx",
                                      taker_rate=0.0005) == pytest.approx(19_600 / 0.9945)
    assert isolated_liquidation_price(short, mark=20_000.0, margin=400.0, formula="okx",
                                      taker_rate=0.0005) == pytest.approx(20_400 / 1.0055)


def test_bankruptcy_prices() -> None:
    # margin + UPnL = 0. Linear: 20,000 ∓ 400/1. Inverse long 60,000 USD @ 50,000, margin
    # 0.12 BTC: 1/BP = 0.12/60,000 + 1/50,000 = 2.2e-5 → 45,454.55
    assert isolated_bankruptcy_price(Leg(qty=1.0, entry_price=20_000.0),
                                     margin=400.0) == pytest.approx(19_600.0)
    assert isolated_bankruptcy_price(Leg(qty=-1.0, entry_price=20_000.0),
                                     margin=400.0) == pytest.approx(20_400.0)
    inverse = Leg(qty=60_000, entry_price=50_000.0, is_linear=False)
    assert isolated_bankruptcy_price(inverse, margin=0.12) == pytest.approx(1 / 2.2e-5)


def test_none_where_no_price_exists() -> None:
    # a 1x long with no maintenance cannot go bankrupt at a positive price
    assert bankruptcy_price([Leg(qty=1.0, entry_price=20_000.0)], balance=20_000.0) is None
    # a perfectly hedged pair with zero MMR has no liquidation price
    legs = [Leg(qty=1.0, entry_price=20_000.0), Leg(qty=-1.0, entry_price=20_000.0)]
    assert liquidation_price(legs, mark=20_000.0, balance=100.0) is None
    # an inverse long with margin above its coin value never liquidates (1/P would be < 0)
    inverse = Leg(qty=60_000, entry_price=50_000.0, is_linear=False, mmr=0.005)
    assert liquidation_price([inverse], mark=50_000.0, balance=-2.0) is None
    assert liquidation_price([], mark=1.0, balance=1.0) is None


def test_surplus_is_zero_at_lp_cross_with_tiers() -> None:
    tiers = load_profile("binance-usdm").tiers["BTC/USDT:USDT"]
    legs = [Leg(qty=-60.0, entry_price=50_000.0, tiers=tiers)]
    lp = liquidation_price(legs, mark=50_000.0, balance=150_000.0, other_maintenance=1_000.0)
    assert lp is not None
    assert lp > 50_000.0
    assert margin_surplus(legs, lp, balance=150_000.0, other_maintenance=1_000.0) == pytest.approx(
        0.0, abs=1e-6)


def test_errors() -> None:
    with pytest.raises(ConfigError, match="isolated formula 'gate'"):
        isolated_liquidation_price(Leg(qty=1.0, entry_price=1.0), mark=1.0, margin=1.0,
                                   formula="gate")
    with pytest.raises(ConfigError, match="all linear or all inverse"):
        liquidation_price([Leg(qty=1.0, entry_price=1.0),
                           Leg(qty=1.0, entry_price=1.0, is_linear=False)], mark=1.0, balance=1.0)
