"""Black-76 prices and greeks: parity, finite differences, edge cases, inverse payoffs."""

from __future__ import annotations

import numpy as np
import pytest

from backtester.errors import ConfigError
from backtester.pricing import black76 as b

RNG = np.random.default_rng(7)
N = 500
F = RNG.uniform(1_000.0, 80_000.0, N)
K = F * np.exp(RNG.normal(0.0, 0.4, N))
T = RNG.uniform(1.0 / 365.0, 2.0, N)
V = RNG.uniform(0.1, 2.0, N)


@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_put_call_parity(rate: float) -> None:
    # C − P = DF·(F − K) for every strike, time and vol.
    call = b.price(F, K, T, V, True, rate=rate)
    put = b.price(F, K, T, V, False, rate=rate)
    assert np.allclose(call - put, np.exp(-rate * T) * (F - K), rtol=0, atol=1e-9 * F)


def test_scalar_inputs_return_float_and_arrays_broadcast() -> None:
    assert isinstance(b.price(100.0, 100.0, 1.0, 0.2, True), float)
    out = b.price(100.0, np.array([90.0, 100.0, 110.0]), 0.5, 0.3, np.array([True, False, True]))
    assert isinstance(out, np.ndarray)
    assert out.shape == (3,)


@pytest.mark.parametrize("is_call", [True, False])
def test_greeks_match_finite_differences(is_call: bool) -> None:
    h = 1e-4 * F
    up = b.price(F + h, K, T, V, is_call)
    mid = b.price(F, K, T, V, is_call)
    dn = b.price(F - h, K, T, V, is_call)
    assert np.allclose(b.delta(F, K, T, V, is_call), (up - dn) / (2 * h), atol=1e-6)
    assert np.allclose(b.gamma(F, K, T, V, is_call), (up - 2 * mid + dn) / h**2,
                       rtol=1e-3, atol=1e-9)
    dv = 1e-5
    fd_vega = (b.price(F, K, T, V + dv, is_call) - b.price(F, K, T, V - dv, is_call)) / (2 * dv)
    assert np.allclose(b.vega(F, K, T, V, is_call), fd_vega / 100.0, rtol=1e-6, atol=1e-9 * F)
    # Theta: the rate of value change per calendar day as time passes (t shrinks), forward
    # fixed, over the next day (T >= 1 day here) and never more than the option is worth
    dt = 1e-6
    fd_theta = -(b.price(F, K, T + dt, V, is_call) - b.price(F, K, T - dt, V, is_call)) / (2 * dt)
    want = np.maximum(fd_theta / 365.0, -mid)
    assert np.allclose(b.theta(F, K, T, V, is_call), want, rtol=1e-5, atol=1e-9 * F)


def test_theta_with_rate_matches_finite_difference() -> None:
    dt = 1e-6
    fd = -(b.price(F, K, T + dt, V, True, rate=0.05)
           - b.price(F, K, T - dt, V, True, rate=0.05)) / (2 * dt)
    value = b.price(F, K, T, V, True, rate=0.05)
    want = np.maximum(fd / 365.0, -value)
    assert np.allclose(b.theta(F, K, T, V, True, rate=0.05), want, rtol=1e-5, atol=1e-9 * F)


def test_theta_within_the_last_day_is_the_rate_over_the_time_left() -> None:
    # 6 hours left: t = 0.25/365 year, √t = 0.0261712, σ√t = 0.8·√t = 0.0209370.
    # ATM call F = K = 100: d1 = σ√t/2 = 0.0104685, n(d1) = 0.398920; the rate is
    # −F·n(d1)·σ/(2√t)/365 = −100·0.398920·0.8/0.0523424/365 = −1.670436 USD/day, over the
    # 0.25 day left −0.417609. The call is worth F·(2·N(d1) − 1) = 100·(2·0.504176 − 1) =
    # 0.835248, more than that, so theta is −0.417609.
    t = 0.25 / 365.0
    assert b.price(100.0, 100.0, t, 0.8, True) == pytest.approx(0.835248, abs=1e-6)
    assert b.theta(100.0, 100.0, t, 0.8, True) == pytest.approx(-0.417609, abs=1e-6)
    # OTM call K = 102: d1 = (ln(100/102) + 0.5·0.0209370²)/0.0209370 = −0.935353,
    # d2 = −0.956290, N(d1) = 0.174803, N(d2) = 0.169463, n(d1) = 0.257591. Value
    # 100·0.174803 − 102·0.169463 = 0.195107; rate −100·0.257591·0.8/0.0523424/365 =
    # −1.078635/day, over 0.25 day −0.269659: more than the call is worth, so theta = −0.195107.
    assert b.price(100.0, 102.0, t, 0.8, True) == pytest.approx(0.195107, abs=1e-6)
    assert b.theta(100.0, 102.0, t, 0.8, True) == pytest.approx(-0.195107, abs=1e-6)
    # at expiry nothing is left to lose
    assert b.theta(100.0, 102.0, 0.0, 0.8, True) == 0.0


