"""Deprecated: moved to :mod:`backtester.sweep.report`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.sweep.report``. ``SweepPage`` and ``SweepPageSpec`` (the Protocols of what the
page read) are now the concrete :class:`~backtester.sweep.results.SweepResult` and
:class:`~backtester.sweep.grid.SweepSpec`: the page depends on the sweep's result type, and the
sweep runner, which writes the page, sits above both.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.sweep.grid import SweepSpec
from backtester.sweep.report import (
    heatmap_params,
    write_sweep_page,
)
from backtester.sweep.results import SweepResult

__all__ = [
    "SweepPage",
    "SweepPageSpec",
    "heatmap_params",
    "write_sweep_page",
]

SweepPage = SweepResult
SweepPageSpec = SweepSpec

warn_moved("backtester.sweep_report", "backtester.sweep.report")
