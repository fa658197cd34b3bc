"""The per-bar margin fast path gives exactly the results of the general evaluation.

``MarginEngine._fast_path`` (private switch) selects a fused single-pass evaluation for cross
books without options. Random books — linear and inverse perps, USDT and BTC collateral,
random leverage and trades, price paths with crashes that cause margin calls and
liquidations — are run with the switch on and off and every result frame must be identical
(bit for bit: the fused pass performs the same float operations in the same order).
The per-asset pool profiles run too: books on one pool take the fused pass, books spread over
several pools (USDT and BTC) the general per-pool code either way.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol
from backtester.margin.state import MarginEngine

SYMS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USD:BTC")


def _bars(rng: np.random.Generator, n: int, start: float, crash_at: int, crash: float,
          mark: bool) -> pd.DataFrame:
    r = rng.normal(0.0, 0.004, n)
    r[crash_at] += np.log(crash)  # a one-bar crash (or spike)
    close = start * np.exp(np.cumsum(r))
    open_ = np.concatenate([[start], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.006, (2, n)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    df = pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close,
                       "volume": 1e6})
    if mark:
        df[["open", "high", "low", "close"]] *= 1.0 + rng.normal(0.0, 0.0005, (n, 1))
    return df


class RandomTrader(Strategy):
    """Random targets on random symbols with random leverage (seeded)."""

    seed: int = 0
    p: float = 0.15
    size: float = 1.0

    def on_start(self, ctx):
        self.rng = np.random.default_rng(self.seed)
        for sym in ctx.symbols:
            ctx.set_leverage(sym, float(self.rng.choice([5.0, 20.0, 50.0])))

    def on_bar(self, ctx):
        if ctx.price(SYMS[0]) != ctx.price(SYMS[0]):
            return
        if self.rng.random() > self.p:
            return
        sym = ctx.symbols[int(self.rng.integers(len(ctx.symbols)))]
        scale = {"BTC/USDT:USDT": 0.01, "ETH/USDT:USDT": 0.1, "BTC/USD:BTC": 100}[sym]
        q = Decimal(int(self.rng.integers(-20, 21))) * Decimal(str(scale)) * Decimal(
            str(self.size))
        kind = self.rng.random()
        if kind < 0.7:
            ctx.target(sym, q)
        elif kind < 0.85 and q != 0:
            px = ctx.round_price(sym, ctx.price(sym) * (0.99 if q > 0 else 1.01))
            (ctx.buy if q > 0 else ctx.sell)(sym, abs(q), limit=px)
        else:
            ctx.cancel()
        if self.rng.random() < 0.05:
            ctx.record(score=float(self.rng.random()))


def _run(seed: int, *, fast: bool, margin_check: str, collateral: dict[str, float],
         margin_mode: str = "cross", profile: str | None = None):
    rng = np.random.default_rng(seed)
    n = 300
    data = {}
    for k, sym in enumerate(SYMS):
        start = {"BTC": 50_000.0, "ETH": 2_500.0}[sym[:3]]
        crash = float(rng.choice([0.7, 0.8, 1.25]))
        data[sym] = _bars(np.random.default_rng(seed * 10 + k), n, start,
                          int(rng.integers(50, n - 10)), crash, mark=bool(k % 2))
    insts = {s: instrument_from_symbol(s) for s in SYMS}
    old = getattr(MarginEngine, "_fast_path", False)
    MarginEngine._fast_path = fast  # type: ignore[attr-defined]
    try:
        return backtester.run(RandomTrader, data=data, instruments=insts, funding="zero",
                              collateral=collateral, margin_check=margin_check,
                              margin_mode=margin_mode, profile=profile,
                              slippage_bps=2, params={"seed": seed, "size": 1.0 + seed % 4})
    finally:
        MarginEngine._fast_path = old


def _same(a, b) -> None:
    for name in ("equity", "fills", "orders", "journal", "positions", "records", "rejections"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True,
                                      obj=name)
    assert a.events == b.events
    assert a.metrics == b.metrics or repr(a.metrics) == repr(b.metrics)
    assert a.state == b.state
    assert a.warnings == b.warnings


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("margin_check", ["intrabar", "close"])
def test_fast_path_matches_general_evaluation(seed, margin_check):
    coll = ({"USDT": 3_000} if seed % 2 else {"USDT": 2_000, "BTC": 0.05})
    fast = _run(seed, fast=True, margin_check=margin_check, collateral=coll)
    slow = _run(seed, fast=False, margin_check=margin_check, collateral=coll)
    _same(fast, slow)


# USDT only: the BTC-settled perp is refused (its BTC pool is empty), one pool, fused;
# BTC only: the USDT perps are refused; USDT and BTC: two pools, the general code
POOLED = {"binance-usdm": ({"USDT": 3_000}, {"USDT": 2_000, "BTC": 0.05}),
          "binance-coinm": ({"BTC": 0.06}, {"USDT": 2_000, "BTC": 0.05})}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("margin_check", ["intrabar", "close"])
@pytest.mark.parametrize("profile", sorted(POOLED))
def test_fast_path_matches_general_evaluation_on_pooled_profiles(seed, margin_check, profile):
    coll = POOLED[profile][seed % 2]
    fast = _run(seed, fast=True, margin_check=margin_check, collateral=coll, profile=profile)
    slow = _run(seed, fast=False, margin_check=margin_check, collateral=coll, profile=profile)
    _same(fast, slow)


def test_pooled_random_books_liquidate_single_pools():
    # the two-pool books above do reach pool liquidations (the per-pool code is exercised)
    pools = set()
    for profile, (_, two) in POOLED.items():
        for seed in range(0, 8, 2):
            res = _run(seed, fast=True, margin_check="intrabar", collateral=two,
                       profile=profile)
            pools |= {e["pool"] for e in res.events if e["event"] == "PositionLiquidated"
                      and e["scope"] == "pool"}
    assert pools


def test_random_books_do_reach_calls_and_liquidations():
    # the comparison above is only meaningful if the books hit the margin machinery
    calls = liqs = fills = 0
    for seed in range(8):
        coll = ({"USDT": 3_000} if seed % 2 else {"USDT": 2_000, "BTC": 0.05})
        res = _run(seed, fast=True, margin_check="intrabar", collateral=coll)
        calls += res.metrics["margin_calls"]
        liqs += res.metrics["liquidations"]
        fills += len(res.fills)
    assert fills > 60
    assert calls > 0
    assert liqs > 0
