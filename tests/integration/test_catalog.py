"""load_dataset on data fetched over loopback from recorded exchange answers."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from backtester.data.catalog import load_dataset
from backtester.data.fetch import FetchReport
from backtester.data.schema import Kind
from backtester.data.store import Store
from backtester.errors import ConfigError, DataError
from backtester.instruments import InstrumentKind
from backtester.timeutil import parse_utc_ms

Run = Callable[..., FetchReport]
XRP = "XRP/USDT:USDT"


def test_dataset_joins_instruments_candles_and_funding(run_fetch: Run, store: Store) -> None:
    run_fetch(kinds=("ohlcv", "funding"), since="2021-11-15", until="2021-11-21T22:35")

    ds = load_dataset("binanceusdm", root=store.root)

    assert ds.exchange == "binanceusdm"
    assert ds.timeframe == "5m"
    assert ds.symbols == (XRP,)
    inst = ds.instruments[XRP]
    assert inst.kind is InstrumentKind.PERPETUAL
    assert inst.settle == "USDT"
    assert str(ds.ohlcv[XRP]["ts"].dtype) == "datetime64[ms, UTC]"
    assert len(ds.ohlcv[XRP]) == 1999
    assert len(ds.funding[XRP]) == 12  # 2021-11-18 00:00 .. 11-21 16:00, 8h
    assert ds.gaps[("ohlcv", XRP)]["count"] == 0
    assert f"mark candles missing for {XRP}: margin uses trade candles" in ds.warnings
    assert ds.leverage_tiers is None


def test_dataset_window_and_symbol_filters(run_fetch: Run, store: Store) -> None:
    run_fetch()

    ds = load_dataset("binanceusdm", root=store.root, symbols=[XRP],
                      start_ms=parse_utc_ms("2021-11-16"), end_ms=parse_utc_ms("2021-11-17"))

    assert len(ds.ohlcv[XRP]) == 288
    assert ds.ohlcv[XRP]["ts"].iloc[0] == pd.Timestamp("2021-11-16T00:00Z")
    with pytest.raises(DataError, match=r"no candles for BTC/USDT:USDT"):
        load_dataset("binanceusdm", root=store.root, symbols=["BTC/USDT:USDT"])


def test_mark_present_no_warning_and_several_timeframes_need_a_choice(run_fetch: Run,
                                                                      store: Store) -> None:
    run_fetch(kinds=("ohlcv", "mark"), timeframe="1h", since="2021-11-17T01:00",
              until="2021-11-19T10:00")
    run_fetch(kinds=("ohlcv",), timeframe="5m", until="2021-11-16")

    with pytest.raises(ConfigError, match=r"several timeframes \(5m, 1h\)"):
        load_dataset("binanceusdm", root=store.root)
    ds = load_dataset("binanceusdm", root=store.root, timeframe="1h")

    assert set(ds.mark) == {XRP}
    assert not [w for w in ds.warnings if w.startswith("mark candles missing")]


def test_vol_index_and_unknown_dataset(run_fetch: Run, store: Store) -> None:
    run_fetch("deribit", ("BTC",), kinds=("vol_index",), timeframe="1d", since="2022-11-01",
              until="2023-01-01")

    ds = load_dataset("deribit", root=store.root)

    assert list(ds.vol_index) == ["BTC"]
    assert ds.vol_index["BTC"]["close"].iloc[0] == 56.76
    with pytest.raises(DataError, match=r"no dataset 'okx'.*have: deribit"):
        load_dataset("okx", root=store.root)


def test_truncated_file_is_quarantined_on_load(run_fetch: Run, store: Store) -> None:
    run_fetch(kinds=("ohlcv", "funding"))
    path = store.path("binanceusdm", Kind.FUNDING, XRP, None)
    path.write_bytes(path.read_bytes()[:100])

    ds = load_dataset("binanceusdm", root=store.root)

    assert any("unreadable Parquet file" in w and "funding.parquet" in w for w in ds.warnings)
    assert ds.funding == {}
