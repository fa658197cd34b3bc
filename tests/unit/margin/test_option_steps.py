"""Held options' per-step values evaluated ahead in blocks (issue 17, "Speed"): every served
value equals the per-step call bit for bit, across block boundaries, and steps a per-step call
would skip or reject are not served (the caller evaluates them on their own, as before)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from backtester.errors import ConfigError
from backtester.instruments import instrument_from_symbol
from backtester.margin.option_steps import OptionSteps, unit_greeks
from backtester.margin.portfolio import (
    PortfolioParams,
    PortfolioPosition,
    option_pnl_grid,
    portfolio_margin,
)
from backtester.pricing import black76

HOUR = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z
N = 40


def _feed(symbol: str, *, seed: int, bad: dict[int, tuple[str, float]] | None = None
          ) -> SimpleNamespace:
    # an option's feed as OptionSteps reads it: forward close/low/high and implied vol per bar
    rng = np.random.default_rng(seed)
    fc = 95_000.0 * np.exp(np.cumsum(rng.normal(0, 0.01, N)))
    lo = fc * (1 - rng.uniform(0, 0.01, N))
    hi = fc * (1 + rng.uniform(0, 0.01, N))
    iv = rng.uniform(0.3, 0.9, N)
    iv[5] = np.nan  # no implied vol: skipped (greeks), recorded mark (intrabar marks)
    iv[9] = -0.1  # negative: skipped likewise
    for i, (name, value) in (bad or {}).items():
        {"fc": fc, "lo": lo, "hi": hi, "iv": iv}[name][i] = value
    return SimpleNamespace(symbol=symbol, instrument=instrument_from_symbol(symbol),
                           fc=memoryview(fc), option_iv=iv.tolist(),
                           arrays={"forward_low": lo, "forward_high": hi, "forward_close": fc})


def _steps(*, block: int = 3) -> OptionSteps:
    times = T0 + HOUR * np.arange(N, dtype=np.int64)
    steps = OptionSteps(times, lambda f, s: s, None)
    steps.block_min, steps.block_max = 2, block  # many block boundaries in N steps
    return steps


SYMBOLS = ["BTC/USDC:USDC-250131-105000-C", "BTC/USD:BTC-250131-85000-P"]  # linear, inverse


def _t(inst, s: int) -> float:
    # time to expiry of step s as the per-step code computes it
    return max((inst.expiry_ms or 0) - (T0 + HOUR * s), 0) / (365.0 * 86_400_000)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_greeks_served_equal_per_step_calls(symbol):
    f = _feed(symbol, seed=1)
    steps = _steps()
    inst = f.instrument
    call = inst.option_type.value == "call"
    for s in range(N):
        got = steps.greeks(f, s)
        iv = f.option_iv[s]
        if not (iv == iv and iv >= 0):
            assert got is None, s
            continue
        args = (f.fc[s], inst.strike, _t(inst, s), iv, call)
        want = (black76.delta(*args), black76.gamma(*args), black76.vega(*args),
                black76.theta(*args))
        assert got is not None
        assert got[:4] == want, s  # bit for bit
        if inst.is_linear:
            assert np.isnan(got[4])
        else:
            assert got[4] == black76.inverse_delta(*args)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_intrabar_marks_served_equal_per_step_prices(symbol):
    f = _feed(symbol, seed=2)
    steps = _steps(block=5)
    inst = f.instrument
    pricer = black76.price if inst.is_linear else black76.inverse_price
    call = inst.option_type.value == "call"
    for s0, n in [(0, 3), (3, 4), (7, 1), (8, 9), (17, 20), (37, 3)]:
        got = steps.marks(f, s0, n)
        assert got.shape == (n, 2)
        for s in range(s0, s0 + n):
            iv = f.option_iv[s]
            if not (iv == iv and iv >= 0):
                assert np.isnan(got[s - s0]).all()
                continue
            for w, name in enumerate(("forward_low", "forward_high")):
                want = pricer(f.arrays[name][s], inst.strike, _t(inst, s), iv, call)
                assert got[s - s0, w] == want, (s, w)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_portfolio_grids_give_the_same_margin(symbol):
    # portfolio_margin with the served grids equals portfolio_margin computing its own
    f = _feed(symbol, seed=3)
    steps = _steps(block=4)
    inst = f.instrument
    for s in range(N):
        iv = f.option_iv[s]
        got = steps.grids(f, s)
        if not (iv == iv and iv >= 0):
            assert got is None
            continue
        pos = PortfolioPosition(symbol=symbol, underlying="BTC", kind="option",
                                is_linear=inst.is_linear, qty=-2.0, strike=inst.strike,
                                option_type=inst.option_type.value, expiry_ms=inst.expiry_ms,
                                iv=iv, forward=f.fc[s])
        kw = {"underlying_prices": {"BTC": f.fc[s]}, "time_ms": T0 + HOUR * s}
        assert got is not None
        assert portfolio_margin([pos], grids={symbol: got}, **kw) == portfolio_margin([pos], **kw)


def test_a_step_a_call_would_reject_is_not_served():
    # a forward of 0 at step 12: the per-step call raises; the block neither raises nor serves
    # it (the caller evaluates it on its own and gets the error), its neighbours are served
    f = _feed(SYMBOLS[0], seed=4, bad={12: ("fc", 0.0), 20: ("lo", float("nan"))})
    steps = _steps(block=8)
    assert steps.greeks(f, 12) is None
    assert steps.grids(f, 12) is None
    assert steps.greeks(f, 11) is not None
    assert steps.greeks(f, 13) is not None
    with pytest.raises(ConfigError, match=r"forward must be finite and > 0, got 0\.0"):
        unit_greeks(0.0, 105_000.0, 0.1, 0.5, is_call=True, inverse=False)
    # the intrabar marks price what they are given: the pricer names the rejected input
    assert steps.marks(f, 14, 4).shape == (4, 2)
    with pytest.raises(ConfigError, match="forward must be finite and > 0"):
        steps.marks(f, 18, 4)


def test_option_pnl_grid_is_elementwise():
    # n valuations at once equal n calls of one (the block evaluation relies on it)
    rng = np.random.default_rng(5)
    fwd = rng.uniform(50_000, 150_000, 64)
    t = rng.uniform(0, 0.5, 64)
    t[:3] = 0.0  # expired: intrinsic
    sigma = rng.uniform(0, 1.5, 64)
    p = PortfolioParams()
    moves = np.asarray(p.core_moves())
    for linear in (True, False):
        many = option_pnl_grid(fwd, 100_000.0, t, sigma, is_call=False, is_linear=linear,
                               moves=moves, vol_columns=("up", "same", "down"), params=p)
        for i in range(64):
            one = option_pnl_grid(fwd[i:i + 1], 100_000.0, t[i:i + 1], sigma[i:i + 1],
                                  is_call=False, is_linear=linear, moves=moves,
                                  vol_columns=("up", "same", "down"), params=p)
            assert np.array_equal(many[i], one[0]), i


def test_price_of_one_option_type_equals_the_mixed_evaluation():
    # price() computes only the side asked for; a mixed array gives each element the same value
    rng = np.random.default_rng(6)
    f = rng.uniform(80, 120, 50)
    t = rng.uniform(0, 1, 50)
    v = rng.uniform(0, 1, 50)
    mixed = black76.price(f, 100.0, t, v, np.arange(50) % 2 == 0)
    assert np.array_equal(mixed[0::2], black76.price(f[0::2], 100.0, t[0::2], v[0::2], True))
    assert np.array_equal(mixed[1::2], black76.price(f[1::2], 100.0, t[1::2], v[1::2], False))
