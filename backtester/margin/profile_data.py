"""Deprecated: moved to :mod:`backtester.margin.profile`; this path is removed in the next release.

Importing this module warns (``DeprecationWarning``) and gives the same objects as
``backtester.margin.profile``.
"""

from __future__ import annotations

import warnings

from backtester.margin.profile import (
    ProfileData,
    SimpleTiers,
)

__all__ = [
    "ProfileData",
    "SimpleTiers",
]

msg = ("backtester.margin.profile_data is deprecated: import from backtester.margin.profile "
       "(the old path is removed in the next release)")
warnings.warn(msg, DeprecationWarning, stacklevel=2)
del msg
