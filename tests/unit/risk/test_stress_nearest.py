"""Nearest liquidating move (each underlying alone and all together, down and up) and isolated
losses capped at the allocation in stress results (issue 14 item 10). Every expected number is
worked by hand in a comment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backtester.margin.calculator import evaluate
from backtester.risk.scenarios import Scenario
from backtester.risk.shock import (
    Direction,
    account_equity,
    judge,
    shock,
    smallest_crash,
    smallest_move,
)
from backtester.risk.stress import nearest_liquidation, stress_test

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
# one flat bracket: MM = 0.5 % x notional
FLAT = [{"min_notional": 0, "max_notional": 1e12, "mmr": 0.005, "maintenance_amount": 0,
         "max_leverage": 100}]


def perp(symbol: str, side: str, size: float, entry: float, **extra: Any) -> dict[str, Any]:
    return {"symbol": symbol, "side": side, "size": size, "entry_price": entry, "leverage": 10,
            "tiers": FLAT, **extra}


def book(collateral: float, *positions: dict[str, Any], mode: str = "cross") -> dict[str, Any]:
    # bybit, one USD pool of USDT; BTC at 50,000 and ETH at 2,000
    return {"profile": "bybit", "mode": mode, "time": "2025-03-01T00:00:00Z",
            "collateral": {"USDT": collateral},
            "prices": {BTC: {"mark": 50_000.0, "index": 50_000.0},
                       ETH: {"mark": 2_000.0, "index": 2_000.0}},
            "positions": list(positions)}


def is_liquidating(snap: dict[str, Any], moves: dict[str, float]) -> bool:
    return evaluate(shock(snap, moves))["status"] == "liquidate"


# --- cross: hedged pair, short only, long only ----------------------------------------------

def test_hedged_pair_liquidates_on_one_leg_alone_not_all_together() -> None:
    # 10,000 USDT; long 1 BTC @ 50,000 and short 25 ETH @ 2,000 (50,000 each side).
    # BTC moved by b, ETH by e: equity = 10,000 + 50,000 b - 50,000 e;
    # MM = 0.5 % x (50,000 (1 + b) + 50,000 (1 + e)).
    # * all together (b = e = x): equity 10,000 for every x, MM = 500 (1 + x): liquidates only
    #   at 1 + x >= 20, i.e. +1,900 %, beyond the +1,000 % searched -> none either way;
    # * BTC alone down: 10,000 + 50,000 b <= 500 + 250 b -> b <= -9,500 / 49,750 = -19.0955 %;
    #   BTC alone up only adds equity (50,000 b) faster than MM (250 b) -> none;
    # * ETH alone up: 10,000 - 50,000 e <= 500 + 250 e -> e >= 9,500 / 50,250 = +18.9055 %;
    #   ETH alone down -> none.
    # The nearest is ETH up (+18.91 %), a hair closer than BTC down (-19.10 %).
    snap = book(10_000.0, perp(BTC, "long", 1, 50_000.0), perp(ETH, "short", 25, 2_000.0))
    btc_down, eth_up = -9_500.0 / 49_750.0, 9_500.0 / 50_250.0
    result = nearest_liquidation(snap)
    moves = {(c.underlying, c.direction.value): c.move for c in result.moves}
    assert list(moves) == [("all", "down"), ("all", "up"), ("BTC", "down"), ("BTC", "up"),
                           ("ETH", "down"), ("ETH", "up")]
    assert moves["all", "down"] is None
    assert moves["all", "up"] is None
    assert moves["BTC", "up"] is None
    assert moves["ETH", "down"] is None
    assert moves["BTC", "down"] == pytest.approx(btc_down, abs=1e-4)
    assert moves["ETH", "up"] == pytest.approx(eth_up, abs=1e-4)
    nearest = result.nearest
    assert nearest is not None
    assert (nearest.underlying, nearest.direction, nearest.assets) == ("ETH", Direction.UP,
                                                                       ("ETH",))
    eth_move, btc_move = nearest.move, moves["BTC", "down"]
    assert eth_move is not None
    assert btc_move is not None
    assert eth_move == pytest.approx(eth_up, abs=1e-4)
    assert eth_move >= eth_up                              # the liquidating end of the bracket
    assert nearest.liquidated == (f"{ETH} short",)
    # the moves found are the real boundaries: at them the account liquidates, 0.1 % short of
    # them it does not (the other underlying held at its mark)
    assert is_liquidating(snap, {"ETH": eth_move})
    assert not is_liquidating(snap, {"ETH": eth_move - 0.001})
    assert is_liquidating(snap, {"BTC": btc_move})
    assert not is_liquidating(snap, {"BTC": btc_move + 0.001})
    # the uniform crash (what stress reported alone before) finds nothing: the hedge is blind
    assert smallest_crash(snap) is None


def test_stress_report_keeps_the_old_fields_and_adds_the_nearest_move() -> None:
    # the hedged pair above, through stress_test and its JSON
    snap = book(10_000.0, perp(BTC, "long", 1, 50_000.0), perp(ETH, "short", 25, 2_000.0))
    report = stress_test(snap, scenarios=[])
    assert report.smallest_crash.move is None               # all down: none
    assert report.smallest_crash.assets == ("BTC", "ETH")
    assert report.smallest_btc_crash is not None
    assert report.smallest_btc_crash.move == pytest.approx(-9_500.0 / 49_750.0, abs=1e-4)
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["smallest_crash"]["move"] is None
    assert data["smallest_btc_crash"]["move"] == report.smallest_btc_crash.move
    nearest = data["nearest_liquidation"]
    assert nearest["nearest"]["underlying"] == "ETH"
    assert nearest["nearest"]["direction"] == "up"
    assert nearest["nearest"]["move"] == pytest.approx(9_500.0 / 50_250.0, abs=1e-4)
    assert nearest["limits"] == {"down": -0.99, "up": 10.0}
    assert len(nearest["moves"]) == 6


def test_short_only_book_liquidates_only_on_a_rise() -> None:
    # short 1 BTC @ 50,000 on C USDT: equity = C - 50,000 x, MM = 250 (1 + x)
    # -> liquidates at x = (C - 250) / 50,250 upwards; a fall only helps.
    # C = 10,000 (5x): +19.403 %; C = 100,000 (0.5x): +198.507 %, past the fine +100 % scan
    for collateral in (10_000.0, 100_000.0):
        snap = book(collateral, perp(BTC, "short", 1, 50_000.0))
        del snap["prices"][ETH]
        expected = (collateral - 250.0) / 50_250.0
        result = nearest_liquidation(snap)
        assert [(c.underlying, c.direction) for c in result.moves] == [("BTC", "down"),
                                                                       ("BTC", "up")]
        assert result.moves[0].move is None
        assert result.nearest is not None
        assert result.nearest.direction is Direction.UP
        assert result.nearest.move == pytest.approx(expected, abs=1e-4)
        # the calculator's own liquidation price says the same
        lp = evaluate(snap)["positions"][0]["liquidation_price"]  # type: ignore[index]
        assert lp / 50_000.0 - 1.0 == pytest.approx(expected, rel=1e-9)
        # the old fall-only answer is unchanged: none
        assert smallest_crash(snap) is None
    # a rise the search does not reach: +1,000 % at most (C = 600,000 needs +1,193 %)
    far = book(600_000.0, perp(BTC, "short", 1, 50_000.0))
    del far["prices"][ETH]
    assert smallest_move(far, direction=Direction.UP) is None
    assert smallest_move(far, direction=Direction.UP, limit=12.0) == pytest.approx(
        599_750.0 / 50_250.0, abs=1e-4)


def test_long_only_book_liquidates_only_on_a_fall() -> None:
    # long 1 BTC @ 50,000 on 10,000: 10,000 + 50,000 x = 250 (1 + x) -> x = -9,750 / 49,750
    # = -19.598 %; a rise only adds equity
    snap = book(10_000.0, perp(BTC, "long", 1, 50_000.0))
    del snap["prices"][ETH]
    result = nearest_liquidation(snap)
    assert result.moves[1].move is None                      # BTC up: none to +1,000 %
    assert result.nearest is not None
    assert (result.nearest.underlying, result.nearest.direction) == ("BTC", Direction.DOWN)
    assert result.nearest.move == pytest.approx(-9_750.0 / 49_750.0, abs=1e-4)
    # one asset: the stress report's uniform crash is the same search
    report = stress_test(snap, scenarios=[])
    assert report.smallest_crash.move == result.nearest.move
    assert report.smallest_crash.underlying == "all"
    assert report.smallest_btc_crash is None


def test_already_liquidating_account_is_at_distance_zero() -> None:
    # MM 250 + 10 > 100 of collateral: every search answers 0.0 and the headline is the
    # all-together row (no direction or single underlying is singled out)
    snap = book(100.0, perp(BTC, "long", 1, 50_000.0), perp(ETH, "long", 1, 2_000.0))
    result = nearest_liquidation(snap)
    assert {c.move for c in result.moves} == {0.0}
    assert result.nearest is not None
    assert (result.nearest.move, result.nearest.underlying) == (0.0, "all")


# --- isolated: a position loses at most its allocation --------------------------------------

def isolated_pair() -> dict[str, Any]:
    # bybit isolated, 1,000 USDT free; BTC long 1 @ 50,000 with 5,000 allocated, ETH short
    # 10 @ 2,000 with 4,000 allocated. Equity = 1,000 + 5,000 + 4,000 = 10,000.
    return book(1_000.0, perp(BTC, "long", 1, 50_000.0, isolated_margin=5_000.0),
                perp(ETH, "short", 10, 2_000.0, isolated_margin=4_000.0), mode="isolated")


def test_isolated_crash_loses_at_most_the_bankrupt_positions_allocation() -> None:
    # BTC -20 %, ETH -10 %: BTC's own balance 5,000 + (40,000 - 50,000) = -5,000 -> counts 0
    # (the 5,000 allocation is lost, the other 5,000 is the insurance fund's); ETH short gains
    # 10 x 200 = 2,000 -> its own balance 6,000 (MM 0.5 % x 18,000 = 90: ok).
    # equity = 1,000 + 0 + 6,000 = 7,000; change = -5,000 (allocation) + 2,000 = -3,000
    # (the uncapped margin balance would say 2,000 and -8,000)
    snap = isolated_pair()
    assert account_equity(snap) == pytest.approx(10_000.0)
    r = judge(snap, name="crash", moves={"BTC": -0.2, "ETH": -0.1})
    assert r.equity == pytest.approx(7_000.0)
    assert r.equity_change == pytest.approx(-5_000.0 + 2_000.0)
    assert r.status == "liquidate"                 # BTC's own balance is below its MM
    assert r.liquidated == (f"{BTC} long",)
    assert r.bankrupt_positions == (f"{BTC} long",)
    assert r.is_bankrupt is False                  # the account is not: its loss is capped
    assert r.margin_ratio is None                  # the worst position has no positive balance
    # the same through stress_test (base equity floored the same way)
    report = stress_test(snap, scenarios=[Scenario(name="crash",
                                                   moves={"BTC": -0.2, "ETH": -0.1})])
    assert report.equity == pytest.approx(10_000.0)
    assert report.scenarios[0].equity_change == pytest.approx(-3_000.0)


def test_isolated_position_past_liquidation_but_not_bankruptcy_keeps_its_remainder() -> None:
    # BTC -9.6 %: mark 45,200; own balance 5,000 - 4,800 = 200 < MM 0.5 % x 45,200 = 226
    # -> liquidating, not bankrupt. Stress values at mark without the liquidation fee, so the
    # 200 left still counts: equity = 1,000 + 200 + 4,000 = 5,200 (change -4,800)
    r = judge(isolated_pair(), name="x", moves={"BTC": -0.096})
    assert r.status == "liquidate"
    assert r.liquidated == (f"{BTC} long",)
    assert r.bankrupt_positions == ()
    assert r.equity == pytest.approx(5_200.0)


def test_isolated_nearest_move_is_each_positions_own() -> None:
    # each position judged on its own allocation:
    # BTC long: 5,000 + (P - 50,000) = 0.5 % P -> P = 45,000 / 0.995 -> -9.548 %
    # ETH short: 4,000 - 10 (P - 2,000) = 0.5 % x 10 P -> P = 24,000 / 10.05 -> +19.403 %
    # every underlying together: BTC's fall decides down, ETH's rise up; the headline ties
    # between BTC alone and all together and names the single underlying
    snap = isolated_pair()
    btc = 45_000.0 / 0.995 / 50_000.0 - 1.0
    eth = 24_000.0 / 10.05 / 2_000.0 - 1.0
    result = nearest_liquidation(snap)
    moves = {(c.underlying, c.direction.value): c.move for c in result.moves}
    assert moves["BTC", "down"] == pytest.approx(btc, abs=1e-4)
    assert moves["ETH", "up"] == pytest.approx(eth, abs=1e-4)
    assert moves["all", "down"] == pytest.approx(btc, abs=1e-4)
    assert moves["all", "up"] == pytest.approx(eth, abs=1e-4)
    assert moves["BTC", "up"] is None
    assert moves["ETH", "down"] is None
    assert result.nearest is not None
    assert (result.nearest.underlying, result.nearest.direction) == ("BTC", Direction.DOWN)
    assert result.nearest.liquidated == (f"{BTC} long",)
