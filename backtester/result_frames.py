"""Deprecated: moved to :mod:`backtester.runs.frames`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.frames``.
"""

from __future__ import annotations

import warnings

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

msg = ("backtester.result_frames is deprecated: import from backtester.runs.frames "
       "(the old path is removed in the next release)")
warnings.warn(msg, DeprecationWarning, stacklevel=2)
del msg
