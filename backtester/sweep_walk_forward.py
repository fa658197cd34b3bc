"""Deprecated: moved to :mod:`backtester.sweep.walk_forward` (removed in the next release).

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.sweep.walk_forward``.
"""

from __future__ import annotations

import warnings

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

msg = ("backtester.sweep_walk_forward is deprecated: import from backtester.sweep.walk_forward "
       "(the old path is removed in the next release)")
warnings.warn(msg, DeprecationWarning, stacklevel=2)
del msg
