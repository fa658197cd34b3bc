"""Implied-vol solver: round trips in USD and coin, and NaN outside no-arbitrage bounds."""

from __future__ import annotations

import numpy as np
import pytest

from backtester.errors import ConfigError
from backtester.pricing import black76 as b
from backtester.pricing.iv import implied_vol

RNG = np.random.default_rng(11)
N = 2_000
F = RNG.uniform(1_000.0, 80_000.0, N)
K = F * np.exp(RNG.normal(0.0, 0.4, N))
T = RNG.uniform(1.0 / 365.0, 2.0, N)
V = RNG.uniform(0.05, 3.0, N)
C = RNG.random(N) < 0.5


def test_round_trip_usd_prices() -> None:
    p = np.asarray(b.price(F, K, T, V, C))
    iv = np.asarray(implied_vol(p, F, K, T, C))
    # Measured: vol error < 5e-7 wherever the normalised vega (per unit vol, per 1 of forward)
    # exceeds 1e-6; elsewhere the price is reproduced to 1e-12 of the forward.
    nvega = b.vega(F, K, T, V, C) * 100.0 / F
    ok = nvega > 1e-6
    assert np.all(np.isfinite(iv[ok]))
    assert np.max(np.abs(iv[ok] - V[ok])) < 1e-6
    finite = np.isfinite(iv)
    repriced = b.price(F[finite], K[finite], T[finite], iv[finite], C[finite])
    assert np.max(np.abs(repriced - p[finite]) / F[finite]) < 1e-11


def test_round_trip_coin_prices() -> None:
    coin = b.inverse_price(F, K, T, V, C)
    iv = np.asarray(implied_vol(coin, F, K, T, C, is_inverse=True))
    ok = b.vega(F, K, T, V, C) * 100.0 / F > 1e-6
    assert np.max(np.abs(iv[ok] - V[ok])) < 1e-6


def test_scalar_round_trip() -> None:
    assert implied_vol(b.price(9_352.58, 9_250.0, 0.0219, 0.7687, False),
                       9_352.58, 9_250.0, 0.0219, False) == pytest.approx(0.7687, abs=1e-9)


def test_prices_outside_no_arbitrage_bounds_give_nan() -> None:
    # Call F 100 K 90: bounds (10, 100) in USD. Put F 100 K 110: (10, 110).
    prices = np.array([9.0, 100.5, 9.5, 111.0])
    strikes = np.array([90.0, 90.0, 110.0, 110.0])
    calls = np.array([True, True, False, False])
    out = implied_vol(prices, 100.0, strikes, 0.5, calls)
    assert np.all(np.isnan(out))
    # Expired and NaN prices too.
    assert np.isnan(implied_vol(12.0, 100.0, 90.0, 0.0, True))
    assert np.isnan(implied_vol(float("nan"), 100.0, 90.0, 0.5, True))


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="option_price"):
        implied_vol(-1.0, 100.0, 100.0, 0.5, True)
    with pytest.raises(ConfigError, match="forward"):
        implied_vol(1.0, -100.0, 100.0, 0.5, True)
