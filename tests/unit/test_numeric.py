"""Decimal helpers: shortest-repr conversion and the stated rounding rules."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backtester.numeric import dec, to_money, to_price, to_qty


def test_dec_uses_the_shortest_repr_of_floats() -> None:
    assert dec(0.1) == Decimal("0.1")  # not 0.1000000000000000055511151231257827...
    assert dec(0.1 + 0.2) == Decimal("0.30000000000000004")
    assert dec(1e-8) == Decimal("1e-8")
    assert dec(3) == Decimal(3)
    assert dec("2.50") == Decimal("2.50")
    d = Decimal("1.5")
    assert dec(d) is d


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_dec_refuses_non_finite_floats(bad: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        dec(bad)


def test_to_money_quantizes_half_even_to_1e_12() -> None:
    assert to_money(0.1 + 0.2) == Decimal("0.300000000000")
    assert to_money(Decimal("0.0000000000005")) == Decimal("0")  # half to even (0)
    assert to_money(Decimal("0.0000000000015")) == Decimal("0.000000000002")  # half to even (2)


@pytest.mark.parametrize(("value", "tick", "expected"), [
    (60000.37, "0.5", "60000.5"),    # 120000.74 ticks -> 120001
    (60000.24, "0.5", "60000"),      # 120000.48 ticks -> 120000
    (100.005, "0.01", "100.01"),     # exact half (via repr 100.005) rounds up
    (-1.25, "0.5", "-1.5"),          # half away from zero
    (0.0, "0.1", "0"),
    (12.3456, "0", "12.3456"),       # no tick: unchanged
])
def test_to_price_rounds_half_up_to_the_tick(value: float, tick: str, expected: str) -> None:
    assert to_price(value, Decimal(tick)) == Decimal(expected)


@pytest.mark.parametrize(("value", "lot", "expected"), [
    (12.3456, "10", "10"),
    (0.0019, "0.001", "0.001"),      # down, never up
    (-0.0019, "0.001", "-0.001"),    # towards zero for sells
    (0.3, "0.1", "0.3"),             # repr 0.3 is exact: no float artefact rounds it to 0.2
    (0.0004, "0.001", "0"),
    (7.0, "1", "7"),
])
def test_to_qty_rounds_towards_zero_to_the_lot(value: float, lot: str, expected: str) -> None:
    assert to_qty(value, Decimal(lot)) == Decimal(expected)
