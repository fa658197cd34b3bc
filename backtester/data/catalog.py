"""Load a stored dataset by name for the engine: frames per kind and symbol, instruments, gaps.

A dataset is one exchange folder of the store (``datasets/binanceusdm``); its instruments come
from the ``markets.json`` snapshot taken by the fetch (point in time, expired instruments kept).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from backtester.data.schema import CANDLE_KINDS, Kind, find_gaps
from backtester.data.store import Store, StoredSeries
from backtester.errors import ConfigError, DataError, closest, shortlist
from backtester.hints import option
from backtester.instruments import (
    Instrument,
    InstrumentKind,
    instrument_from_ccxt,
    instrument_from_symbol,
)
from backtester.timeutil import ms_to_iso, timeframe_ms

__all__ = ["Dataset", "list_datasets", "load_dataset", "trim_window"]

logger = logging.getLogger(__name__)

Frames = Mapping[str, pd.DataFrame]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """A stored dataset, ready for the engine.

    Every frame has a ``ts`` column (``datetime64[ms, UTC]``): the bar *open* for candles, the
    event time (floored to the second) for funding, then the kind's columns — candles ``open
    high low close volume`` (quote per unit; ``vol_index`` has no volume, values in vol
    points), funding ``rate`` (a fraction per funding interval; positive: longs pay shorts),
    option marks ``mark_price mark_iv underlying_price``.

    Attributes
    ----------
    exchange
        The dataset folder name (the ccxt exchange id for fetched data).
    timeframe
        The candle timeframe loaded.
    instruments
        Symbol → :class:`~backtester.instruments.Instrument` for every symbol with data.
    ohlcv, mark, index, premium, funding, option_marks
        Symbol → frame; a symbol missing from ``mark`` has no mark candles (see ``warnings``).
    vol_index
        Currency (``BTC``) → volatility-index candles (Deribit DVOL).
    leverage_tiers
        The raw ``leverage_tiers.json`` payload (``{"tiers": {symbol: [...]}, ...}``) or None.
    gaps
        ``(kind, symbol)`` → gap report dict (count, missing_bars, longest_ms, pct_missing, gaps)
        for candle series, plus ``end_of_data`` when the fetch recorded one.
    warnings
        One line each: fallbacks the results must mention (e.g. trade candles used as marks).
    fetched_from
        The ccxt exchange id of a fetched markets snapshot (None for imported data).
    mark_timeframes
        Symbol → the timeframe of its mark candles (may differ from ``timeframe``: see
        :mod:`backtester.data.marks`).
    guessed_specs
        Symbols without an entry in ``markets.json``: their contract specs are guessed from
        the symbol grammar (:func:`~backtester.instruments.instrument_from_symbol`).
    """

    exchange: str
    timeframe: str | None
    instruments: Mapping[str, Instrument]
    ohlcv: Frames = field(default_factory=dict)
    mark: Frames = field(default_factory=dict)
    index: Frames = field(default_factory=dict)
    premium: Frames = field(default_factory=dict)
    funding: Frames = field(default_factory=dict)
    option_marks: Frames = field(default_factory=dict)
    vol_index: Frames = field(default_factory=dict)
    leverage_tiers: Mapping[str, Any] | None = None
    gaps: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    guessed_specs: tuple[str, ...] = ()
    mark_timeframes: Mapping[str, str] = field(default_factory=dict)
    fetched_from: str | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols with trade candles or option marks, sorted."""
        return tuple(sorted({*self.ohlcv, *self.option_marks}))

    def frames(self, kind: Kind | str) -> Frames:
        """Return the symbol → frame mapping of one kind."""
        return dict(getattr(self, Kind(kind).value))


