"""Stress tests on hand-built accounts; every expected number is worked in a comment."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtester.errors import ConfigError, DataError
from backtester.margin.calculator import evaluate
from backtester.pricing import price, years_between
from backtester.risk.montecarlo import liquidation_probability, returns_from_positions
from backtester.risk.scenarios import Grid, grid_scenarios, load_scenarios, parse_range
from backtester.risk.shock import judge, liquidated_positions, shock, smallest_crash
from backtester.risk.stress import LoadedSnapshot, distance_series, load_snapshot, stress_test
from backtester.timeutil import parse_utc_ms

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
BTC_FUT = "BTC/USDT:USDT-250627"
FLAT = [{"min_notional": 0, "max_notional": 1e12, "mmr": 0.005, "maintenance_amount": 0,
         "max_leverage": 100}]
FLAT_1PCT = [{**FLAT[0], "mmr": 0.01}]


def perp(symbol: str, side: str, size: float, entry: float, *,
         tiers: list[dict[str, Any]] = FLAT, **extra: Any) -> dict[str, Any]:
    return {"symbol": symbol, "side": side, "size": size, "entry_price": entry, "leverage": 10,
            "tiers": tiers, **extra}


def long_btc(collateral: float = 10_000.0) -> dict[str, Any]:
    # 1 BTC long at 50,000 on 10,000 USDT (bybit one USD pool, flat 0.5 % maintenance)
    return {"profile": "bybit", "time": "2025-03-01T00:00:00Z",
            "collateral": {"USDT": collateral},
            "prices": {BTC: {"mark": 50_000.0, "index": 50_000.0}},
            "positions": [perp(BTC, "long", 1, 50_000.0)]}


def prices(snapshot: dict[str, object]) -> Any:
    return snapshot["prices"]


def first_position(out: dict[str, object]) -> Any:
    return out["positions"][0]  # type: ignore[index]


# --- shocks on a linear perp long -------------------------------------------------------------

def test_linear_perp_long_after_minus_10_and_minus_30_percent() -> None:
    snap = long_btc()
    # -10 %: mark 45,000; UPnL = 1 x (45,000 - 50,000) = -5,000; equity = 10,000 - 5,000 = 5,000;
    # MM = 0.5 % x 45,000 = 225; ratio = 225 / 5,000 = 4.5 % -> ok
    r = judge(snap, name="-10%", moves={"BTC": -0.10})
    assert r.equity == pytest.approx(5_000.0)
    assert r.equity_change == pytest.approx(-5_000.0)
    assert r.maintenance_margin == pytest.approx(225.0)
    assert r.margin_ratio == pytest.approx(0.045)
    assert (r.status, r.liquidated, r.is_bankrupt) == ("ok", (), False)
    # -30 %: mark 35,000; UPnL = -15,000; equity = -5,000 <= MM 175 -> liquidate, bankrupt
    r = judge(snap, name="-30%", moves={"BTC": -0.30})
    assert r.equity == pytest.approx(-5_000.0)
    assert (r.status, r.liquidated, r.is_bankrupt) == ("liquidate", (f"{BTC} long",), True)


def test_shock_moves_every_price_of_the_asset_and_leaves_input_alone() -> None:
    snap = long_btc()
    snap["prices"][ETH] = {"mark": 2_000.0, "index": 2_001.0}
    before = copy.deepcopy(snap)
    out = shock(snap, {"BTC": -0.2})
    assert prices(out)[BTC] == {"mark": 40_000.0, "index": 40_000.0}
    assert prices(out)[ETH] == {"mark": 2_000.0, "index": 2_001.0}   # not named: still
    assert prices(shock(snap, {"*": -0.5}))[ETH]["mark"] == 1_000.0   # "*": every asset
    assert snap == before
    with pytest.raises(ConfigError, match=r"moves\.BTC: expected a finite move above -1"):
        shock(snap, {"BTC": -1.0})


def test_smallest_uniform_crash_equals_the_hand_computed_liquidation_move() -> None:
    # liquidation when 10,000 + (m - 50,000) = 0.5 % x m  ->  0.995 m = 40,000
    # -> m = 40,201.005; move = 40,201.005 / 50,000 - 1 = -19.598 %
    snap = long_btc()
    expected = 40_000.0 / 0.995 / 50_000.0 - 1.0
    move = smallest_crash(snap)
    assert move is not None
    assert move == pytest.approx(expected, abs=0.001)
    assert move <= expected                # the liquidating side of the bracket
    # the calculator's own liquidation price says the same
    lp = first_position(evaluate(snap))["liquidation_price"]
    assert lp / 50_000.0 - 1.0 == pytest.approx(expected, abs=1e-9)
    assert smallest_crash(snap, ["BTC"]) == pytest.approx(move)


def test_smallest_crash_is_zero_when_liquidating_and_none_without_downside() -> None:
    assert smallest_crash(long_btc(collateral=100.0)) == 0.0   # MM 250 > equity 100
    short = long_btc()
    short["positions"][0]["side"] = "short"
    assert smallest_crash(short) is None                       # a fall only helps a short


# --- hedges and collateral ------------------------------------------------------------------

def hedged_book(*, with_future: bool) -> dict[str, Any]:
    snap = long_btc(collateral=3_000.0)
    if with_future:
        snap["prices"][BTC_FUT] = {"mark": 51_000.0, "index": 50_000.0}
        snap["positions"].append(perp(BTC_FUT, "short", 1, 51_000.0))
    return snap


def test_hedged_book_is_hurt_less_than_the_same_leg_unhedged() -> None:
    # -30 %: perp 50,000 -> 35,000: -15,000; future 51,000 -> 35,700: +15,300 (short)
    # hedged equity = 3,000 - 15,000 + 15,300 = 3,300; MM = 0.5 % x (35,000 + 35,700) = 353.5
    # unhedged equity = 3,000 - 15,000 = -12,000 -> liquidate
    hedged = judge(hedged_book(with_future=True), name="h", moves={"BTC": -0.3})
    alone = judge(hedged_book(with_future=False), name="u", moves={"BTC": -0.3})
    assert hedged.equity == pytest.approx(3_300.0)
    assert hedged.maintenance_margin == pytest.approx(353.5)
    assert hedged.status == "ok"
    assert alone.equity == pytest.approx(-12_000.0)
    assert alone.status == "liquidate"
    assert hedged.equity_change > alone.equity_change
    assert smallest_crash(hedged_book(with_future=True)) is None
    assert smallest_crash(hedged_book(with_future=False)) is not None


def test_btc_collateral_falls_with_btc_at_its_haircut() -> None:
    # 1 BTC collateral at 60,000 x haircut 0.95 (bybit profile) = 57,000, plus 1 BTC perp long
    # at 60,000. BTC -20 %: collateral 0.95 x 48,000 = 45,600; perp -12,000 -> equity 33,600;
    # change = -(0.95 x 12,000) - 12,000 = -23,400
    snap = {"profile": "bybit", "collateral": {"BTC": 1.0},
            "prices": {"BTC": {"index": 60_000.0}, BTC: {"mark": 60_000.0, "index": 60_000.0}},
            "positions": [perp(BTC, "long", 1, 60_000.0)]}
    assert evaluate(snap)["margin_balance"] == pytest.approx(57_000.0)
    r = judge(snap, name="btc-20", moves={"BTC": -0.2})
    assert r.equity == pytest.approx(33_600.0)
    assert r.equity_change == pytest.approx(-23_400.0)
    # liquidation: 57,000 (1 + x) + 60,000 x = 0.5 % x 60,000 (1 + x)
    # -> 116,700 x = -56,700 -> x = -48.586 %
    move = smallest_crash(snap)
    assert move == pytest.approx(-56_700.0 / 116_700.0, abs=0.001)
    # the haircut is used: at 100 % collateral value the crash would be -49.79 % instead
    full = {**snap, "haircuts": {"BTC": 1.0}}
    assert smallest_crash(full) == pytest.approx(-59_700.0 / 119_700.0, abs=0.001)


# --- which positions the profile would liquidate --------------------------------------------

def test_cross_liquidation_closes_the_largest_maintenance_first_until_healthy() -> None:
    # 10,000 USDT; BTC long 1 @ 50,000 (MM 0.5 %), ETH long 10 @ 2,000 (MM 1 %).
    # BTC -19.5 %: mark 40,250, UPnL -9,750 -> equity 250; MM = 201.25 + 200 = 401.25 -> liquidate
    # close BTC (largest MM, 201.25): its loss is booked, equity stays 250; MM 200 < 250 -> stop
    snap = long_btc()
    snap["prices"][ETH] = {"mark": 2_000.0, "index": 2_000.0}
    snap["positions"].append(perp(ETH, "long", 10, 2_000.0, tiers=FLAT_1PCT))
    r = judge(snap, name="x", moves={"BTC": -0.195})
    assert r.equity == pytest.approx(250.0)
    assert r.maintenance_margin == pytest.approx(401.25)
    assert r.liquidated == (f"{BTC} long",)
    # -19 %: equity 500 > MM 402.5 -> nothing
    assert judge(snap, name="y", moves={"BTC": -0.19}).liquidated == ()


def test_isolated_positions_liquidate_when_their_price_is_crossed() -> None:
    snap = long_btc()
    snap["mode"] = "isolated"
    snap["positions"][0]["isolated_margin"] = 5_000.0
    lp = first_position(evaluate(snap))["liquidation_price"]
    assert 45_000.0 < lp < 47_500.0            # about entry - margin + MM: ~45,2xx
    assert liquidated_positions(shock(snap, {"BTC": -0.10})) == (f"{BTC} long",)
    assert liquidated_positions(shock(snap, {"BTC": -0.05})) == ()


# --- options ---------------------------------------------------------------------------------

def test_options_repriced_with_black76_at_shocked_underlying_and_vol() -> None:
    call = "BTC/USDC:USDC-250328-66000-C"
    t = years_between(parse_utc_ms("2025-03-01"), parse_utc_ms("2025-03-28T08:00:00Z"))
    mark = price(60_000.0, 66_000.0, t, 0.6, True)
    snap: dict[str, Any] = {
        "profile": "bybit", "time": "2025-03-01T00:00:00Z", "collateral": {"USDC": 50_000.0},
            "prices": {call: {"mark": mark, "underlying": 60_000.0, "iv": 0.6}},
            "positions": [{"symbol": call, "side": "long", "size": 1, "entry_price": mark,
                           "instrument": {"type": "option"}}]}
    out = prices(shock(snap, {"BTC": -0.1}, {"BTC": 0.5}))[call]
    # underlying 54,000, vol 0.6 x 1.5 = 0.9
    assert out["underlying"] == pytest.approx(54_000.0)
    assert out["iv"] == pytest.approx(0.9)
    assert out["mark"] == pytest.approx(price(54_000.0, 66_000.0, t, 0.9, True), rel=1e-9)
    # without iv it is solved from the mark: same answer
    del prices(snap)[call]["iv"]
    solved = prices(shock(snap, {"BTC": -0.1}, {"BTC": 0.5}))[call]
    assert solved["mark"] == pytest.approx(out["mark"], rel=1e-6)
    # no shock: mark unchanged
    assert prices(shock(snap, {}))[call]["mark"] == pytest.approx(mark, rel=1e-9)


def test_short_strangle_with_delta_hedge_is_hurt_less_on_a_crash() -> None:
    # short 66k call + short 54k put, BTC 60,000 (OKX cross, one USD pool). As BTC falls the
    # short put's delta grows towards +1; a 0.3 BTC perp short (the hedge a delta-hedger holds
    # part way down) offsets part of the loss, so -20 % with vol +50 % hurts the hedged book less
    t = years_between(parse_utc_ms("2025-03-01"), parse_utc_ms("2025-03-28T08:00:00Z"))
    c, p = "BTC/USDC:USDC-250328-66000-C", "BTC/USDC:USDC-250328-54000-P"
    cm, pm = price(60_000.0, 66_000.0, t, 0.6, True), price(60_000.0, 54_000.0, t, 0.6, False)
    base: dict[str, Any] = {
            "profile": "okx", "time": "2025-03-01T00:00:00Z", "collateral": {"USDC": 30_000.0},
            "prices": {c: {"mark": cm, "underlying": 60_000.0, "iv": 0.6},
                       p: {"mark": pm, "underlying": 60_000.0, "iv": 0.6},
                       "BTC/USDC:USDC": {"mark": 60_000.0, "index": 60_000.0}},
            "positions": [{"symbol": c, "side": "short", "size": 1, "entry_price": cm,
                           "instrument": {"type": "option"}},
                          {"symbol": p, "side": "short", "size": 1, "entry_price": pm,
                           "instrument": {"type": "option"}}]}
    hedged = copy.deepcopy(base)
    hedged["positions"].append(perp("BTC/USDC:USDC", "short", 0.3, 60_000.0))
    moves, vols = {"BTC": -0.2}, {"BTC": 0.5}
    h = judge(hedged, name="h", moves=moves, vol_moves=vols)
    u = judge(base, name="u", moves=moves, vol_moves=vols)
    # hedge leg: short 0.3 BTC gains 0.3 x 12,000 = 3,600 on top of the options' loss
    assert h.equity_change - u.equity_change == pytest.approx(3_600.0, rel=1e-6)
    assert u.equity_change < 0


# --- scenarios and grids ---------------------------------------------------------------------

def test_named_scenarios_carry_a_source_for_every_number() -> None:
    named = load_scenarios()
    assert {"black_thursday_2020", "may_2021_crash", "ftx_nov_2022"} <= set(named)
    for s in named.values():
        assert set(s.sources) == ({f"{a}.moves" for a in s.moves}
                                  | {f"{a}.vol_moves" for a in s.vol_moves})
        assert all(src.strip() for src in s.sources.values())
        assert all(-1.0 < m < 0.0 for m in s.moves.values())


def test_grid_btc_times_eth_beta_times_vol() -> None:
    btc = parse_range("-0.05:-0.5:0.05", where="--grid")
    assert len(btc) == 10
    assert btc[0] == -0.05
    assert btc[-1] == -0.5
    scen = grid_scenarios(Grid(btc=btc, betas={"ETH": 1.2}, vol=parse_range("0:1:0.5",
                                                                            where="--vol")))
    assert len(scen) == 30
    last = scen[-1]
    assert last.moves["BTC"] == -0.5
    assert last.moves["ETH"] == pytest.approx(-0.6)
    assert last.vol_moves == {"*": 1.0}
    with pytest.raises(ConfigError, match="--grid: expected start:stop:step"):
        parse_range("a:b", where="--grid")


def test_stress_test_on_a_snapshot_runs_named_scenarios_and_crashes() -> None:
    snap = long_btc()
    snap["prices"][ETH] = {"mark": 2_000.0, "index": 2_000.0}
    snap["positions"].append(perp(ETH, "short", 10, 2_000.0, tiers=FLAT_1PCT))
    report = stress_test(snap)
    assert [s.name for s in report.scenarios] == list(load_scenarios())
    ftx = report.scenarios[-1]
    # FTX: BTC -25 % -> -12,500; ETH -30 % on a short of 10 x 2,000 -> +6,000
    assert ftx.equity_change == pytest.approx(-6_500.0)
    assert report.smallest_crash.assets == ("BTC", "ETH")
    assert report.smallest_btc_crash is not None
    assert report.smallest_btc_crash.move == pytest.approx(
        smallest_crash(snap, ["BTC"]), abs=1e-12)
    data = report.to_json()
    json.dumps(data, allow_nan=False)
    assert data["monte_carlo"] is None
    with pytest.raises(ConfigError, match="scenario 'nope': unknown"):
        stress_test(snap, scenarios=["nope"])
    with pytest.raises(ConfigError, match="monte carlo: needs a run folder"):
        stress_test(snap, scenarios=[], monte_carlo=10)


# --- Monte Carlo and distance ----------------------------------------------------------------

def positions_frame(n: int = 300, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    btc = 50_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    eth = 2_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.025, n)))
    rows = [{"ts": t, "symbol": BTC, "mark": b} for t, b in zip(ts, btc, strict=True)]
    rows += [{"ts": t, "symbol": ETH, "mark": e} for t, e in zip(ts, eth, strict=True)]
    return pd.DataFrame(rows)


def test_returns_are_joint_per_asset_log_returns() -> None:
    frame = positions_frame(n=50)
    sample = returns_from_positions(frame)
    assert sample.assets == ("BTC", "ETH")
    assert sample.bar_ms == 3_600_000
    assert sample.returns.shape == (49, 2)
    btc = frame[frame["symbol"] == BTC]["mark"].to_numpy()
    assert sample.returns[0, 0] == pytest.approx(np.log(btc[1] / btc[0]))
    with pytest.raises(DataError, match=r"positions\.parquet: expected columns"):
        returns_from_positions(pd.DataFrame({"ts": []}))


def test_monte_carlo_is_reproducible_with_a_seed() -> None:
    # 5x leveraged long (liquidates at about -19.6 %); hourly vol 2 % over 48 bars
    snap = long_btc()
    sample = returns_from_positions(positions_frame())
    runs = [liquidation_probability(snap, sample, n_paths=200, horizon_bars=48, seed=s)
            for s in (1, 1, 2, 3, 4)]
    assert runs[0] == runs[1]
    assert 0.0 < runs[0].probability < 1.0
    assert runs[0].ci_low <= runs[0].probability <= runs[0].ci_high
    assert len({r.liquidated_paths for r in runs[1:]}) > 1      # other seeds may differ
    assert runs[0].checkpoints == (12, 24, 36, 48)


def test_stress_test_monte_carlo_from_a_loaded_run() -> None:
    loaded = LoadedSnapshot(snapshot=long_btc(), positions=positions_frame())
    a = stress_test(loaded, scenarios=[], monte_carlo=100, horizon="2d", seed=7)
    b = stress_test(loaded, scenarios=[], monte_carlo=100, horizon="2d", seed=7)
    assert a.monte_carlo is not None
    assert a.monte_carlo == b.monte_carlo
    assert a.monte_carlo.horizon_bars == 48


def test_distance_series_reads_equity_parquet_column() -> None:
    ts = pd.date_range("2025-01-01", periods=3, freq="1h", tz="UTC")
    eq = pd.DataFrame({"ts": ts, "distance_to_liquidation": [np.inf, -0.3, -0.2]})
    d = distance_series(eq)
    assert d is not None
    assert d.ts_ms[0] == parse_utc_ms("2025-01-01")
    assert d.minimum == -0.2
    assert distance_series(eq.drop(columns="distance_to_liquidation")) is None


def test_load_snapshot_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run folder or snapshot file"):
        load_snapshot(tmp_path / "missing.json")
    with pytest.raises(DataError, match=r"no state\.json"):
        load_snapshot(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_snapshot(bad)
