"""Liquidation and bankruptcy prices against exchange worked examples (docs/margin-rules.md).

The prices a user sees come from the calculator, which finds them as roots of the margin
kernel's evaluation (:func:`backtester.margin.prices.price_root`); each example here is checked
twice: the exchange's published closed form, verbatim, and the calculator's root.
"""

from __future__ import annotations

from typing import Any

import pytest

from backtester.margin import evaluate
from backtester.margin.prices import price_root
from backtester.margin.profile import load_profile
from tests.unit.margin.published_formulas import (
    binance_coinm_liquidation_price,
    binance_usdm_liquidation_price,
    bybit_isolated_liquidation_price,
)

FLAT_04 = [{"min_notional": 0, "mmr": 0.004, "maintenance_amount": 0, "max_leverage": 125}]
FLAT_05 = [{"min_notional": 0, "mmr": 0.005, "maintenance_amount": 0, "max_leverage": 100}]
INVERSE = {"type": "swap", "linear": False, "contract_size": 1, "settle": "BTC"}


def _one(profile: str, *, mode: str = "cross", collateral: dict[str, float], mark: float,
         side: str, size: float, entry: float, symbol: str = "BTC/USDT:USDT",
         **position: Any) -> dict[str, Any]:
    out = evaluate({"profile": profile, "mode": mode, "collateral": collateral,
                    "prices": {symbol: {"mark": mark}},
                    "positions": [{"symbol": symbol, "side": side, "size": size,
                                   "entry_price": entry, **position}]})
    row: dict[str, Any] = out["positions"][0]
    return row


def test_binance_coinm_example_33599_section3() -> None:
    # §3 [B13][B2]: WB 101 BTC, long 100,000 contracts (CS 100) @ 45,000, MMR 12.5 %,
    # cum 11.605 BTC → 33,599.42 (Binance calculator 33,599.40)
    verbatim = binance_coinm_liquidation_price(wallet_balance=101.0, contract_size=100,
                                               both=(1, 100_000, 45_000.0, 0.125, 11.605))
    assert verbatim == pytest.approx(33_599.42, abs=0.01)
    row = _one("binance-coinm", collateral={"BTC": 101.0}, mark=45_000.0, side="long",
               size=100_000, entry=45_000.0, symbol="BTC/USD:BTC", leverage=4,
               instrument={**INVERSE, "contract_size": 100},
               tiers=[{"min_notional": 0, "mmr": 0.125, "maintenance_amount": 11.605,
                       "max_leverage": 4}])
    assert row["liquidation_price"] == pytest.approx(verbatim, rel=1e-12)


def test_binance_usdm_one_way_redoes_with_the_tier_at_lp_section_2_3() -> None:
    # §2.3 [B1], 2024 BTC/USDT table. Long 10 BTC @ 60,000, mark 60,000, isolated wallet 20,000.
    # Tier at mark: 600,000 → tier 3 (0.65 %, cum 950):
    #   LP = (20,000 + 950 − 600,000) / (10·0.0065 − 10) = 58,283.84 → notional 582,838: tier 2
    # Redo with tier 2 (0.5 %, cum 50):
    #   LP = (20,000 + 50 − 600,000) / (10·0.005 − 10) = 58,286.43 → notional 582,864: tier 2 ✓
    first = binance_usdm_liquidation_price(wallet_balance=20_000.0,
                                           both=(1, 10.0, 60_000.0, 0.0065, 950.0))
    second = binance_usdm_liquidation_price(wallet_balance=20_000.0,
                                            both=(1, 10.0, 60_000.0, 0.005, 50.0))
    assert first == pytest.approx(58_283.84, abs=0.01)
    assert second == pytest.approx(58_286.43, abs=0.01)
    tiers = load_profile("binance-usdm").tiers["BTC/USDT:USDT"]
    rows = [{"min_notional": t.min_notional, "max_notional": t.max_notional, "mmr": t.mmr,
             "maintenance_amount": t.maintenance_amount, "max_leverage": t.max_leverage}
            for t in tiers.tiers]
    cross = _one("binance-usdm", collateral={"USDT": 20_000.0}, mark=60_000.0, side="long",
                 size=10.0, entry=60_000.0, leverage=10, tiers=rows)
    isolated = _one("binance-usdm", mode="isolated", collateral={"USDT": 0.0}, mark=60_000.0,
                    side="long", size=10.0, entry=60_000.0, leverage=10,
                    isolated_margin=20_000.0, tiers=rows)
    assert cross["liquidation_price"] == pytest.approx(second, rel=1e-12)
    assert isolated["liquidation_price"] == pytest.approx(second, rel=1e-12)


