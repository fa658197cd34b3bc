"""Dataset kinds, their columns, and validation applied on every read and write.

Timestamps are a ``ts`` column of ``timestamp[ms, UTC]``: the bar *open* time for candles, the
nominal funding time for funding (the exchange stamp floored to the second, never to a candle
timeframe — DESIGN §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from backtester.errors import DataError
from backtester.timeutil import ms_to_iso, timeframe_ms

__all__ = [
    "CANDLE_KINDS",
    "SCHEMA_VERSION",
    "GapReport",
    "Kind",
    "find_gaps",
    "normalize_ts",
    "symbol_from_slug",
    "symbol_slug",
    "validate_frame",
]

SCHEMA_VERSION = 1


class Kind(StrEnum):
    """Dataset kinds stored per (exchange, symbol)."""

    OHLCV = "ohlcv"
    MARK = "mark"
    INDEX = "index"
    PREMIUM = "premium"
    FUNDING = "funding"
    OPTION_MARKS = "option_marks"
    VOL_INDEX = "vol_index"


CANDLE_KINDS = frozenset({Kind.OHLCV, Kind.MARK, Kind.INDEX, Kind.PREMIUM, Kind.VOL_INDEX})
#: Columns of each kind, besides ``ts``.
COLUMNS: dict[Kind, tuple[str, ...]] = {
    Kind.OHLCV: ("open", "high", "low", "close", "volume"),
    Kind.MARK: ("open", "high", "low", "close", "volume"),
    Kind.INDEX: ("open", "high", "low", "close", "volume"),
    Kind.PREMIUM: ("open", "high", "low", "close", "volume"),
    Kind.VOL_INDEX: ("open", "high", "low", "close"),
    Kind.FUNDING: ("rate",),
    Kind.OPTION_MARKS: ("mark_price", "mark_iv", "underlying_price"),
}
#: Kinds whose prices may be zero or negative (premium index, rates).
_SIGNED = frozenset({Kind.PREMIUM, Kind.FUNDING})


def symbol_slug(symbol: str) -> str:
    """Return the path-safe slug of a ccxt symbol.

    >>> symbol_slug("BTC/USD:BTC-261225-100000-C")
    'BTC-USD_BTC-261225-100000-C'
    """
    return symbol.replace("/", "-", 1).replace(":", "_", 1)


def symbol_from_slug(slug: str) -> str:
    """Invert :func:`symbol_slug`.

    >>> symbol_from_slug("BTC-USDT_USDT")
    'BTC/USDT:USDT'
    """
    head, _, settle = slug.partition("_")
    base, _, quote = head.partition("-")
    return f"{base}/{quote}:{settle}" if settle else f"{base}/{quote}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GapReport:
    """Missing bars of one series against its timeframe grid.

    ``count`` gaps, the ``longest_ms`` one, ``missing_bars`` in all and ``pct_missing`` (fraction
    of the expected bars between the first and last stamp), with up to 20 ``(start_ms, end_ms)``
    gaps listed (start = first missing bar open, end = next present bar open).
    """

    count: int
    missing_bars: int
    longest_ms: int
    pct_missing: float
    gaps: tuple[tuple[int, int], ...]

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict."""
        return {"count": self.count, "missing_bars": self.missing_bars,
                "longest_ms": self.longest_ms, "pct_missing": self.pct_missing,
                "gaps": [[ms_to_iso(a), ms_to_iso(b)] for a, b in self.gaps]}


