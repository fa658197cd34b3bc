"""Quiet stretches (``backtester.margin.quiet``) give exactly the results of evaluating every bar.

``MarginEngine._quiet_path`` (private switch) lets the bar loop skip the evaluation of bars
whose margin outcome is provably "ok" and rebuild their states after the run. Random books
that hold positions for many bars — linear perps on two coins (one leg per coin, eligible)
plus, in some runs, an inverse perp or a second collateral asset (not eligible: those stretches
go through the exact evaluation) — are run with the switch on and off, with price paths whose
crashes cause margin calls and liquidations, and every result frame must be identical.
"""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol
from backtester.margin.state import MarginEngine

from .test_margin_fast_path import _bars, _same


class SlowTrader(Strategy):
    """Random targets, rarely changed (long quiet stretches), sometimes a resting limit."""

    seed: int = 0
    p: float = 0.03
    size: float = 1.0

    def on_start(self, ctx):
        self.rng = np.random.default_rng(self.seed)
        for sym in ctx.symbols:
            ctx.set_leverage(sym, float(self.rng.choice([5.0, 20.0, 50.0])))

    def on_bar(self, ctx):
        if self.rng.random() > self.p:
            return
        sym = ctx.symbols[int(self.rng.integers(len(ctx.symbols)))]
        scale = {"BTC": 0.01, "ETH": 0.1}[sym[:3]] if sym.endswith("USDT") else 100
        q = Decimal(int(self.rng.integers(-20, 21))) * Decimal(str(scale)) * Decimal(
            str(self.size))
        if self.rng.random() < 0.85:
            ctx.target(sym, q)
        elif q != 0:
            px = ctx.round_price(sym, ctx.price(sym) * (0.995 if q > 0 else 1.005))
            (ctx.buy if q > 0 else ctx.sell)(sym, abs(q), limit=px)
        if self.rng.random() < 0.1:
            ctx.record(score=float(self.rng.random()))


def _run(seed: int, *, quiet: bool, margin_check: str, syms: tuple[str, ...],
         collateral: dict[str, float], n: int = 600, gaps: bool = False,
         tiers: dict | None = None, size: float | None = None):
    rng = np.random.default_rng(seed)
    data = {}
    for k, sym in enumerate(syms):
        start = {"BTC": 50_000.0, "ETH": 2_500.0}[sym[:3]]
        crash = float(rng.choice([0.7, 0.8, 1.25]))
        data[sym] = _bars(np.random.default_rng(seed * 10 + k), n, start,
                          int(rng.integers(50, n - 10)), crash, mark=bool(k % 2))
        if gaps and k == 1:
            data[sym] = data[sym][np.arange(n) % 7 != 3]  # missing bars: feeds not in step
    insts = {s: instrument_from_symbol(s) for s in syms}
    old = MarginEngine._quiet_path
    MarginEngine._quiet_path = quiet  # type: ignore[misc]
    try:
        return backtester.run(SlowTrader, data=data, instruments=insts, funding="zero",
                              collateral=collateral, margin_check=margin_check,
                              slippage_bps=2, tiers=tiers,
                              params={"seed": seed, "size": size or 1.0 + seed % 4})
    finally:
        MarginEngine._quiet_path = old  # type: ignore[misc]


LINEAR = ("BTC/USDT:USDT", "ETH/USDT:USDT")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("margin_check", ["intrabar", "close"])
def test_quiet_stretches_match_the_exact_evaluation(seed, margin_check):
    syms = LINEAR + (("BTC/USD:BTC",) if seed % 3 == 2 else ())
    coll = {"USDT": 1_000.0 + 100 * seed} if seed % 3 != 1 else {"USDT": 1_100.0, "USDC": 100.0}
    fast = _run(seed, quiet=True, margin_check=margin_check, syms=syms, collateral=coll)
    slow = _run(seed, quiet=False, margin_check=margin_check, syms=syms, collateral=coll)
    _same(fast, slow)


