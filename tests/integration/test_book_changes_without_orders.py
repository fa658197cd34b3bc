"""Changes of the book without an order: blocks and wake_on skips must not step over them.

``ctx.set_leverage`` changes the account (its version) without an order or an event. Each
test runs one small book woken by ``ctx.wake_on`` (which skips the steps where nothing can
happen), woken with blocks of one step, and called every bar, and asserts bit-identical
results (``same``).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

from .books import blocks_of_one, same

BTC = "BTC/USDT:USDT"


def _calm(seed: int, n: int, start: float, *, vol: float = 0.001) -> pd.DataFrame:
    # a quiet random walk (hourly bars): bands of +-2 % hold for long stretches
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.concatenate([[start], close[:-1]])
    wick = np.abs(rng.normal(0.0, vol / 2, (2, n)))
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": open_, "high": np.maximum(open_, close) * np.exp(
        wick[0]), "low": np.minimum(open_, close) * np.exp(-wick[1]), "close": close,
        "volume": 1e6})


def _signal(n: int, bars: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(n)
    out[list(bars)] = 1.0
    return out


def _run(strategy: type[Strategy], data: dict[str, pd.DataFrame], *, blocks: bool,
         **kw: object) -> backtester.BacktestResult:
    def run() -> backtester.BacktestResult:
        return backtester.run(strategy, data=data,
                              instruments={s: instrument_from_symbol(s) for s in data},
                              funding="zero", **kw)  # type: ignore[arg-type]

    if blocks:
        return run()
    with blocks_of_one():
        return run()


def _three_ways(strategy: type[Strategy], *, seed: int) -> backtester.BacktestResult:
    # a calm BTC book at leverage 20 run woken with blocks, woken with blocks of one step
    # (exact) and called every bar with blocks: all three must be identical; returns the exact
    data = {BTC: _calm(seed, 400, 50_000.0)}
    kw = {"collateral": {"USDT": 100_000.0}, "leverage": {"*": 20.0}}
    woken = _run(strategy, data, blocks=True, params={"wake": True}, **kw)
    exact = _run(strategy, data, blocks=False, params={"wake": True}, **kw)
    every = _run(strategy, data, blocks=True, params={"wake": False}, **kw)
    same(every, exact)
    same(woken, exact)
    return exact


class LeverageAtSignal(Strategy):
    """Opens a long at the first signal, changes its leverage at the second."""

    wake: bool = False

    def on_start(self, ctx):
        n = len(ctx.series(BTC))
        self.sig = ctx.indicator(_signal, n, (5, 100), symbol=BTC)
        if self.wake:
            ctx.wake_on(self.sig)
        self.k = 0

    def on_bar(self, ctx):
        if not self.sig.now:
            return
        self.k += 1
        if self.k == 1:
            ctx.target(BTC, Decimal("0.1"))
        else:
            ctx.set_leverage(BTC, 3.0)


def test_set_leverage_at_a_wake_step_is_not_skipped_over():
    # ctx.set_leverage changes the account (its version) without an order or an event; the
    # steps after it must carry the new leverage's initial margin, 0.1 x ~50,000 / 3 ~ 1,667
    # USDT, not the old one's, 0.1 x ~50,000 / 20 ~ 250 USDT, whether they are skipped or
    # stepped through
    exact = _three_ways(LeverageAtSignal, seed=1)
    im = exact.equity["initial_margin"].to_numpy()
    assert im[150] > 2.0 * im[50] > 0.0  # leverage 3 after bar 100, 20 before


class LeverageOnFill(Strategy):
    """Opens a long at the signal; its on_fill hook changes the leverage."""

    wake: bool = False

    def on_start(self, ctx):
        n = len(ctx.series(BTC))
        self.sig = ctx.indicator(_signal, n, (5, 300), symbol=BTC)
        if self.wake:
            ctx.wake_on(self.sig)

    def on_bar(self, ctx):
        if self.sig.now and ctx.position(BTC).is_flat:
            ctx.target(BTC, Decimal("0.1"))

    def on_fill(self, ctx, fill):
        ctx.set_leverage(BTC, 3.0)


def test_set_leverage_in_a_hook_is_not_skipped_over():
    # the fill at bar 6 starts a new block (the account changed before the check), then
    # on_fill sets leverage 3: bars 7..299 must show ~1,667 USDT of initial margin
    # (0.1 x ~50,000 / 3), not the ~250 USDT of leverage 20 the block was evaluated with
    exact = _three_ways(LeverageOnFill, seed=2)
    im = exact.equity["initial_margin"].to_numpy()
    assert 1_500.0 < im[100] < 1_850.0