def find_gaps(ts_ms: np.ndarray, tf_ms: int) -> GapReport:
    """Report the gaps of sorted bar-open stamps against a regular ``tf_ms`` grid."""
    if len(ts_ms) < 2:
        return GapReport(count=0, missing_bars=0, longest_ms=0, pct_missing=0.0, gaps=())
    steps = np.diff(ts_ms)
    idx = np.nonzero(steps > tf_ms)[0]
    missing = int(((steps[idx] // tf_ms) - 1).sum()) if len(idx) else 0
    expected = int((ts_ms[-1] - ts_ms[0]) // tf_ms) + 1
    longest = int(steps[idx].max() - tf_ms) if len(idx) else 0
    gaps = tuple((int(ts_ms[i] + tf_ms), int(ts_ms[i + 1])) for i in idx[:20])
    return GapReport(count=len(idx), missing_bars=missing, longest_ms=longest,
                     pct_missing=missing / expected if expected else 0.0, gaps=gaps)


def normalize_ts(values: pd.Series | pd.Index, *, what: str, assume_utc: bool = False) -> pd.Series:
    """Return timestamps as ``datetime64[ms, UTC]``; ints are epoch milliseconds.

    Naive datetimes are rejected unless ``assume_utc`` (then read as UTC).
    """
    s = pd.Series(values)
    if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_float_dtype(s.dtype):
        if s.isna().any():
            msg = f"{what}: missing timestamps"
            raise DataError(msg)
        return pd.to_datetime(s.astype("int64"), unit="ms", utc=True).dt.as_unit("ms")
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        try:
            s = pd.to_datetime(s, utc=False, format="ISO8601")
        except (ValueError, TypeError) as exc:
            msg = f"{what}: timestamps are not dates ({exc})"
            raise DataError(msg) from exc
    if getattr(s.dt, "tz", None) is None:
        if not assume_utc:
            msg = (f"{what}: timestamps have no time zone; say they are UTC "
                   "(assume_utc=True / --assume-utc) or give tz-aware data")
            raise DataError(msg)
        s = s.dt.tz_localize("UTC")
    return s.dt.tz_convert("UTC").dt.as_unit("ms")


def validate_frame(df: pd.DataFrame, kind: Kind | str, *, symbol: str, timeframe: str | None,
                   assume_utc: bool = False) -> pd.DataFrame:
    """Validate and normalize one series; return a new frame with ``ts`` + the kind's columns.

    Rules: timestamps UTC (naive rejected unless ``assume_utc``); candles floored to the
    timeframe (exchange jitter), funding floored to the second; sorted; identical duplicate rows
    dropped, conflicting duplicates rejected naming symbol and time; prices finite and positive
    (premium and funding may be signed); ``high >= max(open, close)``, ``low <= min(open, close)``.
    A ``ts`` column or a DatetimeIndex is accepted.
    """
    kind = Kind(kind)
    what = f"{kind} {symbol}" + (f" {timeframe}" if timeframe else "")
    frame = df.reset_index() if "ts" not in df.columns else df
    if "ts" not in frame.columns:
        for alt in ("date", "timestamp", "time", "datetime", "index"):
            if alt in frame.columns:
                frame = frame.rename(columns={alt: "ts"})
                break
        else:
            msg = f"{what}: no 'ts' column or DatetimeIndex"
            raise DataError(msg)
    cols = COLUMNS[kind]
    missing = [c for c in cols if c not in frame.columns and not _optional(kind, c)]
    if missing:
        msg = f"{what}: missing column(s) {', '.join(missing)} (expected ts, {', '.join(cols)})"
        raise DataError(msg)
    out = pd.DataFrame({"ts": normalize_ts(frame["ts"], what=what, assume_utc=assume_utc)})
    for c in cols:
        out[c] = (pd.to_numeric(frame[c], errors="coerce").astype("float64").to_numpy()
                  if c in frame.columns else np.nan)
    ts_ms = out["ts"].astype("int64").to_numpy()
    if kind in CANDLE_KINDS:
        if timeframe is None:
            msg = f"{what}: candles need a timeframe"
            raise DataError(msg)
        tf = timeframe_ms(timeframe)
        ts_ms = ts_ms - ts_ms % tf
    else:
        ts_ms = ts_ms - ts_ms % 1000
    out["ts"] = pd.to_datetime(ts_ms, unit="ms", utc=True).as_unit("ms")
    out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    dup = out["ts"].duplicated(keep=False)
    if dup.any():
        dups = out[dup]
        conflicting = dups.groupby("ts").nunique(dropna=False).gt(1).any(axis=1)
        if conflicting.any():
            first = conflicting[conflicting].index[0]
            msg = f"{what}: conflicting duplicate rows at {first.isoformat()}"
            raise DataError(msg)
        out = out.drop_duplicates(subset="ts", keep="first").reset_index(drop=True)
    _check_values(out, kind, what)
    return out


def _optional(kind: Kind, col: str) -> bool:
    return col == "volume" or (kind is Kind.OPTION_MARKS and col != "mark_price")


def _check_values(out: pd.DataFrame, kind: Kind, what: str) -> None:
    price_cols = [c for c in COLUMNS[kind] if c not in ("volume",)]
    if kind is Kind.OPTION_MARKS:
        marks = out[["mark_price", "mark_iv"]].to_numpy()
        bad = ~np.isfinite(marks).any(axis=1)
        _raise_at(out, bad, what, "neither mark_price nor mark_iv given")
        vals = out["mark_price"].to_numpy()
        _raise_at(out, np.isfinite(vals) & (vals < 0), what, "negative mark_price")
        return
    for c in price_cols:
        v = out[c].to_numpy()
        _raise_at(out, ~np.isfinite(v), what, f"{c} is NaN or infinite")
        if kind not in _SIGNED:
            _raise_at(out, v <= 0, what, f"{c} is zero or negative")
    if kind in CANDLE_KINDS and kind is not Kind.PREMIUM:
        o, h, lo, c = (out[k].to_numpy() for k in ("open", "high", "low", "close"))
        _raise_at(out, h < np.maximum(o, c), what, "high below max(open, close)")
        _raise_at(out, lo > np.minimum(o, c), what, "low above min(open, close)")
    if "volume" in out.columns and kind is Kind.OHLCV:
        vol = out["volume"].to_numpy()
        _raise_at(out, vol < 0, what, "negative volume")


def _raise_at(out: pd.DataFrame, mask: np.ndarray, what: str, rule: str) -> None:
    if mask.any():
        i = int(np.argmax(mask))
        msg = f"{what}: {rule} at {out['ts'].iloc[i].isoformat()} (row {i})"
        raise DataError(msg)
