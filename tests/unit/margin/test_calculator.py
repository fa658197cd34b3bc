"""The margin calculator (DESIGN §4) and the ``backtester margin`` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import backtester
from backtester.cli import (
    cli,
    commands_margin,  # noqa: F401  (registers the command)
)
from backtester.errors import ConfigError
from backtester.margin import evaluate

FLAT_04 = [{"min_notional": 0, "max_notional": 50_000_000, "mmr": 0.004, "maintenance_amount": 0,
            "max_leverage": 125}]
FLAT_05 = [{"min_notional": 0, "max_notional": 50_000_000, "mmr": 0.005, "maintenance_amount": 0,
            "max_leverage": 100}]
LINEAR_SWAP = {"type": "swap", "linear": True, "contract_size": 1, "settle": "USDT"}


def design_example() -> dict[str, Any]:
    return {
        "profile": "binance-usdm", "mode": "cross", "position_mode": "one-way",
        "collateral": {"USDT": 1000.0},
        "prices": {"BTC/USDT:USDT": {"mark": 59000.0, "index": 59010.0}},
        "positions": [
            {"symbol": "BTC/USDT:USDT", "side": "long", "size": 0.5, "entry_price": 60000.0,
             "leverage": 20, "isolated_margin": None, "instrument": dict(LINEAR_SWAP),
             "tiers": [{"min_notional": 0, "max_notional": 50000, "mmr": 0.004,
                        "maintenance_amount": 0, "max_leverage": 125}]},
        ],
    }


def test_design_example_binance_usdm_cross() -> None:
    # notional 0.5 × 59,000 = 29,500; UPnL 0.5 × (59,000 − 60,000) = −500; MB = 1,000 − 500 = 500
    # MM = 29,500 × 0.4 % = 118; IM = 29,500 / 20 = 1,475; ratio 118 / 500 = 0.236
    # LP: 1,000 + 0.5 (P − 60,000) = 0.5 P × 0.004 → P = 29,000 / 0.498 = 58,232.93
    # BP: 1,000 + 0.5 (P − 60,000) = 0 → 58,000
    out = evaluate(design_example())
    assert out["valuation_currency"] == "USD"
    assert out["wallet_balance"] == pytest.approx(1_000.0)
    assert out["unrealized_pnl"] == pytest.approx(-500.0)
    assert out["margin_balance"] == pytest.approx(500.0)
    assert out["maintenance_margin"] == pytest.approx(118.0)
    assert out["initial_margin"] == pytest.approx(1_475.0)
    assert out["margin_ratio"] == pytest.approx(0.236)
    assert out["available"] == pytest.approx(-975.0)
    assert out["status"] == "ok"
    assert "exchange_margin_ratio" not in out
    (pos,) = out["positions"]
    assert pos["symbol"] == "BTC/USDT:USDT"
    assert pos["side"] == "long"
    assert pos["notional"] == pytest.approx(29_500.0)
    assert pos["tier"] == 1
    assert pos["liquidation_price"] == pytest.approx(29_000 / 0.498)
    assert pos["bankruptcy_price"] == pytest.approx(58_000.0)
    assert list(out) == ["valuation_currency", "margin_balance", "wallet_balance",
                         "unrealized_pnl", "initial_margin", "maintenance_margin",
                         "margin_ratio", "available", "status", "positions"]
    json.dumps(out, allow_nan=False)


def test_cross_two_positions_worked_by_hand() -> None:
    # binance-usdm cross, USDT 10,000.
    # BTC long 1 @ 60,000, mark 62,000, MMR 0.4 %: UPnL +2,000, MM 248, IM (10x) 6,200
    # ETH short 10 @ 3,000, mark 3,100, MMR 0.5 %: UPnL −1,000, MM 155, IM (10x) 3,100
    # MB = 10,000 + 2,000 − 1,000 = 11,000; MM = 403; IM = 9,300; available 1,700
    # LP BTC (ETH held at 3,100): 9,000 + (P − 60,000) = 155 + 0.004 P → P = 51,155 / 0.996
    # LP ETH (BTC held at 62,000): 12,000 − 10 (P − 3,000) = 248 + 0.05 P → P = 41,752 / 10.05
    # BP BTC: 9,000 + (P − 60,000) = 0 → 51,000;  BP ETH: 12,000 − 10 (P − 3,000) = 0 → 4,200
    snap = {
        "profile": "binance-usdm", "collateral": {"USDT": 10_000.0},
        "prices": {"BTC/USDT:USDT": {"mark": 62_000.0}, "ETH/USDT:USDT": {"mark": 3_100.0}},
        "positions": [
            {"symbol": "BTC/USDT:USDT", "side": "long", "size": 1, "entry_price": 60_000.0,
             "leverage": 10, "tiers": FLAT_04},
            {"symbol": "ETH/USDT:USDT", "side": "short", "size": 10, "entry_price": 3_000.0,
             "leverage": 10, "tiers": FLAT_05},
        ],
    }
    out = evaluate(snap)
    assert out["margin_balance"] == pytest.approx(11_000.0)
    assert out["maintenance_margin"] == pytest.approx(403.0)
    assert out["initial_margin"] == pytest.approx(9_300.0)
    assert out["available"] == pytest.approx(1_700.0)
    assert out["margin_ratio"] == pytest.approx(403 / 11_000)
    btc, eth = out["positions"]
    assert btc["liquidation_price"] == pytest.approx(51_155 / 0.996)
    assert eth["liquidation_price"] == pytest.approx(41_752 / 10.05)
    assert btc["bankruptcy_price"] == pytest.approx(51_000.0)
    assert eth["bankruptcy_price"] == pytest.approx(4_200.0)


def test_hedge_mode_long_and_short_share_one_lp_b1() -> None:
    # §2.3 hedge mode: long 1 @ 60,000 and short 0.5 @ 62,000, WB 5,000, MMR 0.4 %:
    # LP = (5,000 − 60,000 + 31,000) / (0.004 + 0.002 − 1 + 0.5) = −24,000 / −0.494
    snap = {
        "profile": "binance-usdm", "position_mode": "hedge", "collateral": {"USDT": 5_000.0},
        "prices": {"BTC/USDT:USDT": {"mark": 59_000.0}},
        "positions": [
            {"symbol": "BTC/USDT:USDT", "side": "long", "size": 1, "entry_price": 60_000.0,
             "tiers": FLAT_04},
            {"symbol": "BTC/USDT:USDT", "side": "short", "size": 0.5, "entry_price": 62_000.0,
             "tiers": FLAT_04},
        ],
    }
    out = evaluate(snap)
    long, short = out["positions"]
    assert long["liquidation_price"] == pytest.approx(24_000 / 0.494)
    assert short["liquidation_price"] == pytest.approx(24_000 / 0.494)
    assert out["initial_margin"] == pytest.approx((59_000 + 29_500) / 20)  # default leverage 20
    snap["position_mode"] = "one-way"
    with pytest.raises(ConfigError, match=r"positions\[1\].symbol: .* one-way mode"):
        evaluate(snap)


def test_isolated_bybit_example_section_5_2() -> None:
    # §5.2 [BY5]: 1 BTC @ 20,000, 50x, MMR 0.5 % → IM 400, MM 100, LP 19,700; BP 19,600
    snap = {
        "profile": "bybit", "mode": "isolated", "collateral": {"USDT": 1_000.0},
        "prices": {"BTC/USDT:USDT": {"mark": 20_000.0}},
        "positions": [{"symbol": "BTC/USDT:USDT", "side": "long", "size": 1,
                       "entry_price": 20_000.0, "leverage": 50, "isolated_margin": None}],
    }
    out = evaluate(snap)
    (pos,) = out["positions"]
    assert (pos["initial_margin"], pos["maintenance_margin"]) == pytest.approx((400.0, 100.0))
    assert pos["liquidation_price"] == pytest.approx(19_700.0)
    assert pos["bankruptcy_price"] == pytest.approx(19_600.0)
    assert out["available"] == pytest.approx(1_000.0)          # free balance
    assert out["wallet_balance"] == pytest.approx(1_400.0)     # free + isolated margin
    assert out["margin_ratio"] == pytest.approx(0.25)
    snap["prices"]["BTC/USDT:USDT"]["mark"] = 19_690.0         # below LP: 400 − 310 = 90 < 98.45
    assert evaluate(snap)["status"] == "liquidate"


def test_okx_isolated_and_exchange_ratio_section_6() -> None:
    # §6: isolated LP with taker: (20,000 − 400) / (1 − 0.005 − 0.0005)
    # exchange ratio = (margin + UPnL) / (MM + notional × taker) = 400 / (100 + 10)
    snap = {
        "profile": "okx", "mode": "isolated", "collateral": {"USDT": 0.0},
        "prices": {"BTC/USDT:USDT": {"mark": 20_000.0}},
        "positions": [{"symbol": "BTC/USDT:USDT", "side": "long", "size": 1,
                       "entry_price": 20_000.0, "leverage": 50, "isolated_margin": 400.0,
                       "instrument": {"type": "swap", "taker": 0.0005}, "tiers": FLAT_05}],
    }
    out = evaluate(snap)
    assert out["positions"][0]["liquidation_price"] == pytest.approx(19_600 / 0.9945)
    assert out["exchange_margin_ratio"] == pytest.approx(400 / 110)
    snap["mode"] = "cross"
    snap["collateral"] = {"USDT": 1_000.0}
    cross = evaluate(snap)
    assert cross["exchange_margin_ratio"] == pytest.approx(1_000 / 110)
    assert cross["margin_ratio"] == pytest.approx(0.1)


def test_binance_coinm_cross_example_section_3() -> None:
    # §3 [B13]: WB 101 BTC, long 100,000 contracts (CS 100) @ 45,000, MMR 12.5 %, cum 11.605;
    # leverage 4, the bracket's maximum (a cross liquidation price does not depend on it)
    snap = {
        "profile": "binance-coinm", "collateral": {"BTC": 101.0},
        "prices": {"BTC/USD:BTC": {"mark": 45_000.0}},
        "positions": [{"symbol": "BTC/USD:BTC", "side": "long", "size": 100_000,
                       "entry_price": 45_000.0, "leverage": 4,
                       "instrument": {"type": "swap", "linear": False, "contract_size": 100},
                       "tiers": [{"min_notional": 0, "mmr": 0.125, "maintenance_amount": 11.605,
                                  "max_leverage": 4}]}],
    }
    out = evaluate(snap)
    assert out["valuation_currency"] == "BTC"
    (pos,) = out["positions"]
    assert pos["notional"] == pytest.approx(10_000_000 / 45_000)
    assert pos["liquidation_price"] == pytest.approx(33_599.42, abs=0.01)
    # without the position's tiers the profile's BTC/USD:BTC table gives the same bracket
    del snap["positions"][0]["tiers"]
    (pos,) = evaluate(snap)["positions"]
    assert pos["liquidation_price"] == pytest.approx(33_599.42, abs=0.01)


def test_single_coin_pool_refuses_a_second_coin() -> None:
    snap = {
        "profile": "binance-coinm", "collateral": {"BTC": 1.0},
        "prices": {"ETH/USD:ETH": {"mark": 3_000.0}},
        "positions": [{"symbol": "ETH/USD:ETH", "side": "long", "size": 10,
                       "entry_price": 3_000.0, "tiers": FLAT_05}],
    }
    with pytest.raises(ConfigError, match=r"positions\[0\]\.instrument\.settle: .*one coin pool"):
        evaluate(snap)
    snap = {"profile": "deribit", "collateral": {"BTC": 1.0, "ETH": 1.0}}
    with pytest.raises(ConfigError, match=r"collateral\.\w+: .*one coin pool"):
        evaluate(snap)


def test_deribit_size_dependent_rates_section_7_2() -> None:
    # §7.2 [DB2]: 25 BTC @ 100,000 → IM 53,125 USDC, MM 28,125 USDC (profile margin_rates)
    snap = {
        "profile": "deribit", "collateral": {"USDC": 100_000.0},
        "prices": {"BTC/USDC:USDC": {"mark": 100_000.0, "index": 100_000.0}},
        "positions": [{"symbol": "BTC/USDC:USDC", "side": "long", "size": 25,
                       "entry_price": 100_000.0}],
    }
    out = evaluate(snap)
    assert out["valuation_currency"] == "USDC"
    (pos,) = out["positions"]
    assert pos["tier"] is None
    assert pos["initial_margin"] == pytest.approx(53_125.0)
    assert pos["maintenance_margin"] == pytest.approx(28_125.0)
    # LP: 100,000 + 25 (P − 100,000) = 25 P × 1.125 % → P = 2,400,000 / 24.71875
    assert pos["liquidation_price"] == pytest.approx(2_400_000 / 24.71875)
    # per-instrument override: SOL 6,000 @ 200 → IM 7 % = 84,000
    sol = {
        "profile": "deribit", "collateral": {"USDC": 100_000.0},
        "prices": {"SOL/USDC:USDC": {"mark": 200.0}},
        "positions": [{"symbol": "SOL/USDC:USDC", "side": "short", "size": 6_000,
                       "entry_price": 200.0, "instrument": {
                           "margin_rates": {"im": [0.04, 0.000005], "mm": [0.02, 0.000005]}}}],
    }
    assert evaluate(sol)["initial_margin"] == pytest.approx(84_000.0)


def test_usd_pool_collateral_with_haircuts() -> None:
    # bybit: USDT 1,000 + 0.1 BTC × 60,000 × 0.95 = 6,700; haircut override 0.5 → 4,000
    snap: dict[str, Any] = {"profile": "bybit", "collateral": {"USDT": 1_000.0, "BTC": 0.1},
                            "prices": {"BTC": {"index": 60_000.0}}}
    assert evaluate(snap)["wallet_balance"] == pytest.approx(6_700.0)
    snap["haircuts"] = {"BTC": 0.5}
    assert evaluate(snap)["wallet_balance"] == pytest.approx(4_000.0)
    with pytest.raises(ConfigError, match=r"collateral\.ETH: no USD price for ETH"):
        evaluate({"profile": "bybit", "collateral": {"ETH": 1.0}})
    with pytest.raises(ConfigError, match=r"collateral\.DOGE: .*haircuts\.DOGE"):
        evaluate({"profile": "bybit", "collateral": {"DOGE": 1.0},
                  "prices": {"DOGE": {"index": 0.1}}})


def test_negative_balance_is_a_liability_at_full_value() -> None:
    # Issue 14 item 9: 1 BTC at 45,000 with Bybit's 0.95 collateral ratio, and 4,000 USDC owed
    # after a short put settled: 45,000 × 0.95 − 4,000 × 1 (a debt takes no haircut) = 38,750
    # USD; nothing at risk: status ok, no requirement, available 38,750.
    snap: dict[str, Any] = {"profile": "bybit", "collateral": {"BTC": 1.0, "USDC": -4_000.0},
                            "prices": {"BTC": {"index": 45_000.0}}}
    out = evaluate(snap)
    assert out["margin_balance"] == pytest.approx(38_750.0)
    assert out["available"] == pytest.approx(38_750.0)
    assert (out["status"], out["initial_margin"], out["margin_ratio"]) == ("ok", 0.0, 0.0)
    # a debt needs no collateral ratio of its own (DOGE has none in Bybit's profile)
    owed = evaluate({"profile": "bybit", "collateral": {"USDT": 100.0, "DOGE": -100.0},
                     "prices": {"DOGE": {"index": 0.1}}})
    assert owed["margin_balance"] == pytest.approx(100.0 - 10.0)
    # one pool per settle asset (binance-usdm): the USDC pool is −4,000 on its own; a pool
    # holding a liability is liquidating once its margin balance reaches its maintenance (0
    # here) even with no position, as the engine rules; its ratio is undefined (null)
    pools = evaluate({"profile": "binance-usdm", "collateral": {"USDT": 1_000.0,
                                                                "USDC": -4_000.0}})
    assert pools["margin_balance"] == pytest.approx(-3_000.0)
    assert (pools["status"], pools["margin_ratio"]) == ("liquidate", None)
    # and a USD pool whose debt exceeds the haircut collateral: 0.05 BTC × 45,000 × 0.95 −
    # 4,000 = −1,862.5
    snap["collateral"] = {"BTC": 0.05, "USDC": -4_000.0}
    under = evaluate(snap)
    assert under["margin_balance"] == pytest.approx(-1_862.5)
    assert under["status"] == "liquidate"


def test_usd_pool_inverse_position_valued_at_index() -> None:
    # bybit inverse 60,000 USD long @ 50,000 (1 USD contracts), mark 50,000: MM 0.006 BTC,
    # valued at the BTC index 50,000 → 300 USD; IM 0.12 BTC → 6,000 USD
    snap = {
        "profile": "bybit", "collateral": {"USDT": 10_000.0},
        "prices": {"BTC/USD:BTC": {"mark": 50_000.0, "index": 50_000.0}},
        "positions": [{"symbol": "BTC/USD:BTC", "side": "long", "size": 60_000,
                       "entry_price": 50_000.0, "leverage": 10,
                       "instrument": {"type": "swap", "linear": False, "contract_size": 1},
                       "tiers": FLAT_05}],
    }
    out = evaluate(snap)
    assert out["positions"][0]["maintenance_margin"] == pytest.approx(0.006)
    assert out["maintenance_margin"] == pytest.approx(300.0)
    assert out["initial_margin"] == pytest.approx(6_000.0)


def test_status_call_and_liquidate() -> None:
    snap = design_example()
    snap["collateral"] = {"USDT": 640.0}     # MB 140, MM 118 → 0.843 ≥ 0.8
    assert evaluate(snap)["status"] == "call"
    snap["collateral"] = {"USDT": 600.0}     # MB 100 < MM 118
    out = evaluate(snap)
    assert out["status"] == "liquidate"
    snap["collateral"] = {"USDT": 400.0}     # MB −100
    out = evaluate(snap)
    assert (out["status"], out["margin_ratio"]) == ("liquidate", None)
    snap["collateral"] = {"USDT": 640.0}
    snap["call_level"] = 0.9
    assert evaluate(snap)["status"] == "ok"


def test_time_required_for_futures_and_expiry_checked() -> None:
    snap = {
        "profile": "binance-usdm", "collateral": {"USDT": 1_000.0},
        "prices": {"BTC/USDT:USDT-241227": {"mark": 60_000.0}},
        "positions": [{"symbol": "BTC/USDT:USDT-241227", "side": "short", "size": 0.1,
                       "entry_price": 61_000.0, "tiers": FLAT_04,
                       "instrument": {"type": "future"}}],
    }
    with pytest.raises(ConfigError, match=r"^time: required"):
        evaluate(snap)
    snap["time"] = "2024-12-01T00:00:00Z"
    assert evaluate(snap)["unrealized_pnl"] == pytest.approx(100.0)
    snap["time"] = "2025-01-01T00:00:00Z"
    with pytest.raises(ConfigError, match=r"positions\[0\]\.instrument\.expiry: .*expired"):
        evaluate(snap)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"positions": [{"side": "buy"}]},
         "positions[0].side: expected 'long' or 'short', got 'buy'"),
        ({"positions": [{"size": -1}]}, "positions[0].size: expected a positive number"),
        ({"positions": [{"leverage": "x"}]}, "positions[0].leverage: expected a number"),
        ({"positions": [{"instrument": {"type": "spot"}}]},
         "positions[0].instrument.type: expected 'swap', 'future' or 'option'"),
        ({"positions": [{"instrument": {"linear": "yes"}}]},
         "positions[0].instrument.linear: expected true or false"),
        ({"positions": [{"tiers": [{"min_notional": 0, "mmr": 2, "max_leverage": 1}]}]},
         "positions[0].tiers[0].mmr"),
        ({"positions": [{"sise": 1}]}, "positions[0].sise: unknown field (did you mean 'size'?)"),
        ({"profile": "binance"}, "profile: expected one of"),
        ({"mode": "margin"}, "mode: expected 'cross' or 'isolated' or 'portfolio'"),
        ({"position_mode": "both"}, "position_mode: expected 'one-way' or 'hedge'"),
        ({"collateral": {"USDT": "-5"}}, "collateral.USDT: expected a number, got '-5'"),
        ({"haircuts": {"BTC": 1.5}}, "haircuts.BTC: expected a number <= 1"),
        ({"prices": {}}, "prices.BTC/USDT:USDT: missing"),
        ({"prices": {"BTC/USDT:USDT": {"mark": 0}}},
         "prices.BTC/USDT:USDT.mark: expected a positive"),
        ({"colateral": {}}, "colateral: unknown field (did you mean 'collateral'?)"),
        ({"time": "yesterday"}, "time: expected an ISO 8601 UTC time"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], message: str) -> None:
    snap = design_example()
    for key, value in change.items():
        if key == "positions":
            snap["positions"][0].update(value[0])
        else:
            snap[key] = value
    with pytest.raises(ConfigError) as info:
        evaluate(snap)
    assert str(info.value).startswith(message)


def test_unknown_symbol_needs_tiers() -> None:
    snap = design_example()
    del snap["positions"][0]["tiers"]
    snap["positions"][0]["symbol"] = "DOGE/USDT:USDT"
    snap["prices"] = {"DOGE/USDT:USDT": {"mark": 0.1}}
    with pytest.raises(ConfigError, match=r"positions\[0\]\.tiers: no tier table for DOGE"):
        evaluate(snap)
    snap["positions"][0]["symbol"] = "BTC/USDT:USDT"       # known to the profile: 2024 table
    snap["prices"] = {"BTC/USDT:USDT": {"mark": 59_000.0}}
    assert evaluate(snap)["positions"][0]["tier"] == 1


OPTION_SNAPSHOT = {
    "profile": "bybit", "time": "2024-06-01T00:00:00Z", "collateral": {"USDC": 10_000.0},
    "prices": {"BTC/USDC:USDC-240628-70000-C": {"mark": 300.0, "underlying": 30_000.0}},
    "positions": [{"symbol": "BTC/USDC:USDC-240628-70000-C", "side": "short", "size": 1,
                   "entry_price": 350.0, "instrument": {"type": "option"}}],
}


def test_short_option_margin_reproduces_bybit_example() -> None:
    # Bybit §5.4 [BY9]: f = 3 %, liquidation fee 0.2 %, index 30,000, mark 300, short 1:
    # MM = max(3 % x 30,000, 3 % x 300) + 300 + 0.2 % x 30,000 = 900 + 300 + 60 = 1,260 USDC;
    # account MM rate = 1,260 / 10,000 = 12.6 % (Bybit cross: the margin balance is the wallet
    # plus futures PnL; the options' value does not enter it).
    out = evaluate(OPTION_SNAPSHOT)
    assert out["maintenance_margin"] == pytest.approx(1_260.0)
    assert out["margin_ratio"] == pytest.approx(0.126)
    pos = out["positions"][0]
    assert (pos["notional"], pos["liquidation_price"], pos["bankruptcy_price"]) == (
        30_000.0, None, None)


def test_portfolio_mode_nets_a_delta_hedged_strangle() -> None:
    # Short 1 call and 1 put 10 % out of the money (linear USDC, 30 days, vol 60 %) hedged by
    # a perp: standard margin sums the legs; portfolio margin takes the grid's worst loss,
    # which the hedge and the opposite legs offset, so it is smaller.
    snap = {
        "profile": "bybit", "mode": "portfolio", "time": "2024-06-01T00:00:00Z",
        "collateral": {"USDC": 50_000.0},
        "prices": {
            "BTC/USDC:USDC-240701-66000-C": {"mark": 600.0, "underlying": 60_000.0, "iv": 0.6},
            "BTC/USDC:USDC-240701-54000-P": {"mark": 550.0, "underlying": 60_000.0, "iv": 0.6},
            "BTC/USDC:USDC": {"mark": 60_000.0, "index": 60_000.0}},
        "positions": [
            {"symbol": "BTC/USDC:USDC-240701-66000-C", "side": "short", "size": 1,
             "entry_price": 600.0, "instrument": {"type": "option"}},
            {"symbol": "BTC/USDC:USDC-240701-54000-P", "side": "short", "size": 1,
             "entry_price": 550.0, "instrument": {"type": "option"}},
            {"symbol": "BTC/USDC:USDC", "side": "long", "size": 0.01, "entry_price": 60_000.0,
             "leverage": 10, "tiers": [{"min_notional": 0, "max_notional": 1e12, "mmr": 0.005,
                                        "maintenance_amount": 0, "max_leverage": 100}]}],
    }
    out = evaluate(snap)
    standard = out["portfolio"]["standard_initial_margin"]
    assert 0 < out["initial_margin"] < standard
    assert out["maintenance_margin"] == pytest.approx(0.8 * out["initial_margin"])
    assert out["status"] == "ok"


def test_package_exports() -> None:
    out = backtester.margin(design_example())
    assert out["status"] == "ok"


def test_cli_file_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(design_example()))
    runner = CliRunner()
    result = runner.invoke(cli, ["margin", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["maintenance_margin"] == pytest.approx(118.0)
    result = runner.invoke(cli, ["margin", "-", "--indent", "0"],
                           input=json.dumps(design_example()))
    assert result.exit_code == 0
    assert len(result.output.strip().splitlines()) == 1


def test_cli_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = design_example()
    bad["positions"][0]["side"] = "buy"
    result = runner.invoke(cli, ["margin", "-"], input=json.dumps(bad))
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: positions[0].side: expected 'long' or 'short', got 'buy'")
    result = runner.invoke(cli, ["margin", "-"], input="{not json")
    assert result.exit_code == 2
    assert result.output.startswith("error: stdin: not valid JSON")
    result = runner.invoke(cli, ["margin", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    assert "missing.json" in result.output


def test_cli_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["margin", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "backtester margin -" in result.output


def bybit_inverse_cross_example() -> dict[str, Any]:
    # margin-rules §5.3 [BY1]: 0.5 BTC, long 10,000 USD of the inverse perp @ 8,000, MMR 0.5 %,
    # taker 0.075 % (the page's rate)
    return {
        "profile": "bybit", "mode": "cross", "collateral": {"BTC": 0.5},
        "prices": {"BTC/USD:BTC": {"mark": 8_000.0, "index": 8_000.0},
                   "BTC": {"index": 8_000.0}},
        "positions": [{
            "symbol": "BTC/USD:BTC", "side": "long", "size": 10_000, "entry_price": 8_000.0,
            "leverage": 100,
            "instrument": {"type": "swap", "linear": False, "contract_size": 1,
                           "settle": "BTC", "taker": 0.00075},
            "tiers": [{"min_notional": 0, "max_notional": 1e9, "mmr": 0.005,
                       "max_leverage": 100}]}],
    }


def test_bybit_inverse_cross_reproduces_section_5_3() -> None:
    # [BY1] bankruptcy price BP = (1 + 0.00075) C / (C / EP + balance)
    #   = 1.00075 x 10,000 / (1.25 + 0.5) = 10,007.5 / 1.75 = 5,718.5714...   (page: 5,718.57)
    # [BY1] liquidation price: C (1/EP - 1/LP) = -(balance - (C/EP) MMR - C x 0.00075 / BP)
    #   (C/EP) MMR = 1.25 x 0.005 = 0.00625; C x 0.00075 / BP = 7.5 x 1.75 / 10,007.5
    #   = 0.0013115163627...; 1/LP = 1/8,000 + (0.5 - 0.00625 - 0.0013115163627) / 10,000
    #   -> LP = 10,000 / (1.25 + 0.4924384836373) = 5,739.0840...
    #   (the page prints 5,739.50; its own formula gives 5,739.08, which is what we test)
    # The 0.5 BTC margins the BTC-settled contract at face value (no 0.95 haircut):
    #   margin balance 0.5 x 8,000 = 4,000 USD.
    out = evaluate(bybit_inverse_cross_example())
    (pos,) = out["positions"]
    assert pos["bankruptcy_price"] == pytest.approx(10_007.5 / 1.75, rel=1e-12)
    cost = 7.5 * 1.75 / 10_007.5
    lp = 10_000 / (1.25 + 0.5 - 0.00625 - cost)
    assert pos["liquidation_price"] == pytest.approx(lp, rel=1e-12)
    assert round(pos["liquidation_price"], 2) == 5_739.08
    assert out["margin_balance"] == pytest.approx(4_000.0)
    assert pos["maintenance_margin"] == pytest.approx(0.00625)


def test_usd_pool_coin_collateral_moves_with_a_linear_long_in_the_bankruptcy_price() -> None:
    # bybit, 1 BTC collateral (haircut 0.95), long 1 BTC/USDT perp @ 50,000, mark 50,000,
    # taker 0.055 % (the profile's): the collateral moves with the position, and bybit's
    # bankruptcy price leaves room for the fee to close there ([BY1]):
    #   0.95 P + (P - 50,000) - 0.00055 P = 0 -> BP = 50,000 / 1.94945
    # LP (MB = MM at the mark): 0.95 P + (P - 50,000) = 0.005 P -> P = 50,000 / 1.945
    # (held fixed, the collateral would give BP 50,000 - 47,500 = 2,500)
    snap = {
        "profile": "bybit", "collateral": {"BTC": 1.0},
        "prices": {"BTC/USDT:USDT": {"mark": 50_000.0, "index": 50_000.0},
                   "BTC": {"index": 50_000.0}},
        "positions": [{"symbol": "BTC/USDT:USDT", "side": "long", "size": 1,
                       "entry_price": 50_000.0, "leverage": 10,
                       "instrument": dict(LINEAR_SWAP), "tiers": FLAT_05}],
    }
    (pos,) = evaluate(snap)["positions"]
    assert pos["bankruptcy_price"] == pytest.approx(50_000 / 1.94945, rel=1e-12)
    assert pos["liquidation_price"] == pytest.approx(50_000 / 1.945, rel=1e-12)
