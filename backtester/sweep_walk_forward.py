"""Deprecated: moved to :mod:`backtester.sweep.walk_forward` (removed in the next release).

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.sweep.walk_forward``.
"""

from __future__ import annotations

from backtester.errors import warn_moved
from backtester.sweep.walk_forward import (
    WalkForwardSpec,
    Window,
    data_range,
    make_windows,
    parse_walk_forward,
    run_walk_forward,
    run_walk_forward_sweep,
)

__all__ = [
    "WalkForwardSpec",
    "Window",
    "data_range",
    "make_windows",
    "parse_walk_forward",
    "run_walk_forward",
    "run_walk_forward_sweep",
]

warn_moved("backtester.sweep_walk_forward", "backtester.sweep.walk_forward")
