"""Smoke test of the benchmark workload W1 (benchmarks/workloads.py) on 2,000 bars: no timing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import backtester

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "workloads.py"


@pytest.fixture(scope="module")
def workloads():
    spec = importlib.util.spec_from_file_location("bench_workloads", _PATH)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_workloads"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_gbm_bars_are_deterministic_and_valid(workloads):
    a = workloads.gbm_bars(2_000, seed=7)
    b = workloads.gbm_bars(2_000, seed=7)
    assert a.equals(b)
    assert (a["high"] >= a[["open", "close"]].max(axis=1)).all()
    assert (a["low"] <= a[["open", "close"]].min(axis=1)).all()
    assert np.allclose(a["open"].to_numpy()[1:], a["close"].to_numpy()[:-1])
    assert str(a["ts"].dt.tz) == "UTC"


def test_sma_matches_a_plain_mean(workloads):
    x = np.arange(10, dtype=float)
    out = workloads.sma(x, 3)
    assert np.isnan(out[:2]).all()
    assert out[2] == pytest.approx(1.0)  # (0 + 1 + 2) / 3
    assert out[9] == pytest.approx(8.0)  # (7 + 8 + 9) / 3


def test_w1_on_2000_bars_flips_and_pays_fees(workloads):
    data = {"S00/USDT:USDT": workloads.gbm_bars(2_000, seed=1000)}
    res = backtester.run(workloads.SmaReversal, data=data,
                         instruments=workloads.our_instruments(list(data)), funding="zero",
                         collateral={"USDT": 1_000_000}, slippage_bps=0)
    fills = res.fills
    assert len(fills) >= 3
    # first fill opens 1 contract; every later fill reverses: 2 contracts, alternating sides
    assert abs(fills["qty"].iloc[0]) == pytest.approx(1.0)
    later = fills["qty"].iloc[1:].to_numpy()
    assert np.allclose(np.abs(later), 2.0)
    assert (np.sign(later[1:]) == -np.sign(later[:-1])).all()
    assert np.sign(later[0]) == -np.sign(fills["qty"].iloc[0])
    # taker fee 0.05 % of |qty| x price on every fill (linear perp, contract size 1)
    expected = (fills["qty"].abs() * fills["price"] * 0.0005).to_numpy()
    assert np.allclose(fills["fee"].to_numpy(), expected, rtol=1e-6, atol=0.01)
    assert res.metrics["fees_paid"] == pytest.approx(fills["fee"].sum(), abs=0.01)
    assert res.metrics["fees_paid"] > 0


# -- W1h / W2h: the hedged workloads (issue 17) ----------------------------------------------
def _run(workloads, name, n_bars, **params):
    w = workloads.WORKLOADS[name]
    data = workloads.workload_data(w, n_bars)
    strat = workloads.HedgedSmaReversal if w.hedged else workloads.SmaReversal
    return backtester.run(strat, data=data, instruments=workloads.our_instruments(list(data)),
                          funding="zero", collateral={"USDT": 1_000_000}, slippage_bps=0,
                          params=params)


def test_hedged_workloads_count_perp_bars(workloads):
    w1, w1h = workloads.WORKLOADS["W1"], workloads.WORKLOADS["W1h"]
    assert w1h.perp_bars == w1.instrument_bars == 500_000
    assert w1h.instrument_bars == 1_000_000  # the future's bars are processed too
    assert workloads.WORKLOADS["W2h"].perp_bars == workloads.WORKLOADS["W2"].instrument_bars


def test_hedging_future_is_the_perp_plus_a_constant_basis(workloads):
    data = workloads.workload_data(workloads.WORKLOADS["W2h"], 300)
    assert len(data) == 20
    for i in (0, 3):
        perp = data[f"S{i:02d}/USDT:USDT"]
        fut = data[f"S{i:02d}/USDT:USDT-241227"]
        basis = 0.005 * (100.0 + 10.0 * i)  # 0.5 % of the perp's first price (100 + 10 i)
        for col in ("open", "high", "low", "close"):
            assert np.allclose(fut[col] - perp[col], basis, rtol=0, atol=1e-9)
        assert fut["ts"].equals(perp["ts"])
        assert (fut["volume"] == perp["volume"]).all()
    # expiry 2024-12-27 08:00 UTC, after the last bar of the 500,000-minute W1h
    inst = workloads.our_instruments(["S00/USDT:USDT-241227"])["S00/USDT:USDT-241227"]
    last_bar_ms = workloads.START_MS + 500_000 * workloads.MINUTE_MS
    assert inst.expiry_ms == 1_735_286_400_000 > last_bar_ms
    assert not inst.is_perpetual
    assert inst.is_linear


@pytest.mark.parametrize(("name", "base"), [("W1h", "W1"), ("W2h", "W2")])
def test_hedged_run_trades_the_perps_as_unhedged_and_holds_the_future(workloads, name, base):
    n = 1_500
    plain = _run(workloads, base, n)
    hedged = _run(workloads, name, n)
    woken = _run(workloads, name, n, wake=True)
    perps = workloads.symbols_for(workloads.WORKLOADS[name].n_instruments)
    cols = ["ts", "symbol", "qty", "price", "fee", "realized_pnl"]
    pf = hedged.fills[hedged.fills["symbol"].isin(perps)].reset_index(drop=True)
    assert len(pf) == len(plain.fills) > 10
    assert pf[cols].equals(plain.fills[cols])
    pcols = ["ts", "symbol", "qty", "entry_price", "mark", "unrealized_pnl"]
    pp = hedged.positions[hedged.positions["symbol"].isin(perps)].reset_index(drop=True)
    assert pp[pcols].equals(plain.positions[pcols].reset_index(drop=True))
    # each future: one sell of 0.5 (half of QTY = 1) at the second step, held at every later one
    steps = hedged.equity.index
    futs = hedged.fills[~hedged.fills["symbol"].isin(perps)]
    assert sorted(futs["symbol"]) == sorted(f"{p}-241227" for p in perps)
    assert (futs["qty"] == -0.5).all()
    assert (futs["step_ts"] == steps[1]).all()  # processed at the second step
    assert (futs["ts"] == steps[0]).all()  # filled at its bar's open, the first step's close
    for p in perps:
        rows = hedged.positions[hedged.positions["symbol"] == f"{p}-241227"]
        assert len(rows) == n - 1
        assert (rows["qty"] == -0.5).all()
    assert workloads.hedge_check(workloads.WORKLOADS[name], hedged.fills, hedged.positions,
                                 steps) == "ok"
    # with ctx.wake_on the strategy is called at the first bar and the crossovers only: same run
    for frame in ("fills", "positions", "equity"):
        assert getattr(woken, frame).equals(getattr(hedged, frame)), frame


def test_hedge_check_names_a_future_that_is_not_held(workloads):
    w = workloads.WORKLOADS["W1h"]
    res = _run(workloads, "W1h", 400)
    fut = "S00/USDT:USDT-241227"
    pos = res.positions
    gap = pos.drop(pos.index[(pos["symbol"] == fut).to_numpy().nonzero()[0][100]])
    msg = workloads.hedge_check(w, res.fills, gap, res.equity.index)
    assert msg.startswith(fut)
    assert "position rows at 398 of 399 steps" in msg
    fills = res.fills.copy()
    fills.loc[fills["symbol"] == fut, "qty"] = -1.0
    assert workloads.hedge_check(w, fills, pos, res.equity.index).startswith(fut)
    late = res.fills.copy()
    late.loc[late["symbol"] == fut, "step_ts"] = res.equity.index[2]
    assert "expected one of -0.5" in workloads.hedge_check(w, late, pos, res.equity.index)


def test_breakdown_attributes_the_whole_step_and_restores_the_engine(workloads):
    sys.path.insert(0, str(_PATH.parent))
    try:
        import breakdown
    finally:
        sys.path.remove(str(_PATH.parent))
    from backtester.engine import Engine
    from backtester.margin.state import MarginEngine

    orig = (Engine.run, Engine._execute, MarginEngine.step, workloads.SmaReversal.on_bar)
    n = 1_000
    data = {"S00/USDT:USDT": workloads.gbm_bars(n, seed=1000)}
    bd = breakdown.Breakdown()
    bd.install(workloads.SmaReversal)
    try:
        t0 = bd.clock()
        res = backtester.run(workloads.SmaReversal, data=data,
                             instruments=workloads.our_instruments(list(data)), funding="zero",
                             collateral={"USDT": 1_000_000}, slippage_bps=0)
        total = bd.clock() - t0
    finally:
        bd.uninstall()
    assert (Engine.run, Engine._execute, MarginEngine.step,
            workloads.SmaReversal.on_bar) == orig
    assert not bd.missing
    rep = bd.report(total, n, (0.0, 0.0))
    # exclusive times add up to the step: nothing counted twice, setup is what is left
    assert sum(rep["raw_s"].values()) == pytest.approx(total, rel=1e-9)
    assert all(v >= 0 for v in rep["raw_s"].values())
    assert rep["calls"]["strategy"] == n  # on_bar at every step
    assert rep["calls"]["fills"] >= len(res.fills)
    assert rep["calls"]["loop"] == rep["calls"]["collection"] == 1
    assert rep["calls"]["margin"] >= 1
