"""BacktestResult: frames, metrics and the run folder of DESIGN §8."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtester.runs.results import compute_metrics
from tests.builders import BTC, Scripted, bars, flat, run

METRIC_KEYS = {"total_return", "cagr", "volatility", "sharpe", "sortino", "calmar",
               "max_drawdown", "trades", "win_rate", "fees_paid", "funding_paid",
               "liquidations", "margin_calls", "min_distance_to_liquidation",
               "max_margin_ratio"}


def _result() -> Any:
    # buy 10 at bar 1's open (100), the Bybit profile's taker fee 10 x 100 x 0.00055 = 0.55;
    # price then 110
    rows = [(100, 100, 100, 100)] * 2 + [(110, 110, 110, 110)] * 3
    strat = Scripted({0: lambda ctx: ctx.buy(BTC, 10), 1: lambda ctx: ctx.record(z=1.5)})
    return run(strat, {BTC: bars(rows)})


def test_equity_and_metrics_by_hand() -> None:
    r = _result()
    # step 0: 100,000; step 1 (after the fill, close 100): 99,999.45; then 10 x 10 gain:
    # 100,099.45 -> total return 99.45 / 100,000 = 0.0009945; drawdown -0.55 / 100,000
    assert list(r.equity["equity"]) == pytest.approx([100_000, 99_999.45, 100_099.45,
                                                      100_099.45, 100_099.45])
    assert r.metrics["total_return"] == pytest.approx(0.0009945)
    assert r.metrics["max_drawdown"] == pytest.approx(-5.5e-6)
    assert r.metrics["fees_paid"] == pytest.approx(0.55)
    assert r.metrics["trades"] == 1
    assert r.metrics["win_rate"] is None  # nothing closed
    assert set(r.metrics) >= METRIC_KEYS


def test_positions_per_bar_and_records() -> None:
    r = _result()
    pos = r.positions
    assert list(pos["qty"]) == [10.0] * 4
    assert list(pos["unrealized_pnl"]) == [0.0, 100.0, 100.0, 100.0]
    assert r.records["z"].iloc[1] == 1.5


def test_write_creates_the_design_files(tmp_path: Path) -> None:
    r = _result()
    out = r.write(tmp_path / "run1")
    names = {p.name for p in out.iterdir()}
    assert {"equity.parquet", "trades.parquet", "orders.parquet", "journal.parquet",
            "positions.parquet", "metrics.json", "state.json", "config.json",
            "events.json"} <= names
    assert not [n for n in names if n.startswith(".") or "tmp" in n]

    def no_nan(token: str) -> float:
        raise AssertionError(f"metrics.json holds {token}")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=no_nan)
    assert set(metrics) >= METRIC_KEYS
    assert all(v is None or not isinstance(v, float) or math.isfinite(v)
               for v in metrics.values())

    state = json.loads((out / "state.json").read_text())
    assert {"profile", "mode", "position_mode", "collateral", "prices", "positions"} <= set(state)
    assert state["collateral"] == {"USDT": pytest.approx(99_999.5)}
    assert state["prices"][BTC]["mark"] == 110.0
    (p,) = state["positions"]
    assert {"symbol", "side", "size", "entry_price", "leverage", "isolated_margin",
            "instrument"} <= set(p)
    assert (p["side"], p["size"], p["entry_price"]) == ("long", 10.0, 100.0)
    assert p["instrument"]["type"] == "swap"
    assert p["instrument"]["linear"] is True

    config = json.loads((out / "config.json").read_text())
    for key in ("config_hash", "data_fingerprint", "package_version"):
        assert config[key]
    trades = pd.read_parquet(out / "trades.parquet")
    assert list(trades["qty_exact"]) == ["10"]
    journal = pd.read_parquet(out / "journal.parquet")
    assert list(journal["kind"]) == ["deposit", "fee"]


def test_runs_are_deterministic() -> None:
    a, b = _result(), _result()
    assert a.meta["config_hash"] == b.meta["config_hash"]
    assert a.meta["data_fingerprint"] == b.meta["data_fingerprint"]
    pd.testing.assert_frame_equal(a.equity, b.equity)
    assert a.state == b.state


def test_metrics_of_a_wiped_out_or_flat_curve_have_no_nan() -> None:
    idx = pd.date_range("2024-01-01", periods=3, freq="1D", tz="UTC")
    empty = pd.DataFrame(columns=["realized_pnl"])
    for values in ([100.0, 100.0, 100.0], [100.0, 50.0, 0.0]):
        m = compute_metrics(pd.Series(values, index=idx), fills=empty, fees_paid=0.0,
                            funding_paid=0.0, liquidations=0, margin_calls=0,
                            min_distance=None, max_margin_ratio=None)
        assert all(v is None or not isinstance(v, float) or math.isfinite(v)
                   for v in m.values())
        json.dumps(m, allow_nan=False)
    assert m["is_wiped_out"] is True
    assert m["max_drawdown"] == -1.0


def test_rejected_run_still_writes(tmp_path: Path) -> None:
    r = run(Scripted({0: lambda ctx: ctx.buy(BTC, 0)}), {BTC: flat(3)})
    out = r.write(tmp_path / "r")
    rej = pd.read_parquet(out / "rejections.parquet")
    assert list(rej["reason"]) == ["qty_not_positive"]


def _pandas_daily_and_drawdown(eq: pd.Series) -> tuple[pd.Series, float]:
    # the plain pandas expressions compute_metrics stands for
    eq = eq.dropna()
    peak = eq.cummax()
    dd = (eq / peak - 1.0).where(peak > 0, 0.0)
    return eq.resample("1D", closed="right", label="left").last().dropna(), float(dd.min())


@pytest.mark.parametrize("seed", range(8))
def test_daily_closes_and_drawdown_equal_the_pandas_expressions(seed: int) -> None:
    from backtester.runs.results import _max_drawdown, daily_closes

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3_000))
    # irregular bars (gaps of minutes to days, some days empty), before and after 1970
    start = pd.Timestamp("1969-12-30" if seed % 3 == 0 else "2024-02-28", tz="UTC")
    steps = rng.choice([60, 3_600, 86_400, 3 * 86_400], size=n, p=[0.7, 0.2, 0.07, 0.03])
    idx = start + pd.to_timedelta(np.cumsum(steps), unit="s")
    idx = pd.DatetimeIndex(idx).as_unit(["s", "ms", "us", "ns"][seed % 4])
    values = 1_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    if seed % 2:
        values[rng.integers(0, n, 5)] = np.nan
    if seed == 5:
        values[n // 2:] -= values[n // 2] + 1.0  # wiped out: peak positive, equity negative
    eq = pd.Series(values, index=idx)
    daily, mdd = _pandas_daily_and_drawdown(eq)
    got = daily_closes(eq.dropna())
    pd.testing.assert_series_equal(got, daily, check_exact=True, check_freq=False)
    assert _max_drawdown(eq.dropna().to_numpy()) == mdd


@pytest.mark.parametrize("seed", range(4))
def test_drawdown_by_blocks_equals_the_whole_series_expression(seed: int,
                                                               monkeypatch) -> None:
    # the running peak carried across block edges: the deepest drawdown straddles an edge,
    # and NaN (which poisons every later peak of the whole-series accumulate) too
    import backtester.runs.results as results

    monkeypatch.setattr(results, "_DRAWDOWN_BLOCK", 64)
    rng = np.random.default_rng(100 + seed)
    n = 64 * 7 + int(rng.integers(1, 63))
    v = 1_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    v[60:70] *= 0.5  # a crash across the first block edge
    if seed % 2:
        v[int(rng.integers(100, n))] = np.nan
    if seed == 2:
        v[:130] = -1.0  # no positive peak in the first two blocks
    peak = np.maximum.accumulate(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = float(np.fmin.reduce(np.where(peak > 0, v / peak - 1.0, 0.0)))
    assert results._max_drawdown(v) == want
    assert want < -0.3
