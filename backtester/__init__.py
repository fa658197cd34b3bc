"""backtester: bar-by-bar backtesting of cross-margin crypto derivatives strategies."""

from __future__ import annotations

from backtester._version import __version__
from backtester.api import load_strategy, run
from backtester.errors import (
    BacktesterError,
    BacktesterWarning,
    ConfigError,
    DataError,
    InvariantError,
    PhaseError,
    StrategyError,
)
from backtester.instruments import Instrument, InstrumentKind, OptionType
from backtester.margin.calculator import evaluate as margin
from backtester.results import BacktestResult
from backtester.risk.stress import stress_test
from backtester.strategy import Indicator, Strategy

__all__ = [
    "BacktestResult",
    "BacktesterError",
    "BacktesterWarning",
    "ConfigError",
    "DataError",
    "Indicator",
    "Instrument",
    "InstrumentKind",
    "InvariantError",
    "OptionType",
    "PhaseError",
    "Strategy",
    "StrategyError",
    "__version__",
    "load_strategy",
    "margin",
    "run",
    "stress_test",
]