def list_datasets(root: Path | str | None = None) -> list[str]:
    """Names of the datasets (exchange folders) under ``root``."""
    store = Store(root)
    if not store.root.is_dir():
        return []
    return sorted(p.name for p in store.root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _pick_timeframe(series: list[StoredSeries], timeframe: str | None, name: str) -> str | None:
    have = sorted({s.timeframe for s in series if s.kind is Kind.OHLCV and s.timeframe},
                  key=timeframe_ms)
    if timeframe is not None:
        timeframe_ms(timeframe)
        if have and timeframe not in have:
            msg = f"dataset {name} has no {timeframe} candles (stored: {', '.join(have)})"
            raise ConfigError(msg)
        return timeframe
    if len(have) > 1:
        choices = " or ".join(option("timeframe", tf) for tf in have)
        msg = f"dataset {name} holds several timeframes ({', '.join(have)}); choose one: {choices}"
        raise ConfigError(msg)
    return have[0] if have else None


def trim_window(frame: pd.DataFrame, start_ms: int | None, end_ms: int | None) -> pd.DataFrame:
    """Return the rows of ``frame`` whose ``ts`` is in ``[start_ms, end_ms)`` (ms since the
    epoch; None: unbounded), renumbered from 0: the window ``load_dataset`` cuts."""
    ts = frame["ts"].dt.as_unit("ms").astype("int64")
    keep = pd.Series(True, index=frame.index)
    if start_ms is not None:
        keep &= ts >= start_ms
    if end_ms is not None:
        keep &= ts < end_ms
    return frame.loc[keep].reset_index(drop=True)


def _fetched_from(store: Store, name: str) -> str | None:
    # the ccxt exchange id a fetched markets snapshot was taken from (imports do not say)
    if not store.has_json(name, "markets"):
        return None
    payload = store.read_json(name, "markets")
    if isinstance(payload, dict) and str(payload.get("source") or "").startswith("ccxt"):
        return str(payload.get("exchange") or "") or None
    return None


def _instruments(store: Store, name: str, symbols: Iterable[str],
                 guessed: list[str]) -> dict[str, Instrument]:
    markets: dict[str, Any] = {}
    precision_mode = 4
    if store.has_json(name, "markets"):
        payload = store.read_json(name, "markets")
        if isinstance(payload, dict) and isinstance(payload.get("markets"), dict):
            markets = payload["markets"]
            precision_mode = int(payload.get("precision_mode") or 4)
        elif isinstance(payload, dict):
            markets = payload
    out: dict[str, Instrument] = {}
    for symbol in sorted(symbols):
        market = markets.get(symbol)
        if market is not None:
            out[symbol] = instrument_from_ccxt(market, exchange=name, precision_mode=precision_mode)
        else:
            guessed.append(symbol)  # the run says so (runner), with the tick it rounds to
            out[symbol] = instrument_from_symbol(symbol)
    return out


def _mark_preference(mark_tf: str | None, tf: str) -> tuple[int, int]:
    # which stored mark timeframe a run on ``tf`` trade bars uses (lowest first): the same;
    # else the coarsest finer one that divides the trade bar (its bars make the trade bar's
    # exactly); else the finest coarser one (data/marks.py)
    m, t = timeframe_ms(mark_tf or tf), timeframe_ms(tf)
    if m == t:
        return (0, 0)
    if m < t and t % m == 0:
        return (1, -m)
    if m < t:
        return (3, -m)
    return (2, m)


def _select(series: list[StoredSeries], wanted: set[str] | None,
            tf: str | None) -> list[StoredSeries]:
    chosen: list[StoredSeries] = []
    vol: dict[str, StoredSeries] = {}
    marks: dict[str, StoredSeries] = {}
    for s in series:
        if s.kind is Kind.VOL_INDEX:
            # one series per currency: the run's timeframe if stored, else the finest
            best = vol.get(s.symbol)
            if best is None or (best.timeframe != tf and (
                    s.timeframe == tf or timeframe_ms(s.timeframe or "1d")
                    < timeframe_ms(best.timeframe or "1d"))):
                vol[s.symbol] = s
            continue
        if wanted is not None and s.symbol not in wanted:
            continue
        if s.kind is Kind.MARK and tf is not None:
            # mark candles of another timeframe are used too, under a no-look-ahead rule
            best = marks.get(s.symbol)
            if best is None or _mark_preference(s.timeframe, tf) < _mark_preference(
                    best.timeframe, tf):
                marks[s.symbol] = s
            continue
        if s.kind is not Kind.FUNDING and tf is not None and s.timeframe != tf:
            continue
        chosen.append(s)
    return chosen + sorted(marks.values(), key=lambda s: s.symbol) + sorted(
        vol.values(), key=lambda s: s.symbol)


def _check_window(series: list[StoredSeries], frames: Mapping[Kind, Mapping[str, pd.DataFrame]],
                  name: str, start_ms: int | None, end_ms: int | None) -> None:
    # a window that misses every stored candle: say which window and what the data covers
    if start_ms is None and end_ms is None:
        return
    kept = [f for k in (Kind.OHLCV, Kind.OPTION_MARKS) for f in frames[k].values()]
    if not kept or any(len(f) for f in kept):
        return
    firsts = [s.first_ms for s in series
              if s.kind in (Kind.OHLCV, Kind.OPTION_MARKS) and s.first_ms is not None]
    lasts = [s.last_ms for s in series
             if s.kind in (Kind.OHLCV, Kind.OPTION_MARKS) and s.last_ms is not None]
    covers = (f"{ms_to_iso(min(firsts))} .. {ms_to_iso(max(lasts))}" if firsts and lasts
              else "nothing")
    window = (f"{ms_to_iso(start_ms) if start_ms is not None else 'its start'} .. "
              f"{ms_to_iso(end_ms) if end_ms is not None else 'its end'}")
    msg = (f"dataset {name} has no candles from {window} (start inclusive, end exclusive); "
           f"its candles cover {covers}: choose --start/--end inside that range")
    raise DataError(msg)


def load_dataset(name: str, *, root: Path | str | None = None,
                 symbols: Iterable[str] | None = None, timeframe: str | None = None,
                 start_ms: int | None = None, end_ms: int | None = None) -> Dataset:
    """Load the stored dataset ``name`` (an exchange folder of the store).

    Parameters
    ----------
    root
        The datasets folder (default ``$BACKTESTER_DATASETS`` or ``./datasets``).
    symbols
        Only these symbols (default: all stored). Volatility indices are always loaded.
    timeframe
        Candle timeframe; required when the dataset holds several.
    start_ms, end_ms
        Keep rows with ``start_ms <= ts < end_ms`` (int ms UTC).

    Raises
    ------
    DataError
        Unknown dataset, unreadable or invalid files, or a requested symbol without data.
    ConfigError
        Ambiguous or unknown timeframe.
    """
    store = Store(root)
    if name == "sample":
        from backtester.data.sample import ensure_sample

        ensure_sample(store.root)  # the synthetic sample is generated on first use
    if not store.exchange_dir(name).is_dir():
        have = list_datasets(store.root)
        msg = (f"no dataset {name!r} in {store.root}"
               + (f" (have: {', '.join(have)})" if have else "")
               + f"; fetch it with `backtester fetch {name} SYMBOL ...`")
        raise DataError(msg)
    warnings = [q.message for q in store.scan(name)]
    series = store.list(name)
    wanted = set(symbols) if symbols is not None else None
    tf = _pick_timeframe(series, timeframe, name)
    frames: dict[Kind, dict[str, pd.DataFrame]] = {k: {} for k in Kind}
    gaps: dict[tuple[str, str], dict[str, Any]] = {}
    mark_tfs: dict[str, str] = {}
    for s in _select(series, wanted, tf):
        # vol index candles that opened before the start close inside the run: the first
        # bars' level (a candle is read only once closed), so only the end is trimmed
        frame = trim_window(store.read(name, s.kind, s.symbol, s.timeframe),
                      None if s.kind is Kind.VOL_INDEX else start_ms, end_ms)
        frames[s.kind][s.symbol] = frame
        if s.kind is Kind.MARK and s.timeframe:
            mark_tfs[s.symbol] = s.timeframe
        if s.kind in CANDLE_KINDS and s.timeframe:
            ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
            gap = find_gaps(ts, timeframe_ms(s.timeframe))
            report = gap.as_dict()
            end_info = store.metadata(name, s.kind, s.symbol, s.timeframe).get("end_of_data")
            if end_info:
                report["end_of_data"] = end_info
            gaps[(s.kind.value, s.symbol)] = report
            if gap.count:
                warnings.append(f"{s.kind} {s.symbol} {s.timeframe}: {gap.count} gap(s), "
                                f"{gap.missing_bars} bars missing ({100 * gap.pct_missing:.2f}%)")
    _check_window(series, frames, name, start_ms, end_ms)
    if wanted is not None:
        absent = sorted(wanted - set(frames[Kind.OHLCV]) - set(frames[Kind.OPTION_MARKS]))
        if absent:
            stored = {s.symbol for s in series if s.kind in (Kind.OHLCV, Kind.OPTION_MARKS)}
            msg = (f"dataset {name} has no candles for {shortlist(absent)}; for {absent[0]!r}: "
                   f"{closest(absent[0], stored)}")
            raise DataError(msg)
    with_data = {sym for k, d in frames.items() if k is not Kind.VOL_INDEX for sym in d}
    guessed: list[str] = []
    instruments = _instruments(store, name, with_data, guessed)
    for symbol in sorted(frames[Kind.OHLCV]):
        inst = instruments[symbol]
        if inst.kind is InstrumentKind.SPOT or inst.is_option:
            continue
        if symbol not in frames[Kind.MARK]:
            warnings.append(f"mark candles missing for {symbol}: margin uses trade candles")
        # funding history missing or partial: the run decides (an error once a position is
        # held at an uncovered stamp, unless funding is 'history_or_zero' or 'zero')
    tiers = store.read_json(name, "leverage_tiers") if store.has_json(name, "leverage_tiers") \
        else None
    for w in warnings:
        logger.warning(w)
    span = ""
    if frames[Kind.OHLCV]:
        firsts = [f["ts"].iloc[0] for f in frames[Kind.OHLCV].values() if len(f)]
        if firsts:
            span = f" from {ms_to_iso(int(min(firsts).value // 10**6))}"
    logger.info("loaded dataset %s%s: %d symbols", name, span, len(instruments))
    return Dataset(exchange=name, timeframe=tf, instruments=instruments,
                   ohlcv=frames[Kind.OHLCV], mark=frames[Kind.MARK], index=frames[Kind.INDEX],
                   premium=frames[Kind.PREMIUM], funding=frames[Kind.FUNDING],
                   option_marks=frames[Kind.OPTION_MARKS], vol_index=frames[Kind.VOL_INDEX],
                   leverage_tiers=tiers, gaps=gaps, warnings=tuple(warnings),
                   guessed_specs=tuple(guessed), mark_timeframes=mark_tfs,
                   fetched_from=_fetched_from(store, name))
