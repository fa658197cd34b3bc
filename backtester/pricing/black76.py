"""Black-76 on the option's own forward (r = 0, 365-day year)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["price"]


def _ncdf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    from math import erf, sqrt

    return np.vectorize(lambda v: 0.5 * (1.0 + erf(v / sqrt(2.0))))(x).astype("float64")


def price(forward: ArrayLike, strike: ArrayLike, t_years: ArrayLike, vol: ArrayLike,
          is_call: ArrayLike) -> NDArray[np.float64]:
    """Return the Black-76 price (USD per 1 unit of underlying), r = 0.

    >>> round(float(price(100.0, 100.0, 1.0, 0.2, True)), 4)
    7.9656
    """
    f = np.asarray(forward, dtype="float64")
    k = np.asarray(strike, dtype="float64")
    t = np.maximum(np.asarray(t_years, dtype="float64"), 0.0)
    v = np.asarray(vol, dtype="float64")
    call = np.asarray(is_call, dtype=bool)
    sd = v * np.sqrt(t)
    intrinsic = np.where(call, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(f / k) + 0.5 * sd * sd) / sd
        d2 = d1 - sd
        c = f * _ncdf(d1) - k * _ncdf(d2)
        p = c - f + k
    out = np.where(call, c, p)
    return np.where(sd > 0, out, intrinsic)