def test_expired_and_zero_vol_give_discounted_intrinsic_without_nan() -> None:
    strikes = np.array([90.0, 100.0, 110.0])
    assert np.asarray(b.price(100.0, strikes, 0.0, 0.8, True)).tolist() == [10.0, 0.0, 0.0]
    assert np.asarray(b.price(100.0, strikes, 0.0, 0.8, False)).tolist() == [0.0, 0.0, 10.0]
    # vol 0, one year at 5 %: DF·max(F − K, 0) = e^−0.05 · 10.
    assert b.price(100.0, 90.0, 1.0, 0.0, True, rate=0.05) == pytest.approx(10 * np.exp(-0.05))
    for fn in (b.delta, b.gamma, b.vega, b.theta, b.inverse_delta, b.inverse_price):
        out = fn(100.0, strikes, 0.0, 0.8, True)
        assert np.all(np.isfinite(out))
    assert np.asarray(b.delta(100.0, strikes, 0.0, 0.8, True)).tolist() == [1.0, 0.5, 0.0]
    assert b.gamma(100.0, 100.0, 0.0, 0.5) == 0.0
    # Tiny time: still finite and close to intrinsic.
    assert b.price(100.0, 90.0, 1e-12, 0.5, True) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"vol": -0.1}, "vol"), ({"forward": 0.0}, "forward"), ({"strike": -5.0}, "strike"),
     ({"t_years": -1.0}, "t_years"), ({"forward": float("nan")}, "forward")],
)
def test_invalid_inputs_raise_naming_the_argument(kwargs: dict[str, float], name: str) -> None:
    args = {"forward": 100.0, "strike": 100.0, "t_years": 1.0, "vol": 0.2} | kwargs
    with pytest.raises(ConfigError, match=name):
        b.price(args["forward"], args["strike"], args["t_years"], args["vol"], True)
    with pytest.raises(ValueError, match=name):
        b.delta(args["forward"], args["strike"], args["t_years"], args["vol"], True)


def test_inverse_price_is_linear_price_over_forward() -> None:
    assert np.allclose(b.inverse_price(F, K, T, V, True) * F, b.price(F, K, T, V, True))


def test_inverse_payoffs_deribit_examples() -> None:
    # docs/margin-rules.md §7.7: long call K 10,000 bought at 0.05 BTC, S 12,500:
    # payoff (12,500 − 10,000)/12,500 = 0.2 BTC; PnL 0.2 − 0.05 = +0.15 BTC.
    call = b.inverse_price(12_500.0, 10_000.0, 0.0, 0.6, True)
    assert call == pytest.approx(0.2)
    assert call - 0.05 == pytest.approx(0.15)
    # Long put K 10,000, S 5,000: payoff (10,000 − 5,000)/5,000 = 1 BTC; bought at 0.05 → +0.95.
    put = b.inverse_price(5_000.0, 10_000.0, 0.0, 0.6, False)
    assert put == pytest.approx(1.0)
    assert put - 0.05 == pytest.approx(0.95)


def test_inverse_and_linear_payoff_identities() -> None:
    # At expiry a coin-settled option pays the linear payoff converted at S: coin·S = USD, and
    # inverse call − put = (S − K)/S = 1 − K/S (coin parity).
    s = np.array([5_000.0, 10_000.0, 12_500.0, 40_000.0])
    k = 10_000.0
    c_coin = b.inverse_price(s, k, 0.0, 0.5, True)
    p_coin = b.inverse_price(s, k, 0.0, 0.5, False)
    assert np.allclose(c_coin * s, b.price(s, k, 0.0, 0.5, True))
    assert np.allclose(c_coin - p_coin, 1.0 - k / s)
    # Before expiry the same parity holds on the forward.
    assert np.allclose(b.inverse_price(F, K, T, V, True) - b.inverse_price(F, K, T, V, False),
                       1.0 - K / F)


def test_premium_adjusted_delta_is_the_coin_value_slope_times_forward() -> None:
    # d(V/F)/dF · F = delta − V/F.
    h = 1e-4 * F
    coin_slope = (b.inverse_price(F + h, K, T, V, False)
                  - b.inverse_price(F - h, K, T, V, False)) / (2 * h)
    assert np.allclose(b.inverse_delta(F, K, T, V, False), coin_slope * F, atol=1e-6)


def test_years_between_uses_a_365_day_year() -> None:
    assert b.years_between(0, 365 * 86_400_000) == 1.0
    assert b.years_between(10, 0) == 0.0
