"""Liquidation and bankruptcy prices: where a margin surplus crosses zero.

Definitions (margin-rules §0): the liquidation price ``LP`` is the mark at which margin balance
equals maintenance margin, ``MB(P) = MM(P)``; the bankruptcy price ``BP`` is the mark at which
the margin balance is zero. Both are None where no positive price exists (e.g. a long that
cannot lose its margin, or a fully hedged pair).

The surplus itself is always the margin kernel's (:mod:`backtester.margin.kernel`) evaluation of
the book with the price moved by a factor — the calculator (:mod:`backtester.margin.calculator`)
and the engine's liquidation (bankruptcy price of a takeover) hand it in as a function of that
factor; :func:`price_root` finds the factor. There is no second copy of the margin arithmetic
here: the exchanges' published closed forms, which the kernel's roots are tested against, live
with the tests (tests/unit/margin/published_formulas.py).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "price_root",
    "secant_root",
]

#: the largest move :func:`price_root` searches: prices from a billionth to a billion times the
#: current one
_FAR = 1e9


def secant_root(f: Callable[[float], float], x0: float, x1: float, *,
                iterations: int = 60) -> float | None:
    """Return a root of ``f`` near ``x0`` by secant steps from ``x0`` and ``x1`` (exact in one
    step where ``f`` is affine), or None when the steps leave the positive numbers or stall.

    >>> round(secant_root(lambda x: 3.0 * x - 1.5, 1.0, 0.9), 12)
    0.5
    """
    f0 = f(x0)
    if f0 == 0.0:
        return x0
    f1 = f(x1)
    for _ in range(iterations):
        if f1 == f0:
            return None
        x2 = x1 - f1 * (x1 - x0) / (f1 - f0)
        if not x2 > 0.0:
            return None
        f2 = f(x2)
        if abs(f2) <= 1e-12 * (abs(f0) + abs(f1) + 1.0) or x2 == x1:
            return x2
        x0, f0, x1, f1 = x1, f1, x2, f2
    return x1


def price_root(surplus: Callable[[float], float], *, long: bool) -> float | None:
    """Return the price factor ``x`` (the price moved to ``x`` times the current one) at which
    ``surplus(x)`` crosses zero, or None when no positive factor does.

    ``surplus`` is a margin surplus as a function of the factor (positive = healthy): margin
    balance − maintenance margin for a liquidation price, the margin balance for a bankruptcy
    price. ``long``: whether the moving legs are net long (their surplus falls with the price).

    Secant steps from 1 (exact in one step where the surplus is affine in the price — linear
    legs within one tier, collateral in the coin moved — and fast where it is affine in its
    inverse: inverse legs); a root they find is accepted once the surplus changes sign across
    it. Otherwise the side the root lies on is the one the surplus worsens towards while it is
    positive (long: lower prices), the other side when it is already negative; the factor
    doubles (or halves) until the sign changes — up to a billion times the price either way —
    and bisection closes the bracket. The surplus need only be continuous (tier tables keep it
    so through their maintenance amounts).

    >>> round(price_root(lambda x: 400.0 + 20_000.0 * (x - 1.0), long=True) * 20_000.0, 6)
    19600.0
    """
    x = secant_root(surplus, 1.0, 0.9 if long else 1.1)
    if x is not None and _is_root(surplus, x):
        return x
    at_one = surplus(1.0)
    if at_one == 0.0:
        return 1.0
    down = (at_one > 0.0) == long
    lo, f_lo = 1.0, at_one
    while True:
        hi = lo * (0.5 if down else 2.0)
        if not 1.0 / _FAR <= hi <= _FAR:
            return None
        f_hi = surplus(hi)
        if f_hi == 0.0:
            return hi
        if (f_hi > 0.0) != (f_lo > 0.0):
            return _bisect(surplus, lo, f_lo, hi)
        lo, f_lo = hi, f_hi


def _is_root(f: Callable[[float], float], x: float) -> bool:
    # f changes sign across x (or vanishes at it), to a relative step of 1e-9
    fx = f(x)
    if fx == 0.0:
        return True
    below, above = f(x * (1.0 - 1e-9)), f(x * (1.0 + 1e-9))
    return (below > 0.0) != (above > 0.0)


def _bisect(f: Callable[[float], float], a: float, f_a: float, b: float) -> float:
    # the root of f between a and b (f(a) and f(b) of opposite signs), to the last bits
    for _ in range(200):
        mid = 0.5 * (a + b)
        if mid in (a, b):
            break
        f_mid = f(mid)
        if f_mid == 0.0:
            return mid
        if (f_mid > 0.0) == (f_a > 0.0):
            a, f_a = mid, f_mid
        else:
            b = mid
    return 0.5 * (a + b)
