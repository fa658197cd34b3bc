"""Import candle, funding and option-mark files into the store (users migrating from elsewhere).

Formats, by file name:

* ``.csv`` — a header row with a time column (``ts``, ``date``, ``timestamp``, ``time`` or
  ``datetime``) plus the kind's columns (``open high low close [volume]``; funding ``rate``;
  option marks ``mark_price [mark_iv underlying_price]``). Integer times are epoch milliseconds.
* ``.feather`` — freqtrade's Arrow files (``date, open, high, low, close, volume``); freqtrade's
  ``*-funding_rate.feather`` keeps the rate in ``open``, which becomes ``rate``.
* ``.json`` / ``.json.gz`` — freqtrade's JSON candles ``[[ts_ms, open, high, low, close, volume],
  ...]`` (or a list of objects with the column names).
* ``.parquet`` — any table with the columns above.

Times without a time zone are rejected unless ``assume_utc`` is given (never localised silently).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from backtester.data.schema import (
    CANDLE_KINDS,
    TIME_COLUMNS,
    Kind,
    normalize_ts,
    validate_frame,
)
from backtester.data.store import Store
from backtester.errors import ConfigError, DataError
from backtester.timeutil import timeframe_ms

__all__ = ["import_file", "infer_timeframe", "read_data_file"]

_TF_IN_NAME = re.compile(r"-(\d+[smhdwM])(?:-|\.)")
_FREQTRADE_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".json.gz" if name.endswith(".json.gz") else path.suffix.lower()


def read_data_file(path: Path | str, *, kind: Kind | str) -> pd.DataFrame:
    """Read a data file into a raw frame with a ``ts`` column (not yet validated).

    Raises
    ------
    DataError
        Unknown format, unreadable file, or no time column.
    """
    src = Path(path)
    kind = Kind(kind)
    if not src.is_file():
        msg = f"{src}: file not found"
        raise DataError(msg)
    suffix = _suffix(src)
    try:
        if suffix == ".csv":
            frame = pd.read_csv(src)
        elif suffix == ".feather":
            frame = pd.read_feather(src)
        elif suffix == ".parquet":
            frame = pd.read_parquet(src)
        elif suffix in (".json", ".json.gz"):
            opener = gzip.open if suffix == ".json.gz" else open
            with opener(src, "rt", encoding="utf-8") as fh:
                payload = json.load(fh)
            frame = _json_frame(payload, src)
        else:
            msg = f"{src}: unknown format {suffix!r}; use .csv, .feather, .parquet, .json(.gz)"
            raise DataError(msg)
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        msg = f"{src}: cannot read ({type(exc).__name__}: {exc})"
        raise DataError(msg) from exc
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    for col in TIME_COLUMNS:
        if col in frame.columns:
            frame = frame.rename(columns={col: "ts"})
            break
    else:
        msg = f"{src}: no time column (expected one of {', '.join(TIME_COLUMNS)})"
        raise DataError(msg)
    if kind is Kind.FUNDING and "rate" not in frame.columns:
        for alt in ("funding_rate", "fundingrate", "open"):  # freqtrade: the rate is in 'open'
            if alt in frame.columns:
                frame = frame.rename(columns={alt: "rate"})
                break
    return frame


def _json_frame(payload: object, src: Path) -> pd.DataFrame:
    if isinstance(payload, list) and payload and isinstance(payload[0], list):
        width = len(payload[0])
        return pd.DataFrame(payload, columns=_FREQTRADE_COLUMNS[:width]
                            if width <= 6 else [*_FREQTRADE_COLUMNS, *range(6, width)])
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        return pd.DataFrame(payload)
    msg = f"{src}: expected a JSON list of rows [[ts_ms, open, high, low, close, volume], ...]"
    raise DataError(msg)


def infer_timeframe(path: Path | str, frame: pd.DataFrame | None = None) -> str:
    """Return the timeframe in a freqtrade-style name (``XRP_USDT_USDT-5m-futures.feather``),
    else the most common spacing of the stamps of ``frame`` (normalised, ``ts`` column)."""
    m = _TF_IN_NAME.search(Path(path).name)
    if m is not None:
        timeframe_ms(m.group(1))
        return m.group(1)
    if frame is not None and len(frame) >= 2:
        # sorted first: the spacing of rows in file order says nothing when they are shuffled
        ts = np.unique(frame["ts"].dt.as_unit("ms").astype("int64").to_numpy())
        steps = np.diff(ts)
        steps = steps[steps > 0]
        if len(steps):
            values, counts = np.unique(steps, return_counts=True)
            step = int(values[np.argmax(counts)])
            for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
                if step % ms == 0:
                    return f"{step // ms}{unit}"
    msg = f"{Path(path).name}: cannot tell the timeframe; pass --timeframe"
    raise ConfigError(msg)


def import_file(path: Path | str, *, store: Store, exchange: str, symbol: str,
                kind: Kind | str, timeframe: str | None = None,
                assume_utc: bool = False) -> Path:
    """Validate a file and merge it into the store; return the stored file's path.

    Parameters
    ----------
    timeframe
        Candle timeframe; inferred from a freqtrade file name or the stamps when omitted.
        Ignored for funding (event times, floored to the second).
    assume_utc
        Read time-zone-less times as UTC (otherwise they are rejected).
    """
    kind = Kind(kind)
    src = Path(path)
    raw = read_data_file(src, kind=kind)
    if raw.empty:
        msg = f"{src.name}: no rows (only a header) — nothing to import"
        raise DataError(msg)
    tf: str | None = None
    try:
        if kind in CANDLE_KINDS or kind is Kind.OPTION_MARKS:
            if timeframe is None:
                stamps = normalize_ts(raw["ts"], what="timestamps", assume_utc=assume_utc)
                timeframe = infer_timeframe(src, pd.DataFrame({"ts": stamps}))
            tf = timeframe
        clean = validate_frame(raw, kind, symbol=symbol, timeframe=tf, assume_utc=assume_utc)
    except DataError as exc:
        msg = f"{src.name}: {exc}"
        raise DataError(msg) from exc
    if clean.empty:
        msg = f"{src.name}: no rows to import"
        raise DataError(msg)
    meta = {"source": f"import {src.name}", "imported_from": str(src)}
    return store.append(exchange, kind, symbol, tf, clean, metadata=meta)

