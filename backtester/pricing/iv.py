"""Implied volatility from Black-76 prices (numpy-vectorized, bracketed Newton).

The solver works on the price normalised by the discounted forward, so that one absolute
tolerance fits every strike and currency. Each iteration takes a Newton step and falls back to
bisection whenever the step leaves the current bracket (or vega vanishes), so it converges for
every solvable input in at most ~60 iterations.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from backtester.errors import ConfigError
from backtester.pricing.black76 import FloatArray, price, vega

__all__ = ["implied_vol"]

_Real = float | int | np.floating | FloatArray
_Bool = bool | np.bool_ | npt.NDArray[np.bool_]


def implied_vol(option_price: _Real, forward: _Real, strike: _Real, t_years: _Real,
                is_call: _Bool, *, is_inverse: bool = False, rate: _Real = 0.0,
                vol_min: float = 1e-4, vol_max: float = 10.0, tolerance: float = 1e-12,
                max_iterations: int = 100) -> float | FloatArray:
    """Solve the Black-76 implied volatility of option prices.

    Parameters
    ----------
    option_price
        The premium: USD per 1 unit of underlying, or coin per 1-coin option when
        ``is_inverse`` (Deribit quotes; converted with ``price × forward``).
    forward, strike, t_years, is_call, rate
        As in :func:`backtester.pricing.black76.price`.
    is_inverse
        True when ``option_price`` is in coin (inverse, coin-settled options).
    vol_min, vol_max
        The search bracket for the volatility (fractions).
    tolerance
        Absolute tolerance on the price normalised by ``DF × forward``.
    max_iterations
        Iteration cap (bisection alone needs ~50 for the default bracket).

    Returns
    -------
    float or numpy.ndarray
        The volatility as a fraction; a float when every argument is a scalar. **NaN** where no
        volatility in ``[vol_min, vol_max]`` reproduces the price: prices outside the
        no-arbitrage bounds (below the discounted intrinsic value ``DF·max(±(F − K), 0)`` or at
        or above ``DF·F`` for a call / ``DF·K`` for a put), prices so close to intrinsic that
        they need a vol below ``vol_min`` (or above ``vol_max``), expired options
        (``t_years == 0``) and non-finite prices.

    Examples
    --------
    >>> p = price(100.0, 100.0, 1.0, 0.2, True)
    >>> round(implied_vol(p, 100.0, 100.0, 1.0, True), 10)
    0.2
    >>> implied_vol(1.2, 10_000.0, 9_000.0, 0.1, True, is_inverse=True)  # above F: no vol
    nan
    """
    if not (0.0 < vol_min < vol_max):
        msg = f"vol_min and vol_max must satisfy 0 < vol_min < vol_max, got {vol_min}, {vol_max}"
        raise ConfigError(msg)
    p_in = np.asarray(option_price, dtype=np.float64)
    if np.any(p_in[np.isfinite(p_in)] < 0):
        msg = "option_price must be >= 0"
        raise ConfigError(msg)
    f, k, t, r, c, p_in = np.broadcast_arrays(
        np.asarray(forward, dtype=np.float64), np.asarray(strike, dtype=np.float64),
        np.asarray(t_years, dtype=np.float64), np.asarray(rate, dtype=np.float64),
        np.asarray(is_call, dtype=bool), p_in)
    # Validate forward/strike/time through the pricer once (raises ConfigError naming them).
    price(f, k, t, np.full(f.shape, vol_min), c, rate=r)
    df = np.exp(-r * t)
    usd = p_in * f if is_inverse else p_in
    target = usd / (df * f)  # normalised price: value of an option on forward 1 with strike k/f
    kn = k / f
    ones = np.ones(f.shape)

    lo = np.full(f.shape, vol_min)
    hi = np.full(f.shape, vol_max)
    p_lo = np.asarray(price(ones, kn, t, lo, c))
    p_hi = np.asarray(price(ones, kn, t, hi, c))
    ok = np.isfinite(target) & (t > 0) & (target >= p_lo) & (target <= p_hi)
    # Start at the Brenner-Subrahmanyam ATM approximation, clipped into the bracket.
    safe_t = np.where(t > 0, t, 1.0)
    x = np.clip(np.sqrt(2.0 * np.pi / safe_t) * np.where(ok, target, 0.0), vol_min, vol_max)
    x = np.where(ok, x, 0.5 * (lo + hi))
    done = ~ok
    for _ in range(max_iterations):
        if np.all(done):
            break
        pv = np.asarray(price(ones, kn, t, x, c))
        diff = pv - target
        converged = np.abs(diff) <= tolerance
        done = done | converged
        hi = np.where(diff > 0, x, hi)
        lo = np.where(diff <= 0, x, lo)
        vg = np.asarray(vega(ones, kn, t, x, c)) * 100.0  # per unit of vol
        safe_vg = np.where(vg > 1e-300, vg, 1.0)
        step = x - diff / safe_vg
        inside = (vg > 1e-300) & (step > lo) & (step < hi)
        x = np.where(done, x, np.where(inside, step, 0.5 * (lo + hi)))
        done = done | (hi - lo <= 1e-15 * np.maximum(hi, 1.0))
    out = np.where(ok, x, np.nan)
    return float(out) if out.ndim == 0 else out
