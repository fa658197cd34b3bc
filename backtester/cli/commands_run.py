"""``backtester run`` and ``backtester demo``."""

from __future__ import annotations
