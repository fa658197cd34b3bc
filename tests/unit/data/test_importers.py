"""Importing freqtrade feather/JSON files and CSVs (recorded data in shared/data)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from backtester.data.importers import import_file, infer_timeframe
from backtester.data.schema import Kind
from backtester.data.store import Store
from backtester.errors import DataError

XRP = "XRP/USDT:USDT"
FUT = "freqtrade-testdata/futures"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def test_freqtrade_feather_candles(store: Store, shared_data: Path) -> None:
    path = import_file(shared_data / FUT / "XRP_USDT_USDT-5m-futures.feather", store=store,
                       exchange="binanceusdm", symbol=XRP, kind="ohlcv")

    assert path.name == "5m.parquet"  # timeframe from the freqtrade file name
    frame = store.read("binanceusdm", Kind.OHLCV, XRP, "5m")
    assert len(frame) == 1999
    assert frame["ts"].iloc[-1] == pd.Timestamp("2021-11-21T22:30Z")
    assert store.metadata("binanceusdm", Kind.OHLCV, XRP, "5m")["gaps"]["count"] == 0


def test_freqtrade_funding_rate_is_in_open(store: Store, shared_data: Path) -> None:
    import_file(shared_data / FUT / "XRP_USDT_USDT-8h-funding_rate.feather", store=store,
                exchange="binanceusdm", symbol=XRP, kind="funding")

    frame = store.read("binanceusdm", Kind.FUNDING, XRP, None)
    assert len(frame) == 91
    assert frame["rate"].iloc[0] == pytest.approx(0.0001)
    assert frame["ts"].iloc[0] == pd.Timestamp("2021-11-18T00:00:00Z")  # .017 floored to 1 s


def test_freqtrade_json_gz_equals_feather(store: Store, shared_data: Path) -> None:
    import_file(shared_data / FUT / "XRP_USDT_USDT-1h-futures.json.gz", store=store,
                exchange="a", symbol=XRP, kind="ohlcv")
    import_file(shared_data / FUT / "XRP_USDT_USDT-1h-futures.feather", store=store,
                exchange="b", symbol=XRP, kind="ohlcv")

    a = store.read("a", Kind.OHLCV, XRP, "1h")
    b = store.read("b", Kind.OHLCV, XRP, "1h")
    assert len(a) == 100
    pd.testing.assert_frame_equal(a, b)


def test_mark_feather_with_nan_volume(store: Store, shared_data: Path) -> None:
    import_file(shared_data / FUT / "XRP_USDT_USDT-1h-mark.feather", store=store,
                exchange="binanceusdm", symbol=XRP, kind="mark")

    assert len(store.read("binanceusdm", Kind.MARK, XRP, "1h")) == 100


def test_naive_csv_rejected_unless_assume_utc(store: Store, shared_data: Path,
                                              tmp_path: Path) -> None:
    src = shared_data / "nautilus-trader/candles/btc-perp-20211231-20220201_1m.csv"
    small = tmp_path / "btc-perp.csv"
    with src.open() as fh:
        small.write_text("".join(fh.readlines()[:1441]))  # header + one day

    with pytest.raises(DataError, match=r"no time zone.*--assume-utc"):
        import_file(small, store=store, exchange="x", symbol="BTC/USD:USD", kind="ohlcv")
    import_file(small, store=store, exchange="x", symbol="BTC/USD:USD", kind="ohlcv",
                assume_utc=True)

    frame = store.read("x", Kind.OHLCV, "BTC/USD:USD", "1m")  # timeframe from the stamps
    assert len(frame) == 1440
    assert frame["ts"].iloc[0] == pd.Timestamp("2021-12-31T23:01Z")


def test_csv_with_bad_prices_names_the_rule(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,open,high,low,close,volume\n"
                   "2024-01-01T00:00Z,10,11,9,10,1\n2024-01-01T01:00Z,10,9,9,10,1\n")

    with pytest.raises(DataError, match=r"high below max\(open, close\) at 2024-01-01T01:00"):
        import_file(bad, store=store, exchange="x", symbol="BTC/USDT:USDT", kind="ohlcv")


def test_infer_timeframe_from_name() -> None:
    assert infer_timeframe("XRP_USDT_USDT-8h-funding_rate.feather") == "8h"


def test_shuffled_csv_is_sorted_before_the_timeframe_is_guessed_15(
        store: Store, shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "nautilus-trader/candles/btc-perp-20211231-20220201_1m.csv"
    with src.open() as fh:
        header, *rows = fh.readlines()[:1441]  # header + one day of 1m bars
    rows.reverse()  # a fixed shuffle: every row out of order, nothing lost
    rows = rows[::2] + rows[1::2]
    shuffled = tmp_path / "btc-perp-shuffled.csv"
    shuffled.write_text(header + "".join(rows))

    import_file(shuffled, store=store, exchange="x", symbol="BTC/USD:USD", kind="ohlcv",
                assume_utc=True)

    frame = store.read("x", Kind.OHLCV, "BTC/USD:USD", "1m")
    assert len(frame) == 1440
    assert frame["ts"].is_monotonic_increasing
    assert frame["close"].iloc[0] == 46377.0  # the 23:01 bar of the recording


def test_header_only_csv_says_no_rows_15(store: Store, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("ts,open,high,low,close,volume\n")

    with pytest.raises(DataError, match=r"empty.csv: no rows") as info:
        import_file(empty, store=store, exchange="x", symbol="BTC/USDT:USDT", kind="ohlcv")
    assert "time zone" not in str(info.value)
