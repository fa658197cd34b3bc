"""Block evaluation gives exactly the states of evaluating one step at a time (issue 17).

The margin monitor evaluates a constant book over a block of coming steps in one kernel call,
consumes the statuses step by step and recomputes from the step where the book changes. Every
kind of book is run with adaptive blocks and with blocks of one step (``blocks_of_one``), and
every result — equity, margin and position frames, fills, orders, journal, events, final state,
metrics, warnings — must be identical bit for bit: linear and inverse perps, coin collateral,
working limit orders and cancels, margin calls, liquidations and bankruptcies, every pooling
rule, intrabar and close checks, isolated and portfolio modes, Deribit's rates and daily
settlement, a clock with missing bars, real tier tables, and option books.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

from .books import random_book, same, slow_book, two_ways

LINEAR = ("BTC/USDT:USDT", "ETH/USDT:USDT")


@pytest.mark.parametrize("seed", [0, 1, 4, 6])
@pytest.mark.parametrize("margin_check", ["intrabar", "close"])
def test_random_cross_books(seed, margin_check):
    coll = {"USDT": 3_000.0} if seed % 2 else {"USDT": 2_000.0, "BTC": 0.05}
    r = two_ways(lambda: random_book(seed, margin_check=margin_check, collateral=coll))
    assert len(r.fills) > 5


@pytest.mark.parametrize(("profile", "coll"), [
    ("binance-usdm", {"USDT": 2_000.0, "USDC": 500.0}),
    ("binance-coinm", {"USDT": 2_000.0, "BTC": 0.05}),
    ("deribit", {"USDT": 3_000.0, "BTC": 0.05}),
    ("okx", {"USDT": 2_000.0, "BTC": 0.05})])
@pytest.mark.parametrize("seed", [0, 2])
def test_random_books_on_every_pooling_rule(profile, coll, seed):
    two_ways(lambda: random_book(seed, margin_check="intrabar", collateral=coll,
                                 profile=profile))


@pytest.mark.parametrize("mode", ["isolated", "portfolio"])
@pytest.mark.parametrize("seed", [1, 4])
def test_random_books_in_isolated_and_portfolio_margin(mode, seed):
    coll = {"USDT": 3_000.0} if seed % 2 else {"USDT": 2_000.0, "BTC": 0.05}
    two_ways(lambda: random_book(seed, margin_check="intrabar", collateral=coll,
                                 margin_mode=mode))


@pytest.mark.parametrize("seed", [2, 3])
def test_slow_books_with_inverse_perps_and_usdc(seed):
    syms = (*LINEAR, "BTC/USD:BTC")
    coll = {"USDT": 1_100.0, "USDC": 100.0}
    two_ways(lambda: slow_book(seed, margin_check="intrabar", syms=syms, collateral=coll))


def test_a_clock_with_missing_bars():
    # one feed misses every 7th bar: its bar index differs from the clock step
    two_ways(lambda: slow_book(0, margin_check="intrabar", syms=LINEAR,
                               collateral={"USDT": 1_000.0}, gaps=True))


@pytest.mark.shared
def test_real_tier_tables(shared_data):
    table = json.loads((shared_data / "exchange" / "binance_leverage_tiers.json").read_text())
    tiers = {s: table[s] for s in LINEAR}
    two_ways(lambda: slow_book(1, margin_check="intrabar", syms=LINEAR,
                               collateral={"USDT": 25_000.0}, tiers=tiers, size=20.0))


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backtester.data.sample import ensure_sample

    root = tmp_path_factory.mktemp("datasets")
    ensure_sample(root)
    return root


@pytest.mark.filterwarnings("ignore::backtester.errors.BacktesterWarning")
@pytest.mark.parametrize(("strategy", "mode"), [
    ("delta_hedged_strangle", "cross"), ("covered_call", "cross"),
    ("delta_hedged_strangle", "portfolio")])
def test_option_books(sample_root, strategy, mode):
    # short options repriced at each bar's low and high, greeks, expiries, coin collateral
    path = str(Path(__file__).resolve().parents[2] / "strategies" / f"{strategy}.py")
    r = two_ways(lambda: backtester.run(path, dataset="sample", datasets_root=sample_root,
                                        start="2025-06-20", end="2025-08-05", margin_mode=mode))
    assert r.positions["symbol"].str.endswith(("-C", "-P")).any()


@pytest.mark.filterwarnings("ignore::backtester.errors.BacktesterWarning")
def test_option_values_are_evaluated_in_blocks(sample_root, monkeypatch):
    # the held options' greeks (read by the strategy and recorded), intrabar marks and
    # portfolio grids of every step come from a few vectorized pricer calls, not from several
    # calls per step (before: about 25 Black-76 evaluations per step of the strangle, ~27,000
    # here; in blocks about 500: per option and kind of value a block of 8, 16, 32 … steps)
    from backtester.pricing import black76

    calls = []
    parts = black76._Parts.__init__

    def counted(self, *args, **kwargs):
        calls.append(1)
        parts(self, *args, **kwargs)

    monkeypatch.setattr(black76._Parts, "__init__", counted)
    path = str(Path(__file__).resolve().parents[2] / "strategies" / "delta_hedged_strangle.py")
    r = backtester.run(path, dataset="sample", datasets_root=sample_root, start="2025-06-20",
                       end="2025-08-05")
    held = int(np.isfinite(r.equity["portfolio_initial_margin"]).sum())
    assert held > 900  # options held at most of the ~1,100 hourly steps
    assert len(calls) < held / 2


def test_the_books_reach_the_margin_machinery():
    # the comparisons above are meaningful only if the books hit calls, liquidations and
    # pool liquidations
    calls = liqs = 0
    pools = set()
    for seed in (0, 4, 6):
        coll = {"USDT": 2_000.0, "BTC": 0.05}
        r = random_book(seed, margin_check="intrabar", collateral=coll)
        calls += r.metrics["margin_calls"]
        liqs += r.metrics["liquidations"]
    for seed in (0, 2, 4, 6):
        r = random_book(seed, margin_check="intrabar", profile="binance-usdm",
                        collateral={"USDT": 2_000.0, "BTC": 0.05})
        pools |= {e["pool"] for e in r.events if e["event"] == "PositionLiquidated"
                  and e["scope"] == "pool"}
    assert calls > 0
    assert liqs > 0
    assert pools


def test_a_stopped_run_keeps_only_the_steps_it_reached():
    # bankrupt + stop_on_bankruptcy: the series are cut at the last step run, though the
    # monitor had evaluated a block beyond it
    n = 200
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    close = np.full(n, 50_000.0)
    close[120:] = 20_000.0  # -60 % in one bar: a 10x long is bankrupt
    prev = np.concatenate([[50_000.0], close[:-1]])
    df = pd.DataFrame({"ts": ts, "open": prev, "high": np.maximum(close, prev),
                       "low": np.minimum(close, prev), "close": close, "volume": 1e6})

    class Long(Strategy):
        def on_start(self, ctx):
            self.sent = False

        def on_bar(self, ctx):
            if not self.sent:
                ctx.target("BTC/USDT:USDT", 0.2)
                self.sent = True

    res = backtester.run(Long, data={"BTC/USDT:USDT": df},
                         instruments={"BTC/USDT:USDT": instrument_from_symbol("BTC/USDT:USDT")},
                         funding="zero", collateral={"USDT": 1_000.0}, leverage={"*": 10.0})
    assert res.metrics["liquidations"] >= 1
    eq = res.equity
    assert len(eq) == 121  # bars 0..120: the crash bar (the liquidation) is the last step
    assert not eq["equity"].isna().any()
    assert len(res.positions) == 119  # a row per step from the fill to the step before
    same(res, res)
