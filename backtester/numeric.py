"""Decimal helpers: every booked amount passes through here.

Booked amounts (fills, fees, funding, settlement, liquidation penalties, balances) are
:class:`decimal.Decimal`. Valuations that change every bar are float64. Converting a float to a
booked amount is always explicit and goes through one of these functions, each with a stated
rounding rule.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal

__all__ = [
    "MONEY_QUANTUM",
    "ZERO",
    "dec",
    "to_money",
    "to_price",
    "to_qty",
]

ZERO = Decimal(0)
#: Resolution of booked money in every currency: 1e-12 of a unit (finer than a satoshi or a
#: micro-USDT, so that no exchange amount is rounded away).
MONEY_QUANTUM = Decimal("1e-12")
_CTX = Context(prec=34)
_ONE = Decimal(1)


def dec(value: float | int | str | Decimal) -> Decimal:
    """Convert a value to Decimal through its shortest repr (``0.1`` → ``Decimal('0.1')``).

    >>> dec(0.1)
    Decimal('0.1')
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            msg = f"cannot book a non-finite amount {value!r}"
            raise ValueError(msg)
        return Decimal(repr(value))
    return Decimal(value)


def to_money(value: float | int | str | Decimal) -> Decimal:
    """Quantize a booked amount to :data:`MONEY_QUANTUM`, half-even.

    >>> to_money(0.1 + 0.2)
    Decimal('0.300000000000')
    """
    return dec(value).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN, context=_CTX)


def to_price(value: float | Decimal, tick: Decimal, *, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round a price to a multiple of ``tick``: the nearest (half up) unless ``rounding`` (a
    :mod:`decimal` rounding mode, e.g. ``ROUND_FLOOR``) says otherwise.

    >>> to_price(60000.37, Decimal("0.5"))
    Decimal('60000.5')
    >>> from decimal import ROUND_FLOOR
    >>> to_price(60000.37, Decimal("0.5"), rounding=ROUND_FLOOR)
    Decimal('6E+4')
    """
    d = dec(value)
    if tick <= 0:
        return d
    if d == 0:
        return ZERO
    # the arithmetic of the fixed 34-digit context, passed explicitly (no context switch)
    steps = _CTX.divide(d, tick).quantize(_ONE, rounding=rounding, context=_CTX)
    return _CTX.multiply(steps, tick).normalize(_CTX)


def to_qty(value: float | Decimal, lot: Decimal) -> Decimal:
    """Round a quantity (contracts, unsigned or signed) towards zero to a multiple of ``lot``.

    >>> to_qty(12.3456, Decimal("10"))
    Decimal('1E+1')
    >>> to_qty(-0.0019, Decimal("0.001"))
    Decimal('-0.001')
    """
    d = dec(value)
    if lot <= 0:
        return d
    if d == 0:
        return ZERO
    steps = _CTX.divide(d, lot).to_integral_value(rounding=ROUND_DOWN, context=_CTX)
    return _CTX.multiply(steps, lot).normalize(_CTX)
