"""Deprecated: moved to :mod:`backtester.runs.frames`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.frames``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.runs.frames import (
    compact_columns,
    fills_frame,
    journal_frame,
    orders_frame,
    position_greeks,
    positions_frame,
    shared_account_columns,
    symbol_ids,
    traded_notional,
    trim_heap,
    utc,
)

__all__ = [
    "compact_columns",
    "fills_frame",
    "journal_frame",
    "orders_frame",
    "position_greeks",
    "positions_frame",
    "shared_account_columns",
    "symbol_ids",
    "traded_notional",
    "trim_heap",
    "utc",
]

warn_moved("backtester.result_frames", "backtester.runs.frames")
