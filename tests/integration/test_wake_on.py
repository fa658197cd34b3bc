"""``ctx.wake_on``: on_bar runs only at signalled bars, everything else is unchanged.

A crossover strategy that declares its crossovers with ``wake_on`` must trade exactly as the
same strategy called at every bar — with funding stamps, a tight margin book that sees margin
calls, and the engine skipping runs of quiet steps. The signals are worked out independently
in the test (the crossover bars of two moving averages).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.data.feed import MarketFrames
from backtester.errors import ConfigError, PhaseError
from backtester.instruments import instrument_from_symbol

from .books import blocks_of_one, same

SYMS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
ON_BAR_CALLS: list[int] = []  # bar times at which Cross.on_bar ran


def _sma(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    c = np.cumsum(np.insert(np.asarray(x, dtype="float64"), 0, 0.0))
    out[n - 1:] = (c[n:] - c[:-n]) / n
    return out


def _flips(x: np.ndarray, fast: int, slow: int) -> np.ndarray:
    f, s = _sma(x, fast), _sma(x, slow)
    valid = ~np.isnan(s)
    want = np.where(f > s, 1.0, -1.0)
    first = valid & ~np.concatenate([[False], valid[:-1]])
    change = valid & (want != np.concatenate([[0.0], want[:-1]]))
    return (first | change).astype("float64")


class Cross(Strategy):
    """Long ``qty`` when SMA fast > SMA slow, else short; optionally woken at crossovers."""

    fast: int = 5
    slow: int = 20
    qty: float = 0.1
    wake: bool = False

    def on_start(self, ctx):
        self.legs = []
        for sym in ctx.symbols:
            close = ctx.series(sym, "close")
            f = ctx.indicator(_sma, close, self.fast, symbol=sym)
            s = ctx.indicator(_sma, close, self.slow, symbol=sym)
            self.legs.append([sym, f, s, 0])
            if self.wake:
                ctx.wake_on(ctx.indicator(_flips, close, self.fast, self.slow, symbol=sym))

    def on_bar(self, ctx):
        ON_BAR_CALLS.append(ctx.now)
        for leg in self.legs:
            sym, f, s, side = leg
            if s.now != s.now:
                continue
            want = 1 if f.now > s.now else -1
            if want != side:
                q = Decimal(str(self.qty)) * (10 if sym.startswith("ETH") else 1)
                ctx.target(sym, q if want > 0 else -q)
                leg[3] = want


def _data(seed: int, n: int) -> dict[str, MarketFrames]:
    out = {}
    for k, sym in enumerate(SYMS):
        rng = np.random.default_rng(seed * 7 + k)
        start = 50_000.0 if k == 0 else 2_500.0
        r = rng.normal(0.0, 0.003, n)
        r[n // 2] += np.log(0.85)  # a crash bar
        close = start * np.exp(np.cumsum(r))
        open_ = np.concatenate([[start], close[:-1]])
        wick = np.abs(rng.normal(0.0, 0.002, (2, n)))
        ts = pd.date_range("2025-01-01", periods=n, freq="15min", tz="UTC")
        bars = pd.DataFrame({"ts": ts, "open": open_,
                             "high": np.maximum(open_, close) * np.exp(wick[0]),
                             "low": np.minimum(open_, close) * np.exp(-wick[1]),
                             "close": close, "volume": 1e6})
        stamps = pd.date_range("2025-01-01", periods=n // 32 + 1, freq="8h", tz="UTC")
        funding = pd.DataFrame({"ts": stamps, "rate": rng.normal(1e-4, 3e-4, len(stamps))})
        out[sym] = MarketFrames(ohlcv=bars, funding=funding)
    return out


def _run(seed: int, *, wake: bool, blocks: bool = True, collateral: float = 20_000.0,
         n: int = 3_000):
    def run():
        return backtester.run(Cross, data=_data(seed, n),
                              instruments={s: instrument_from_symbol(s) for s in SYMS},
                              collateral={"USDT": collateral}, leverage={"*": 20.0},
                              params={"wake": wake})

    if blocks:
        return run()
    with blocks_of_one():
        return run()


@pytest.mark.parametrize("seed", range(4))
def test_woken_strategy_trades_exactly_as_the_every_bar_one(seed):
    coll = 1_100.0 if seed % 2 else 20_000.0  # a tight book (calls, liquidations), a loose one
    every = _run(seed, wake=False, collateral=coll)
    woken = _run(seed, wake=True, collateral=coll)
    exact = _run(seed, wake=True, blocks=False, collateral=coll)
    assert len(every.fills) > 50
    assert every.metrics["funding_paid"] != 0.0
    same(woken, every)
    same(woken, exact)


def test_tight_books_do_reach_margin_calls_and_liquidations():
    res = _run(3, wake=True, collateral=1_100.0)
    assert res.metrics["margin_calls"] > 0
    assert res.metrics["liquidations"] > 0


def test_on_bar_runs_only_at_the_signalled_bars():
    data = _data(5, 800)
    ON_BAR_CALLS.clear()
    backtester.run(Cross, data=data, params={"wake": True}, collateral={"USDT": 50_000},
                         instruments={s: instrument_from_symbol(s) for s in SYMS})
    # both symbols share one clock: on_bar runs at the union of their crossover bars
    want = sum(1 for k in range(800) if any(
        _flips(data[s].ohlcv["close"].to_numpy(), 5, 20)[k] for s in SYMS))
    assert len(ON_BAR_CALLS) == want
    assert 0 < want < 400


def test_wake_on_is_for_on_start_and_takes_indicators():
    class Late(Strategy):
        def on_bar(self, ctx):
            ctx.wake_on()

    class NotAnIndicator(Strategy):
        def on_start(self, ctx):
            ctx.wake_on(np.ones(10))

    data = _data(0, 100)
    insts = {s: instrument_from_symbol(s) for s in SYMS}
    with pytest.raises(PhaseError, match="wake_on"):
        backtester.run(Late, data=data, instruments=insts)
    with pytest.raises(ConfigError, match="wake_on takes indicators"):
        backtester.run(NotAnIndicator, data=data, instruments=insts)
