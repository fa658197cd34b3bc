"""backtester: bar-by-bar backtesting of cross-margin crypto derivatives strategies."""

from __future__ import annotations

from backtester._version import __version__
from backtester.api import load_strategy, run
from backtester.context import AccountView, Bar, Context, OrderTicket, PositionView
from backtester.errors import (
    BacktesterError,
    BacktesterWarning,
    ConfigError,
    DataError,
    InvariantError,
    PhaseError,
    StrategyError,
)
from backtester.events import (
    EventScope,
    FundingPaid,
    InstrumentExpired,
    LiquidationAction,
    LiquidationStep,
    MarginCalled,
    PositionLiquidated,
)
from backtester.indicator import Indicator
from backtester.instruments import Instrument, InstrumentKind, OptionType
from backtester.margin.calculator import evaluate as margin
from backtester.margin.status import MarginStatus
from backtester.orders import (
    CancelReason,
    Fill,
    OpenOrder,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from backtester.risk.stress import stress_test
from backtester.runs.results import BacktestResult
from backtester.strategy import Strategy

__all__ = [
    "AccountView",
    "BacktestResult",
    "BacktesterError",
    "BacktesterWarning",
    "Bar",
    "CancelReason",
    "ConfigError",
    "Context",
    "DataError",
    "EventScope",
    "Fill",
    "FundingPaid",
    "Indicator",
    "Instrument",
    "InstrumentExpired",
    "InstrumentKind",
    "InvariantError",
    "LiquidationAction",
    "LiquidationStep",
    "MarginCalled",
    "MarginStatus",
    "OpenOrder",
    "OptionType",
    "OrderStatus",
    "OrderTicket",
    "OrderType",
    "PhaseError",
    "PositionLiquidated",
    "PositionView",
    "RejectReason",
    "Side",
    "Strategy",
    "StrategyError",
    "TimeInForce",
    "__version__",
    "load_strategy",
    "margin",
    "run",
    "stress_test",
]
