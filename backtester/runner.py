"""Deprecated: moved to :mod:`backtester.runs.runner`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.runs.runner``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.runs.runner import (
    PreparedRun,
    data_fingerprint,
    dataset_frames,
    load_strategy,
    prepare,
    rejections_by_reason,
    run_hash,
    run_prepared,
    strategy_source_hash,
)

__all__ = [
    "PreparedRun",
    "data_fingerprint",
    "dataset_frames",
    "load_strategy",
    "prepare",
    "rejections_by_reason",
    "run_hash",
    "run_prepared",
    "strategy_source_hash",
]

warn_moved("backtester.runner", "backtester.runs.runner")
