"""Time helpers: inside the engine time is int milliseconds since the epoch, UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pandas as pd

__all__ = ["MS_PER_DAY", "MS_PER_HOUR", "ms_to_iso", "parse_utc_ms", "timeframe_ms", "to_ms_index"]

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
_TF = re.compile(r"^(\d+)([smhdwM])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": MS_PER_HOUR, "d": MS_PER_DAY, "w": 7 * MS_PER_DAY,
            "M": 30 * MS_PER_DAY}


def timeframe_ms(timeframe: str) -> int:
    """Return the length of a ccxt timeframe string in milliseconds.

    >>> timeframe_ms("1h")
    3600000
    >>> timeframe_ms("5m")
    300000
    """
    m = _TF.match(timeframe)
    if m is None:
        msg = f"timeframe {timeframe!r} is not a ccxt timeframe like '1m', '5m', '1h', '1d'"
        raise ValueError(msg)
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def ms_to_iso(ts_ms: int) -> str:
    """Format int milliseconds UTC as ISO 8601 with a ``Z``.

    >>> ms_to_iso(0)
    '1970-01-01T00:00:00Z'
    """
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if ts_ms % 1000:
        text += f".{ts_ms % 1000:03d}"
    return text + "Z"


def parse_utc_ms(value: str | int | float | datetime | pd.Timestamp) -> int:
    """Parse a UTC date (``2024-01-01``, ``2024-01-01T08:00``, ISO with offset, or int ms).

    Naive strings are read as UTC (command-line dates are UTC by definition).

    >>> parse_utc_ms("1970-01-02")
    86400000
    """
    if isinstance(value, bool):
        msg = f"not a date: {value!r}"
        raise ValueError(msg)
    if isinstance(value, int | float):
        return int(value)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        msg = f"not a UTC date: {value!r} (expected e.g. 2024-01-01 or 2024-01-01T08:00)"
        raise ValueError(msg) from exc
    if ts is pd.NaT:
        msg = f"not a UTC date: {value!r}"
        raise ValueError(msg)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ms").asm8.view("int64"))


def to_ms_index(index: pd.Index) -> pd.Index:
    """Return int64 milliseconds for a tz-aware DatetimeIndex (pandas 3 safe: uses ``as_unit``)."""
    if not isinstance(index, pd.DatetimeIndex):
        msg = "expected a DatetimeIndex"
        raise TypeError(msg)
    return pd.Index(index.as_unit("ms").asi8)
