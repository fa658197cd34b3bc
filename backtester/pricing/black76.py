"""Black-76 option prices and greeks on the option's own forward (numpy-vectorized).

Conventions
-----------
* ``forward`` is the option's own forward (Deribit: the ``underlying_price`` of the option's
  expiry, i.e. the synthetic or real future), ``strike`` in the same currency (USD).
* ``t_years`` is time to expiry in years of 365 days (``(expiry_ms - now_ms) / MS_PER_YEAR``).
* ``vol`` is the implied volatility as a fraction (0.55 means 55 %).
* ``rate`` is the continuously compounded discount rate, 0 by default (crypto exchanges mark
  options with r = 0 on the forward).
* Linear prices are in USD per 1 unit of the underlying. :func:`inverse_price` is the Deribit
  quote: coin per 1-coin option (``price / forward``).
* Greeks follow exchange conventions for a 1-coin option in USD terms: delta ``N(d1)`` (call) or
  ``N(d1) - 1`` (put), gamma per USD of forward move, vega per 1 vol point (0.01), theta per
  calendar day (the value lost over the next day, or over the time left when less, never more
  than the option is worth: Deribit's convention; see :func:`theta`).
* Every function broadcasts its array arguments; with scalar arguments it returns a ``float``.
* Expired (``t_years == 0``) or zero-vol options are valued at the discounted intrinsic value; no
  function returns NaN for valid input. Negative vol or time and non-positive forward or strike
  raise :class:`~backtester.errors.ConfigError` (a ``ValueError``) naming the argument.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np
import numpy.typing as npt

from backtester.errors import ConfigError

__all__ = [
    "DAYS_PER_YEAR",
    "MS_PER_YEAR",
    "FloatArray",
    "delta",
    "gamma",
    "inverse_delta",
    "inverse_price",
    "price",
    "theta",
    "vega",
    "years_between",
]

FloatArray = npt.NDArray[np.float64]
_Real = float | int | np.floating | FloatArray
_Bool = bool | np.bool_ | npt.NDArray[np.bool_]

#: Calendar days per year used for time to expiry and for theta.
DAYS_PER_YEAR = 365.0
#: Milliseconds in a 365-day year.
MS_PER_YEAR = 365 * 86_400_000
# Below this total standard deviation (vol * sqrt(t)) an option is valued at intrinsic: the
# normal CDF of d1 is then a step function to double precision.
_TINY_STDEV = 1e-12
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def years_between(start_ms: int | npt.NDArray[np.int64], end_ms: int | npt.NDArray[np.int64]
                  ) -> float | FloatArray:
    """Return the time from ``start_ms`` to ``end_ms`` in 365-day years (never negative).

    >>> round(years_between(0, 30 * 86_400_000), 6)
    0.082192
    """
    years = np.maximum(np.asarray(end_ms, dtype=np.float64) - np.asarray(start_ms, np.float64),
                       0.0) / MS_PER_YEAR
    return float(years) if years.ndim == 0 else years


_ERFC = np.frompyfunc(math.erfc, 1, 1)


def _ncdf(x: FloatArray) -> FloatArray:
    # math.erfc keeps the far tails accurate (1 - erf loses digits below ~1e-16); numpy has no
    # erf and scipy is not a runtime dependency.
    return 0.5 * np.asarray(_ERFC(-x / math.sqrt(2.0)), dtype=np.float64)


def _npdf(x: FloatArray) -> FloatArray:
    return np.exp(-0.5 * x * x) / _SQRT_2PI


def _check(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, rate: _Real
           ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    arrays = []
    for name, value, allow_zero in (("forward", forward, False), ("strike", strike, False),
                                    ("t_years", t_years, True), ("vol", vol, True)):
        a = np.asarray(value, dtype=np.float64)
        bad = ~np.isfinite(a) | ((a < 0) if allow_zero else (a <= 0))
        if np.any(bad):
            first = a[bad].flat[0] if a.ndim else float(a)
            need = "finite and >= 0" if allow_zero else "finite and > 0"
            msg = f"{name} must be {need}, got {first!r}"
            raise ConfigError(msg)
        arrays.append(a)
    r = np.asarray(rate, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        msg = f"rate must be finite, got {rate!r}"
        raise ConfigError(msg)
    return arrays[0], arrays[1], arrays[2], arrays[3], r


def _out(x: FloatArray) -> float | FloatArray:
    return float(x) if x.ndim == 0 else x


class _Parts:
    # Shared intermediate terms of one broadcast evaluation.
    __slots__ = ("d1", "d2", "df", "f", "is_call", "k", "live", "sd", "t", "v")

    def __init__(self, forward: _Real, strike: _Real, t_years: _Real, vol: _Real,
                 is_call: _Bool, rate: _Real) -> None:
        f, k, t, v, r = _check(forward, strike, t_years, vol, rate)
        c = np.asarray(is_call, dtype=bool)
        f, k, t, v, r, c = np.broadcast_arrays(f, k, t, v, r, c)
        self.f, self.k, self.t, self.v, self.is_call = f, k, t, v, c
        self.df = np.exp(-r * t)
        self.sd = v * np.sqrt(t)
        self.live = self.sd > _TINY_STDEV
        safe_sd = np.where(self.live, self.sd, 1.0)
        d1 = (np.log(f / k) + 0.5 * self.sd * self.sd) / safe_sd
        # Dead options (t = 0 or vol = 0): d1 = d2 = +inf / -inf by moneyness; at the money the
        # limit delta of a call is 1/2, kept by d = 0.
        dead_d = np.where(f > k, np.inf, np.where(f < k, -np.inf, 0.0))
        self.d1 = np.where(self.live, d1, dead_d)
        self.d2 = np.where(self.live, d1 - self.sd, dead_d)


@overload
def price(forward: float, strike: float, t_years: float, vol: float, is_call: bool, *,
          rate: float = 0.0) -> float: ...
@overload
def price(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
          rate: _Real = 0.0) -> float | FloatArray: ...
def price(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
          rate: _Real = 0.0) -> float | FloatArray:
    """Return the Black-76 price in USD per 1 unit of the underlying.

    ``call = DF·(F·N(d1) − K·N(d2))``, ``put = DF·(K·N(−d2) − F·N(−d1))``,
    ``d1 = (ln(F/K) + σ²t/2)/(σ√t)``, ``d2 = d1 − σ√t``, ``DF = exp(−rate·t)``.

    Parameters
    ----------
    forward, strike
        The option's forward and strike in USD (> 0).
    t_years
        Time to expiry in 365-day years (>= 0; 0 gives the discounted intrinsic value).
    vol
        Implied volatility as a fraction (>= 0).
    is_call
        True for calls, False for puts (bool or bool array).
    rate
        Discount rate (fraction per year), 0 by default.

    Returns
    -------
    float or numpy.ndarray
        The premium; a float when every argument is a scalar.

    Examples
    --------
    >>> round(price(100.0, 100.0, 1.0, 0.2, True), 6)
    7.965567
    >>> price(100.0, 90.0, 0.0, 0.5, True)
    10.0
    >>> price(100.0, np.array([90.0, 110.0]), 0.25, 0.6, False).round(4).tolist()
    [7.0129, 18.141]
    """
    p = _Parts(forward, strike, t_years, vol, is_call, rate)
    calls = bool(p.is_call.all())
    puts = not p.is_call.any()
    # only the side(s) asked for: the same values, half the normal CDFs for one option type
    call = p.f if puts else p.f * _ncdf(p.d1) - p.k * _ncdf(p.d2)
    put = p.f if calls else p.k * _ncdf(-p.d2) - p.f * _ncdf(-p.d1)
    value = p.df * np.where(p.is_call, call, put)
    # Rounding can push a deep-OTM value a hair below zero.
    return _out(np.maximum(value, 0.0))


@overload
def inverse_price(forward: float, strike: float, t_years: float, vol: float, is_call: bool, *,
                  rate: float = 0.0) -> float: ...
@overload
def inverse_price(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
                  rate: _Real = 0.0) -> float | FloatArray: ...
def inverse_price(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
                  rate: _Real = 0.0) -> float | FloatArray:
    """Return the coin-settled (inverse) premium: coin per 1-coin option, ``price / forward``.

    This is how Deribit quotes BTC and ETH options (e.g. 0.05 BTC per 1 BTC call).

    Examples
    --------
    >>> round(inverse_price(10_000.0, 10_000.0, 30 / 365, 0.8, True), 6)
    0.091298
    >>> inverse_price(12_500.0, 10_000.0, 0.0, 0.8, True)  # Deribit payoff example: 0.2 BTC
    0.2
    """
    usd = np.asarray(price(forward, strike, t_years, vol, is_call, rate=rate))
    return _out(usd / np.asarray(forward, dtype=np.float64))


@overload
def delta(forward: float, strike: float, t_years: float, vol: float, is_call: bool, *,
          rate: float = 0.0) -> float: ...
@overload
def delta(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
          rate: _Real = 0.0) -> float | FloatArray: ...
def delta(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
          rate: _Real = 0.0) -> float | FloatArray:
    """Return the forward delta: ``DF·N(d1)`` for a call, ``DF·(N(d1) − 1)`` for a put.

    Units: USD of option value per USD of forward move, i.e. coins of exposure per 1-coin option.

    >>> round(delta(100.0, 100.0, 1.0, 0.2, True), 6)
    0.539828
    >>> round(delta(100.0, 100.0, 1.0, 0.2, False), 6)
    -0.460172
    """
    p = _Parts(forward, strike, t_years, vol, is_call, rate)
    nd1 = _ncdf(p.d1)
    return _out(p.df * np.where(p.is_call, nd1, nd1 - 1.0))


@overload
def gamma(forward: float, strike: float, t_years: float, vol: float, is_call: bool = True, *,
          rate: float = 0.0) -> float: ...
@overload
def gamma(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool = True, *,
          rate: _Real = 0.0) -> float | FloatArray: ...
def gamma(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool = True, *,
          rate: _Real = 0.0) -> float | FloatArray:
    """Return gamma, ``DF·n(d1)/(F·σ·√t)``: change of delta per 1 USD of forward (same for puts).

    Zero for expired or zero-vol options.

    >>> round(gamma(100.0, 100.0, 1.0, 0.2), 6)
    0.019848
    """
    p = _Parts(forward, strike, t_years, vol, is_call, rate)
    safe = np.where(p.live, p.f * p.sd, 1.0)
    return _out(np.where(p.live, p.df * _npdf(p.d1) / safe, 0.0))


@overload
def vega(forward: float, strike: float, t_years: float, vol: float, is_call: bool = True, *,
         rate: float = 0.0) -> float: ...
@overload
def vega(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool = True, *,
         rate: _Real = 0.0) -> float | FloatArray: ...
def vega(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool = True, *,
         rate: _Real = 0.0) -> float | FloatArray:
    """Return vega per 1 vol point: ``DF·F·n(d1)·√t / 100`` USD (same for puts).

    >>> round(vega(100.0, 100.0, 1.0, 0.2), 6)
    0.396953
    """
    p = _Parts(forward, strike, t_years, vol, is_call, rate)
    return _out(np.where(p.live, p.df * p.f * _npdf(p.d1) * np.sqrt(p.t) / 100.0, 0.0))


@overload
def theta(forward: float, strike: float, t_years: float, vol: float, is_call: bool, *,
          rate: float = 0.0) -> float: ...
@overload
def theta(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
          rate: _Real = 0.0) -> float | FloatArray: ...
def theta(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
          rate: _Real = 0.0) -> float | FloatArray:
    """Return theta per calendar day in Deribit's convention (USD, forward fixed).

    The analytic rate of decay ``θ_rate = (−DF·F·n(d1)·σ/(2√t) + rate·V) / 365`` (USD per
    day) is what the option would lose over one more day at today's pace. Deribit reports the
    value lost over the next day *or over the time left, if less*, and never more than the
    option is worth::

        θ = max(θ_rate · min(τ_days, 1), −V),   τ_days = t_years · 365

    With a day or more left and a rate loss below the value this is ``θ_rate`` itself; within
    the last day it shrinks with the time left (at expiry it is 0), and an option whose rate
    would lose more than its value in the window (short-dated, near the money, high vol)
    reports ``−V``. Checked against every row of two recorded Deribit BTC chains, including
    the expiries within two days (``tests/unit/pricing/test_deribit_chain.py``). Zero for
    expired options; with zero vol and a positive rate only the discounting term remains.

    Examples
    --------
    >>> round(theta(100.0, 100.0, 1.0, 0.2, True), 6)
    -0.010875

    Deribit BTC-14MAY20-9125-P on 2020-05-14 05:42 UTC (forward 9,353.93, mark IV 106.34 %,
    2.29 hours left): the rate is −117.5 USD/day, over the 0.0954 days left −11.2, more
    than the 5.32 USD the put is worth, so theta is −5.32 (Deribit recorded −5.28361, on its
    mark of 5.2836 USD):

    >>> t = 8_244_094 / MS_PER_YEAR
    >>> round(theta(9_353.93, 9_125.0, t, 1.0634, False), 2)
    -5.32
    >>> round(price(9_353.93, 9_125.0, t, 1.0634, False), 2)
    5.32
    """
    p = _Parts(forward, strike, t_years, vol, is_call, rate)
    value = np.asarray(price(p.f, p.k, p.t, p.v, p.is_call, rate=rate))
    per_day = _theta_rate(p, value)
    # the value lost over the next day, or over the time left when less, at most all of it
    window_days = np.minimum(p.t * DAYS_PER_YEAR, 1.0)
    return _out(np.maximum(per_day * window_days, -value))


def _theta_rate(p: _Parts, value: FloatArray) -> FloatArray:
    # the analytic −∂V/∂t per calendar day (USD): time decay plus the discounting carry
    safe_t = np.where(p.live, p.t, 1.0)
    decay = np.where(p.live, -p.df * p.f * _npdf(p.d1) * p.v / (2.0 * np.sqrt(safe_t)), 0.0)
    r = -np.log(p.df) / np.where(p.t > 0, p.t, 1.0)
    carry = np.where(p.t > 0, r * value, 0.0)
    return np.asarray((decay + carry) / DAYS_PER_YEAR, dtype=np.float64)


@overload
def inverse_delta(forward: float, strike: float, t_years: float, vol: float, is_call: bool, *,
                  rate: float = 0.0) -> float: ...
@overload
def inverse_delta(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
                  rate: _Real = 0.0) -> float | FloatArray: ...
def inverse_delta(forward: _Real, strike: _Real, t_years: _Real, vol: _Real, is_call: _Bool, *,
                  rate: _Real = 0.0) -> float | FloatArray:
    """Return the premium-adjusted delta of a coin-settled option: ``delta − price/forward``.

    A coin-settled option is worth ``V/F`` coins; its coin value moves with the forward as
    ``d(V/F)/dF = (delta − V/F)/F``, so the USD-equivalent exposure a hedge must offset is
    ``delta − V/F`` coins per 1-coin option (for an inverse future of USD face ``N``,
    ``d(PnL)/dF = N/F²``: the hedge face is ``qty·F·(delta − V/F)`` USD).

    >>> round(inverse_delta(100.0, 100.0, 1.0, 0.2, True), 6)
    0.460172
    """
    d = np.asarray(delta(forward, strike, t_years, vol, is_call, rate=rate))
    coin = np.asarray(inverse_price(forward, strike, t_years, vol, is_call, rate=rate))
    return _out(d - coin)
