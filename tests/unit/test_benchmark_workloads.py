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