def test_binance_usdm_hedge_mode_and_other_positions_section_2_3() -> None:
    # §2.3 [B1] hedge mode, cross: long 1 @ 60,000 and short 0.5 @ 62,000 of one symbol share
    # one LP; other contracts: TMM1 = 300, UPNL1 = −1,000; WB 5,000; MMR 0.4 %, cum 0:
    #   LP = (5,000 − 300 − 1,000 − 60,000 + 0.5·62,000) / (0.004 + 0.002 − 1 + 0.5)
    #      = −25,300 / −0.494 = 51,214.57
    verbatim = binance_usdm_liquidation_price(
        wallet_balance=5_000.0, other_maintenance=300.0, other_upnl=-1_000.0,
        long=(1.0, 60_000.0, 0.004, 0.0), short=(0.5, 62_000.0, 0.004, 0.0))
    assert verbatim == pytest.approx(25_300 / 0.494)
    # the other contract: ETH short 10 @ 3,000 at a mark of 3,100 → UPnL −1,000; MM at 0.4 %...
    # of 31,000 = 124, so its table's rate is 300 / 31,000 to give TMM1 = 300
    other = [{"min_notional": 0, "mmr": 300 / 31_000, "maintenance_amount": 0,
              "max_leverage": 50}]
    out = evaluate({
        "profile": "binance-usdm", "position_mode": "hedge", "collateral": {"USDT": 5_000.0},
        "prices": {"BTC/USDT:USDT": {"mark": 59_000.0}, "ETH/USDT:USDT": {"mark": 3_100.0}},
        "positions": [
            {"symbol": "BTC/USDT:USDT", "side": "long", "size": 1, "entry_price": 60_000.0,
             "tiers": FLAT_04},
            {"symbol": "BTC/USDT:USDT", "side": "short", "size": 0.5, "entry_price": 62_000.0,
             "tiers": FLAT_04},
            {"symbol": "ETH/USDT:USDT", "side": "short", "size": 10, "entry_price": 3_000.0,
             "tiers": other},
        ]})
    long, short, eth = out["positions"]
    assert eth["maintenance_margin"] == pytest.approx(300.0)
    assert long["liquidation_price"] == pytest.approx(verbatim, rel=1e-12)
    assert short["liquidation_price"] == pytest.approx(verbatim, rel=1e-12)


def test_bybit_isolated_linear_19700_section_5_2() -> None:
    # §5.2 [BY5]: 1 BTC @ 20,000, 50x, MMR 0.5 % → IM 400, MM 100, LP 19,700 (short: 20,300)
    for side, qty, lp in (("long", 1.0, 19_700.0), ("short", -1.0, 20_300.0)):
        verbatim = bybit_isolated_liquidation_price(qty=qty, entry_price=20_000.0,
                                                    margin=400.0, maintenance_at_entry=100.0)
        assert verbatim == pytest.approx(lp)
        row = _one("bybit", mode="isolated", collateral={"USDT": 0.0}, mark=20_000.0,
                   side=side, size=1.0, entry=20_000.0, leverage=50, tiers=FLAT_05)
        assert row["liquidation_price"] == pytest.approx(lp, rel=1e-12)


def test_bybit_isolated_inverse_section_5_3() -> None:
    # §5.3 [BY4]: 60,000 USD @ 50,000, 10x → PV 1.2 BTC, IM 0.12 BTC; MMR 0.5 % → MM 0.006.
    # LP_long = C / (PV + IM − MM) = 60,000 / 1.314 = 45,662.10
    # LP_short = C / (PV − (IM − MM)) = 60,000 / 1.086 = 55,248.62
    for side, qty, lp in (("long", 60_000, 60_000 / 1.314), ("short", -60_000, 60_000 / 1.086)):
        verbatim = bybit_isolated_liquidation_price(
            qty=qty, entry_price=50_000.0, margin=0.12, maintenance_at_entry=0.006,
            is_linear=False)
        assert verbatim == pytest.approx(lp)
        # the mark differs from the entry: Bybit's formula holds MM at the entry value
        row = _one("bybit", mode="isolated", collateral={"BTC": 0.0}, mark=48_000.0,
                   side=side, size=60_000, entry=50_000.0, symbol="BTC/USD:BTC", leverage=10,
                   isolated_margin=0.12, instrument=INVERSE, tiers=FLAT_05)
        assert row["liquidation_price"] == pytest.approx(lp, rel=1e-12)


def test_okx_isolated_with_taker_section_6() -> None:
    # §6 [F1]: LP_long = (EP − margin/Q) / (1 − (MMR + taker)), LP_short = (EP + margin/Q) /
    # (1 + MMR + taker). 1 BTC @ 20,000, margin 400, MMR 0.5 %, taker 0.05 %:
    #   long  = 19,600 / 0.9945 = 19,708.40;  short = 20,400 / 1.0055 = 20,288.41
    for side, lp in (("long", 19_600 / 0.9945), ("short", 20_400 / 1.0055)):
        row = _one("okx", mode="isolated", collateral={"USDT": 0.0}, mark=20_000.0, side=side,
                   size=1.0, entry=20_000.0, leverage=50, isolated_margin=400.0,
                   instrument={"type": "swap", "taker": 0.0005}, tiers=FLAT_05)
        assert row["liquidation_price"] == pytest.approx(lp, rel=1e-12)