@pytest.mark.parametrize("seed", range(3))
def test_quiet_stretches_on_a_clock_with_missing_bars(seed):
    # one feed misses every 7th bar: bar indices differ from clock steps
    coll = {"USDT": 1_000.0 + 100 * seed}
    fast = _run(seed, quiet=True, margin_check="intrabar", syms=LINEAR, collateral=coll,
                gaps=True)
    slow = _run(seed, quiet=False, margin_check="intrabar", syms=LINEAR, collateral=coll,
                gaps=True)
    _same(fast, slow)


@pytest.mark.shared
@pytest.mark.parametrize("seed", range(3))
def test_quiet_stretches_with_real_tier_tables(seed, shared_data):
    # positions of ~20k-250k USDT notional move across tiers of Binance's real table
    table = json.loads((shared_data / "exchange" / "binance_leverage_tiers.json").read_text())
    tiers = {s: table[s] for s in LINEAR}
    coll = {"USDT": 20_000.0 + 5_000 * seed}
    fast = _run(seed, quiet=True, margin_check="intrabar", syms=LINEAR, collateral=coll,
                tiers=tiers, size=20.0)
    slow = _run(seed, quiet=False, margin_check="intrabar", syms=LINEAR, collateral=coll,
                tiers=tiers, size=20.0)
    spans = []
    for sym in LINEAR:
        pos = fast.positions[fast.positions["symbol"] == sym]
        floors = sorted(t["minNotional"] for t in table[sym])
        spans.append(len(set(np.searchsorted(floors, pos["notional"].to_numpy(), "right"))))
    assert max(spans) >= 2  # a symbol's bars span at least two tiers
    _same(fast, slow)


def test_quiet_books_do_skip_bars_and_reach_liquidations(monkeypatch):
    # the comparison above is only meaningful if bars are skipped and the books also reach
    # the margin machinery (calls and liquidations happen inside runs that skip bars)
    from backtester.margin import quiet

    skipped = 0
    calls = liqs = 0
    real = quiet._rebuild

    def counting(segs, qs, times):
        nonlocal skipped
        cols, rows = real(segs, qs, times)
        skipped += len(cols["_steps"])  # bars whose state was rebuilt, not evaluated
        return cols, rows

    monkeypatch.setattr(quiet, "_rebuild", counting)
    for seed in (0, 3, 5):
        res = _run(seed, quiet=True, margin_check="intrabar", syms=LINEAR,
                   collateral={"USDT": 1_000.0 + 100 * seed})
        calls += res.metrics["margin_calls"]
        liqs += res.metrics["liquidations"]
    assert skipped > 600
    assert calls + liqs > 0


def test_a_stopped_run_keeps_only_the_steps_it_reached():
    # bankrupt + stop_on_bankruptcy: the preallocated series are cut at the last step run
    n = 200
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    close = np.full(n, 50_000.0)
    close[120:] = 20_000.0  # -60 % in one bar: a 10x long is bankrupt
    df = pd.DataFrame({"ts": ts, "open": np.concatenate([[50_000.0], close[:-1]]),
                       "high": np.maximum(close, np.concatenate([[50_000.0], close[:-1]])),
                       "low": np.minimum(close, np.concatenate([[50_000.0], close[:-1]])),
                       "close": close, "volume": 1e6})

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
    assert eq.index.is_monotonic_increasing
    assert len(eq) <= n
    assert not eq["equity"].isna().any()


def test_rebuilding_in_small_chunks_gives_the_same_states(monkeypatch):
    # the rebuild is cut into chunks of steps to bound memory; any chunk size gives the same
    from backtester.margin import quiet

    whole = _run(4, quiet=True, margin_check="intrabar", syms=LINEAR,
                 collateral={"USDT": 1_400.0})
    monkeypatch.setattr(quiet, "_CHUNK_STEPS", 7)
    chunked = _run(4, quiet=True, margin_check="intrabar", syms=LINEAR,
                   collateral={"USDT": 1_400.0})
    _same(chunked, whole)
