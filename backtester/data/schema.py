"""Dataset kinds, their columns, and validation applied on every read and write.

Timestamps are a ``ts`` column of ``timestamp[ms, UTC]``: the bar *open* time for candles, the
nominal funding time for funding (the exchange stamp floored to the second, never to a candle
timeframe — DESIGN §2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from backtester.errors import ConfigError, DataError
from backtester.instruments import is_option_symbol
from backtester.timeutil import ms_to_iso, timeframe_ms

__all__ = [
    "CANDLE_KINDS",
    "SCHEMA_VERSION",
    "GapReport",
    "Kind",
    "ValidSeries",
    "check_symbol",
    "find_gaps",
    "normalize_ts",
    "symbol_from_slug",
    "symbol_slug",
    "validate_arrays",
    "validate_frame",
    "with_ts_column",
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
#: Kinds whose prices may be zero when the series is an option's (a worthless option trades
#: and marks at 0; its index is the underlying's, never 0).
_ZERO_FOR_OPTIONS = frozenset({Kind.OHLCV, Kind.MARK})


#: ccxt's unified symbol grammar ``BASE/QUOTE[:SETTLE[-EXPIRY[-STRIKE-C|P]]]`` (letters and digits
#: in the codes, as ccxt builds them), or a bare currency code (the volatility index of a coin).
_STORED_SYMBOL = re.compile(
    r"^[A-Za-z0-9]+(?:/[A-Za-z0-9]+(?::[A-Za-z0-9]+(?:-[A-Za-z0-9.]+)*)?)?$")


def check_symbol(symbol: object, *, field: str = "symbol") -> str:
    """Return ``symbol`` when it follows the ccxt symbol grammar, else raise a ConfigError.

    Store paths are built from symbols, so a symbol that is not ``BASE/QUOTE[:SETTLE[-...]]``
    (or a bare currency code such as ``BTC``) is refused before it becomes a file name.

    >>> check_symbol("BTC/USD:BTC-261225-100000-C")
    'BTC/USD:BTC-261225-100000-C'
    """
    if not isinstance(symbol, str) or _STORED_SYMBOL.match(symbol) is None:
        msg = (f"{field}: {symbol!r} is not a ccxt symbol like 'BTC/USDT:USDT', "
               "'BTC/USD:BTC-261225-100000-C' or a currency code like 'BTC'")
        raise ConfigError(msg)
    return symbol


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


#: names of a time column, in order of preference (``ts`` is the store's own)
TIME_COLUMNS = ("ts", "date", "timestamp", "time", "datetime")
#: the columns of a ccxt ``fetch_ohlcv`` row: ``[timestamp_ms, open, high, low, close, volume]``
_CCXT_ROW = ("ts", "open", "high", "low", "close", "volume")
#: integer stamps are epoch milliseconds: between 1973 and the year 5138
_MS_RANGE = (10**11, 10**14)


def with_ts_column(df: pd.DataFrame, *, what: str) -> pd.DataFrame:
    """Return ``df`` with its times in a ``ts`` column, as users hand frames over.

    Accepted, in this order: a ``ts`` column; a DatetimeIndex of any name (pandas' default
    ``None``, ``datetime``, ``date`` ...); a ``date``/``timestamp``/``time``/``datetime``
    column (any case: freqtrade's ``date``, ccxt's ``timestamp``); the positional columns
    ``0..5`` of ``pd.DataFrame(exchange.fetch_ohlcv(...))``. Other column names are matched
    without regard to case (``Open`` is ``open``). The values are checked later
    (:func:`normalize_ts`: tz-aware, or integer epoch milliseconds).

    Raises
    ------
    DataError
        No time column or index, naming ``what``.
    """
    cols = list(df.columns)
    if "ts" in df.columns:
        out = df
    elif isinstance(df.index, pd.DatetimeIndex):
        out = df.reset_index(names="ts")
    elif cols and all(isinstance(c, int) for c in cols) and cols == list(range(len(cols))) \
            and len(cols) in (5, 6):
        out = df.set_axis(list(_CCXT_ROW[:len(cols)]), axis=1)
    else:
        lower = {str(c).strip().lower(): c for c in cols}
        name = next((lower[n] for n in TIME_COLUMNS if n in lower), None)
        if name is None and df.index.name is not None \
                and str(df.index.name).lower() in TIME_COLUMNS:
            return with_ts_column(df.reset_index(), what=what)
        if name is None:
            msg = (f"{what}: no time column: expected a 'ts', 'date' or 'timestamp' column "
                   "or a DatetimeIndex (tz-aware UTC bar open times, or epoch milliseconds)")
            raise DataError(msg)
        out = df.rename(columns={name: "ts"})
    renames = {c: str(c).strip().lower() for c in out.columns
               if isinstance(c, str) and c != str(c).strip().lower()
               and str(c).strip().lower() not in out.columns}
    return out.rename(columns=renames) if renames else out


def normalize_ts(values: pd.Series | pd.Index, *, what: str, assume_utc: bool = False,
                 naive_hint: str | None = None, is_user_data: bool = False) -> pd.Series:
    """Return timestamps as ``datetime64[ms, UTC]``; ints are epoch milliseconds.

    Naive datetimes are rejected unless ``assume_utc`` (then read as UTC); ``naive_hint``
    replaces the advice of that error (the store's importers suggest ``--assume-utc``). For
    ``is_user_data`` (frames handed to the API), integers that are not milliseconds between
    1973 and 5138 (seconds, or micro/nanoseconds) are rejected.
    """
    s = pd.Series(values)
    if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_float_dtype(s.dtype):
        if s.isna().any():
            msg = f"{what}: missing timestamps"
            raise DataError(msg)
        ms = s.astype("int64")
        if is_user_data and len(ms) and not (
                _MS_RANGE[0] <= int(ms.abs().max()) < _MS_RANGE[1]):
            big = int(ms.abs().max())
            unit = "seconds" if big < _MS_RANGE[0] else "micro- or nanoseconds"
            msg = (f"{what}: integer timestamps are read as epoch milliseconds, but {big} "
                   f"looks like {unit}; give milliseconds")
            raise DataError(msg)
        return pd.to_datetime(ms, unit="ms", utc=True).dt.as_unit("ms")
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        try:
            s = pd.to_datetime(s, utc=False, format="ISO8601")
        except (ValueError, TypeError) as exc:
            msg = f"{what}: timestamps are not dates ({exc})"
            raise DataError(msg) from exc
    if getattr(s.dt, "tz", None) is None:
        if not assume_utc:
            hint = naive_hint or "say they are UTC (assume_utc=True / --assume-utc)"
            msg = f"{what}: timestamps have no time zone; {hint} or give tz-aware data"
            raise DataError(msg)
        s = s.dt.tz_localize("UTC")
    return s.dt.tz_convert("UTC").dt.as_unit("ms")


def validate_frame(df: pd.DataFrame, kind: Kind | str, *, symbol: str, timeframe: str | None,
                   assume_utc: bool = False, is_option: bool | None = None) -> pd.DataFrame:
    """Validate and normalize one series; return a new frame with ``ts`` + the kind's columns.

    Rules: timestamps UTC (naive rejected unless ``assume_utc``); candles floored to the
    timeframe (exchange jitter), funding floored to the second; sorted; identical duplicate rows
    dropped, conflicting duplicates rejected naming symbol and time; prices finite and positive
    (premium and funding may be signed; an option's trade and mark candles may be 0, a
    worthless option; ``is_option`` defaults to the symbol grammar ``…-YYMMDD-K-C|P``);
    ``high >= max(open, close)``, ``low <= min(open, close)``. The times are found by
    :func:`with_ts_column` (a ``ts``/``date``/``timestamp`` column, a DatetimeIndex, or ccxt
    rows).
    """
    series = validate_arrays(df, kind, symbol=symbol, timeframe=timeframe, assume_utc=assume_utc,
                             is_option=is_option)
    return pd.DataFrame({"ts": _stamps(series.ts_ms), **series.columns})


@dataclass(frozen=True, slots=True)
class ValidSeries:
    """One validated series as arrays: ``ts_ms`` (int64 epoch ms, sorted, unique) and the kind's
    columns (float64, read-only; views of the input where nothing had to change). ``owners``
    are the input's pandas columns those views share memory with: keeping them alive makes
    pandas copy-on-write protect the views from later writes to the input frame."""

    ts_ms: NDArray[np.int64]
    columns: dict[str, NDArray[np.float64]]
    owners: tuple[pd.Series, ...] = ()


def validate_arrays(df: pd.DataFrame, kind: Kind | str, *, symbol: str, timeframe: str | None,
                    assume_utc: bool = False, is_option: bool | None = None,
                    naive_hint: str | None = None, is_user_data: bool = False) -> ValidSeries:
    """Validate and normalize one series like :func:`validate_frame`, returning arrays.

    The same rules and errors as :func:`validate_frame` (which builds its frame from this), but
    no frame is built: sorted, unique input costs no copy of the value columns. The frame's
    times are found by :func:`with_ts_column`; ``naive_hint`` and ``is_user_data`` go to
    :func:`normalize_ts`.
    """
    kind = Kind(kind)
    what = f"{kind} {symbol}" + (f" {timeframe}" if timeframe else "")
    frame = with_ts_column(df, what=what)
    if kind is Kind.FUNDING and "rate" not in frame.columns:
        # ccxt's fetch_funding_rate_history rows name it fundingRate
        alt = next((c for c in ("fundingrate", "funding_rate", "fundingRate")
                    if c in frame.columns), None)
        if alt is not None:
            frame = frame.rename(columns={alt: "rate"})
    cols = COLUMNS[kind]
    missing = [c for c in cols if c not in frame.columns and not _optional(kind, c)]
    if missing:
        msg = f"{what}: missing column(s) {', '.join(missing)} (expected ts, {', '.join(cols)})"
        raise DataError(msg)
    ts_ms = normalize_ts(frame["ts"], what=what, assume_utc=assume_utc,
                         naive_hint=naive_hint, is_user_data=is_user_data).astype(
        "int64").to_numpy()
    n = len(ts_ms)
    values: dict[str, NDArray[np.float64]] = {}
    owners = []
    for c in cols:
        if c not in frame.columns:
            values[c] = np.full(n, np.nan)
            continue
        col = frame[c]
        values[c] = _float_values(col)
        if np.may_share_memory(values[c], col.to_numpy()):
            owners.append(col)
    if kind in CANDLE_KINDS:
        if timeframe is None:
            msg = f"{what}: candles need a timeframe"
            raise DataError(msg)
        step = timeframe_ms(timeframe)
    else:
        step = 1000
    rem = ts_ms % step
    if rem.any():
        ts_ms = ts_ms - rem
    d = np.diff(ts_ms)
    if (d < 0).any():
        order = np.argsort(ts_ms, kind="stable")
        ts_ms = ts_ms[order]
        values = {c: v[order] for c, v in values.items()}
        d = np.diff(ts_ms)
    same = d == 0
    if same.any():
        # duplicates are adjacent once sorted: rows equal to their predecessor (NaN equal to
        # NaN) are identical copies; any other difference is a conflict
        differs = np.zeros(len(same), dtype=bool)
        for v in values.values():
            a, b = v[1:], v[:-1]
            differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
        bad = same & differs
        if bad.any():
            first = ts_ms[int(np.argmax(bad)) + 1]
            msg = f"{what}: conflicting duplicate rows at {_iso(first)}"
            raise DataError(msg)
        keep = np.concatenate(([True], ~same))
        ts_ms = ts_ms[keep]
        values = {c: v[keep] for c, v in values.items()}
    for v in values.values():
        v.flags.writeable = False
    if is_option is None:
        is_option = is_option_symbol(symbol)
    _check_values(ts_ms, values, kind, what, zero_ok=is_option and kind in _ZERO_FOR_OPTIONS)
    return ValidSeries(ts_ms=ts_ms, columns=values, owners=tuple(owners))


def _float_values(col: pd.Series) -> NDArray[np.float64]:
    # float64 columns are used as they are; others are coerced, non-numbers becoming NaN. A
    # view, so that marking it read-only never touches the caller's array
    if col.dtype == np.float64:
        return col.to_numpy().view()
    return pd.to_numeric(col, errors="coerce").astype("float64").to_numpy().view()


def _stamps(ts_ms: NDArray[np.int64]) -> pd.DatetimeIndex:
    return pd.to_datetime(ts_ms, unit="ms", utc=True).as_unit("ms")


def _iso(ts_ms: np.int64 | int) -> str:
    # the same text as the frame's timestamp element: Timestamp.isoformat
    return str(_stamps(np.asarray([ts_ms], dtype="int64"))[0].isoformat())


def _optional(kind: Kind, col: str) -> bool:
    return col == "volume" or (kind is Kind.OPTION_MARKS and col != "mark_price")


def _check_values(ts_ms: NDArray[np.int64], values: dict[str, NDArray[np.float64]], kind: Kind,
                  what: str, *, zero_ok: bool = False) -> None:
    price_cols = [c for c in COLUMNS[kind] if c not in ("volume",)]
    if kind is Kind.OPTION_MARKS:
        price, iv = values["mark_price"], values["mark_iv"]
        bad = ~(np.isfinite(price) | np.isfinite(iv))
        _raise_at(ts_ms, bad, what, "neither mark_price nor mark_iv given")
        _raise_at(ts_ms, np.isfinite(price) & (price < 0), what, "negative mark_price")
        return
    for c in price_cols:
        v = values[c]
        _raise_at(ts_ms, ~np.isfinite(v), what, f"{c} is NaN or infinite")
        if zero_ok:
            _raise_at(ts_ms, v < 0, what, f"{c} is negative")
        elif kind not in _SIGNED:
            _raise_at(ts_ms, v <= 0, what, f"{c} is zero or negative")
    if kind in CANDLE_KINDS and kind is not Kind.PREMIUM:
        o, h, lo, cl = (values[k] for k in ("open", "high", "low", "close"))
        _raise_at(ts_ms, h < np.maximum(o, cl), what, "high below max(open, close)")
        _raise_at(ts_ms, lo > np.minimum(o, cl), what, "low above min(open, close)")
    if "volume" in values and kind is Kind.OHLCV:
        _raise_at(ts_ms, values["volume"] < 0, what, "negative volume")


def _raise_at(ts_ms: NDArray[np.int64], mask: NDArray[np.bool_], what: str, rule: str) -> None:
    if mask.any():
        i = int(np.argmax(mask))
        msg = f"{what}: {rule} at {_iso(ts_ms[i])} (row {i})"
        raise DataError(msg)