def test_bankruptcy_prices() -> None:
    # margin + UPnL = 0. Linear: 20,000 ∓ 400/1. Inverse long 60,000 USD @ 50,000, margin
    # 0.12 BTC: 1/BP = 0.12/60,000 + 1/50,000 = 2.2e-5 → 45,454.55
    for side, bp in (("long", 19_600.0), ("short", 20_400.0)):
        row = _one("binance-usdm", mode="isolated", collateral={"USDT": 0.0}, mark=20_000.0,
                   side=side, size=1.0, entry=20_000.0, isolated_margin=400.0, tiers=FLAT_04)
        assert row["bankruptcy_price"] == pytest.approx(bp, rel=1e-12)
    row = _one("binance-coinm", mode="isolated", collateral={"BTC": 0.0}, mark=50_000.0,
               side="long", size=60_000, entry=50_000.0, symbol="BTC/USD:BTC",
               isolated_margin=0.12, instrument=INVERSE, tiers=FLAT_04)
    assert row["bankruptcy_price"] == pytest.approx(1 / 2.2e-5, rel=1e-12)


def test_none_where_no_price_exists() -> None:
    # a 1x long (wallet = notional) with no maintenance cannot go bankrupt at a positive price:
    # MB(P) = 20,000 + (P − 20,000) = P > 0
    zero = [{"min_notional": 0, "mmr": 0.0, "maintenance_amount": 0, "max_leverage": 125}]
    row = _one("binance-usdm", collateral={"USDT": 20_000.0}, mark=20_000.0, side="long",
               size=1.0, entry=20_000.0, leverage=1, tiers=zero)
    assert (row["liquidation_price"], row["bankruptcy_price"]) == (None, None)
    # a perfectly hedged pair with zero MMR has no liquidation price: MB − MM = 100 at any P
    out = evaluate({
        "profile": "binance-usdm", "position_mode": "hedge", "collateral": {"USDT": 100.0},
        "prices": {"BTC/USDT:USDT": {"mark": 20_000.0}},
        "positions": [{"symbol": "BTC/USDT:USDT", "side": side, "size": 1,
                       "entry_price": 20_000.0, "tiers": zero} for side in ("long", "short")]})
    assert [p["liquidation_price"] for p in out["positions"]] == [None, None]


def test_an_inverse_long_always_has_a_liquidation_price() -> None:
    # inverse long, 60,000 USD @ 50,000 with 10 BTC of margin (far above its 1.2 BTC value):
    # MB(P) = 10 + 60,000·(1/50,000 − 1/P) reaches MM = 0.005·60,000/P where
    # 60,000·1.005/P = 11.2 → P = 5,383.93 (a secant step from the mark overshoots below 0;
    # the bracketing search still finds it)
    row = _one("binance-coinm", collateral={"BTC": 10.0}, mark=50_000.0, side="long",
               size=60_000, entry=50_000.0, symbol="BTC/USD:BTC", leverage=1,
               instrument=INVERSE, tiers=FLAT_05)
    assert row["liquidation_price"] == pytest.approx(60_000 * 1.005 / 11.2, rel=1e-12)


def test_surplus_is_zero_at_lp_cross_with_tiers() -> None:
    # a short crossing several tiers on the way up: the surplus (MB − MM) recomputed by hand at
    # the LP from the tier table is zero
    tiers = load_profile("binance-usdm").tiers["BTC/USDT:USDT"]
    rows = [{"min_notional": t.min_notional, "max_notional": t.max_notional, "mmr": t.mmr,
             "maintenance_amount": t.maintenance_amount, "max_leverage": t.max_leverage}
            for t in tiers.tiers]
    row = _one("binance-usdm", collateral={"USDT": 150_000.0}, mark=50_000.0, side="short",
               size=60.0, entry=50_000.0, leverage=10, tiers=rows)
    lp = row["liquidation_price"]
    assert lp is not None
    assert lp > 50_000.0
    notional = 60.0 * lp
    tier = tiers.tier_for(notional)
    surplus = 150_000.0 - 60.0 * (lp - 50_000.0) - (notional * tier.mmr - tier.maintenance_amount)
    assert surplus == pytest.approx(0.0, abs=1e-6)


def test_price_root_brackets_and_bisects_a_kinked_surplus() -> None:
    # surplus with a kink at x = 0.8 (a tier boundary): 1 − 2(1 − x) above, 0.6 − 4(0.8 − x)
    # below → root at 0.65 (the secant from 1 lands on 0.5, where the sign already changed)
    def surplus(x: float) -> float:
        return 1.0 - 2.0 * (1.0 - x) if x >= 0.8 else 0.6 - 4.0 * (0.8 - x)

    assert price_root(surplus, long=True) == pytest.approx(0.65, rel=1e-12)
    assert price_root(lambda x: 1.0, long=True) is None


def test_the_published_formulas_reproduce_their_own_worked_examples() -> None:
    # the references' docstring examples (Bybit [BY1] §5.3 inverse cross 5,739.08, [BY5] §5.2
    # isolated 19,700, Binance [B1] 19,076.3052, [B2] 33,599.42)
    import doctest

    from tests.unit.margin import published_formulas

    result = doctest.testmod(published_formulas, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted == 5  # the Bybit inverse example is two statements
    assert result.failed == 0
