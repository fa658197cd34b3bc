"""Shared helpers for tests that run the same book two ways and compare every result.

``same(a, b)`` asserts two results are identical bit for bit (every frame, the events, the
final state, the metrics and the warnings); ``blocks_of_one()`` makes the margin monitor
evaluate one step per kernel call (the exact reference the block evaluation must equal);
``random_book`` is the random three-perp book of the golden results (``tests/golden/cases``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

import backtester
from backtester.margin.option_steps import OptionSteps
from backtester.margin.state import MarginEngine
from tests.golden.cases import SYMS, RandomTrader, SlowTrader, bars
from tests.golden.cases import _random_book as random_book
from tests.golden.cases import _slow_book as slow_book

__all__ = ["SYMS", "RandomTrader", "SlowTrader", "bars", "blocks_of_one", "random_book", "same",
           "slow_book", "two_ways"]


def same(a: backtester.BacktestResult, b: backtester.BacktestResult) -> None:
    """Assert two runs' results are identical (bit for bit)."""
    for name in ("equity", "fills", "orders", "journal", "positions", "records", "rejections"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True,
                                      obj=name)
    assert a.events == b.events
    assert a.metrics == b.metrics or repr(a.metrics) == repr(b.metrics)
    assert a.state == b.state
    assert a.warnings == b.warnings


@contextmanager
def blocks_of_one() -> Iterator[None]:
    """Evaluate the margin one step per kernel call, and held options' greeks, marks and
    portfolio grids one step per pricer call (the reference for block evaluation)."""
    old = MarginEngine.block_min, MarginEngine.block_max
    old_opt = OptionSteps.block_min, OptionSteps.block_max
    MarginEngine.block_min = MarginEngine.block_max = 1  # type: ignore[misc]
    OptionSteps.block_min = OptionSteps.block_max = 1
    try:
        yield
    finally:
        MarginEngine.block_min, MarginEngine.block_max = old  # type: ignore[misc]
        OptionSteps.block_min, OptionSteps.block_max = old_opt


def two_ways(run: Any) -> backtester.BacktestResult:
    """Run ``run()`` with adaptive blocks and with blocks of one step; assert the results are
    identical and return the first."""
    blocks = run()
    with blocks_of_one():
        ones = run()
    same(blocks, ones)
    return blocks
