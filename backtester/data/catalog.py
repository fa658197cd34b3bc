"""Load a stored dataset by name for the engine."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from backtester.data.feed import MarketFrames
from backtester.data.schema import Kind
from backtester.data.store import Store
from backtester.errors import BacktesterWarning, ConfigError, DataError
from backtester.instruments import Instrument, instrument_from_ccxt, instrument_from_symbol

__all__ = ["Dataset", "load_dataset"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """A stored dataset: instruments and per-symbol frames (mark/index/funding joined)."""

    name: str
    exchange: str
    instruments: dict[str, Instrument]
    frames: dict[str, MarketFrames]
    vol_index: dict[str, pd.DataFrame] = field(default_factory=dict)
    leverage_tiers: Any = None
    warnings: list[str] = field(default_factory=list)


def load_dataset(name: str, *, root: Path | str | None = None,
                 symbols: list[str] | None = None) -> Dataset:
    """Load ``<root>/<name>``; the ``sample`` dataset is generated on first use."""
    store = Store(root)
    if name == "sample":
        from backtester.data.sample import ensure_sample

        ensure_sample(store.root)
    folder = store.root / name
    if not folder.is_dir():
        known = sorted(p.name for p in store.root.glob("*") if p.is_dir()) \
            if store.root.is_dir() else []
        msg = (f"dataset {name!r} not found in {store.root} (datasets: "
               f"{', '.join(known) or 'none'}); fetch it with 'backtester fetch'")
        raise ConfigError(msg)
    markets: dict[str, dict[str, Any]] = {}
    try:
        payload = store.read_json(name, "markets")
        for m in payload.get("markets", payload if isinstance(payload, list) else []):
            markets[m["symbol"]] = m
    except DataError:
        pass
    tiers = None
    try:
        tiers = store.read_json(name, "leverage_tiers")
    except DataError:
        pass
    by_kind: dict[tuple[str, Kind], Any] = {}
    for s in store.list(name):
        by_kind[(s.symbol, s.kind)] = s
    wanted = sorted({sym for sym, kind in by_kind if kind is Kind.OHLCV})
    if symbols is not None:
        missing = [s for s in symbols if s not in wanted]
        if missing:
            msg = f"dataset {name!r} has no candles for {', '.join(missing)}"
            raise ConfigError(msg)
        wanted = list(symbols)
    notes: list[str] = []
    instruments: dict[str, Instrument] = {}
    frames: dict[str, MarketFrames] = {}
    for sym in wanted:
        ohlcv = by_kind[(sym, Kind.OHLCV)]
        if sym in markets:
            instruments[sym] = instrument_from_ccxt(markets[sym], exchange=name)
        else:
            instruments[sym] = instrument_from_symbol(sym)
            notes.append(f"{sym}: no market spec in markets.json; contract terms from the symbol")
        tf = ohlcv.timeframe

        def read(kind: Kind, tf: str | None = tf, sym: str = sym) -> pd.DataFrame | None:
            if (sym, kind) not in by_kind:
                return None
            return store.read(name, kind, sym, by_kind[(sym, kind)].timeframe)

        frames[sym] = MarketFrames(ohlcv=store.read(name, Kind.OHLCV, sym, tf), timeframe=tf,
                                   mark=read(Kind.MARK), index=read(Kind.INDEX),
                                   funding=read(Kind.FUNDING),
                                   option_marks=read(Kind.OPTION_MARKS))
    vol = {sym: store.read(name, Kind.VOL_INDEX, sym, by_kind[(sym, Kind.VOL_INDEX)].timeframe)
           for sym, kind in by_kind if kind is Kind.VOL_INDEX}
    for n in notes:
        warnings.warn(n, BacktesterWarning, stacklevel=2)
    return Dataset(name=name, exchange=name, instruments=instruments, frames=frames,
                   vol_index=vol, leverage_tiers=tiers, warnings=notes)
