"""backtester: bar-by-bar backtesting of cross-margin crypto derivatives strategies."""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "BacktesterError",
    "BacktesterWarning",
    "ConfigError",
    "DataError",
    "Instrument",
    "InstrumentKind",
    "InvariantError",
    "OptionType",
    "PhaseError",
    "StrategyError",
    "__version__",
    "margin",
]
