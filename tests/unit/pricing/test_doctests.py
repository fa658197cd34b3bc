"""Run the doctests of the pure pricing, option-margin, mark-alignment and hint functions."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from backtester import hints
from backtester.data import marks
from backtester.margin import options, portfolio
from backtester.pricing import black76, iv, surface


@pytest.mark.parametrize("module", [black76, iv, surface, options, portfolio, marks, hints])
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
