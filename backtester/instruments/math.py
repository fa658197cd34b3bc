"""Contract math in one place: PnL and notional of linear, inverse and option contracts (float).

These are the only float implementations of the contract formulas (DESIGN §1: contract math
lives with the instruments). :class:`~backtester.instruments.Instrument` calls them, and the
margin kernel (:mod:`backtester.margin.kernel`) inlines them into its compiled evaluation; the
exact (Decimal) forms for booking are :meth:`Instrument.pnl_exact` and
:meth:`Instrument.notional_exact`.

Conventions: ``qty`` signed contracts (long > 0); ``cs`` the contract size (linear and options:
coin per contract; inverse: USD face per contract); amounts in the settle currency.
Compiled with numba (``cache=True``).
"""

from __future__ import annotations

from numba import njit

__all__ = ["notional", "notional_usd", "pnl"]


@njit(cache=True)
def pnl(qty: float, cs: float, entry: float, price: float, linear: bool) -> float:
    """PnL of signed ``qty`` contracts moved from ``entry`` to ``price``, settle currency.

    Linear (and option premiums): ``qty·cs·(price − entry)``; inverse: ``qty·cs·(1/entry −
    1/price)`` in coin.

    >>> round(pnl(100.0, 10.0, 50_000.0, 40_000.0, False), 6)   # 1,000 USD face, -20 %
    -0.005
    """
    if linear:
        return qty * cs * (price - entry)
    return qty * cs * (1.0 / entry - 1.0 / price)


@njit(cache=True)
def notional(qty: float, cs: float, price: float, linear: bool) -> float:
    """Absolute position value at ``price`` in the settle currency: linear (and options, at
    the underlying's price) ``|qty|·cs·price``, inverse ``|qty|·cs / price`` (coin).

    >>> notional(-2.0, 1.0, 50_000.0, True)
    100000.0
    """
    q = abs(qty) * cs
    if linear:
        return q * price
    return q / price


@njit(cache=True)
def notional_usd(qty: float, cs: float, price: float, linear: bool) -> float:
    """Absolute position value in USD (quote): linear ``|qty|·cs·price``, inverse the USD face
    ``|qty|·cs``.

    >>> notional_usd(3.0, 100.0, 50_000.0, False)
    300.0
    """
    q = abs(qty) * cs
    return q * price if linear else q
