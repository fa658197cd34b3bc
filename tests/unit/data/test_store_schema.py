"""Parquet store and schema validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtester import DataError
from backtester.data.schema import Kind, find_gaps, validate_frame
from backtester.data.store import Store
from tests.builders import BTC, bars

ROWS = [(100.0, 101.0, 99.0, 100.5), (100.5, 102.0, 100.0, 101.0), (101.0, 101.5, 99.5, 100.0)]


def test_write_read_round_trip_is_atomic(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.write("binanceusdm", Kind.OHLCV, BTC, "1h", bars(ROWS),
                       metadata={"source": "test"})
    assert path == tmp_path / "binanceusdm" / "ohlcv" / "BTC-USDT_USDT" / "1h.parquet"
    # no temp file is left beside the written file (only the series' advisory lock file)
    assert sorted(p.name for p in path.parent.iterdir()) == [".1h.parquet.lock", "1h.parquet"]
    back = store.read("binanceusdm", "ohlcv", BTC, "1h")
    assert list(back.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert str(back["ts"].dtype) == "datetime64[ms, UTC]"
    assert list(back["close"]) == [100.5, 101.0, 100.0]
    meta = store.metadata("binanceusdm", "ohlcv", BTC, "1h")
    assert meta["rows"] == 3
    assert meta["source"] == "test"
    assert meta["symbol"] == BTC
    listed = store.list()
    assert [(s.exchange, s.kind, s.symbol, s.timeframe, s.rows) for s in listed] == [
        ("binanceusdm", Kind.OHLCV, BTC, "1h", 3)]


def test_failed_write_leaves_no_temp_file_and_keeps_the_old_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.write("x", "ohlcv", BTC, "1h", bars(ROWS))
    before = path.read_bytes()
    bad = bars(ROWS)
    bad.loc[1, "close"] = np.nan
    with pytest.raises(DataError):
        store.write("x", "ohlcv", BTC, "1h", bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [".1h.parquet.lock", "1h.parquet"]


def test_append_merges_and_drops_identical_overlap(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write("x", "ohlcv", BTC, "1h", bars(ROWS[:2]))
    store.append("x", "ohlcv", BTC, "1h", bars(ROWS)[1:].reset_index(drop=True))
    assert len(store.read("x", "ohlcv", BTC, "1h")) == 3


def test_missing_and_corrupt_files_are_data_errors(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(DataError, match="no ohlcv data for BTC/USDT:USDT"):
        store.read("x", "ohlcv", BTC, "1h")
    path = store.path("x", "ohlcv", BTC, "1h")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="unreadable Parquet file"):
        store.read("x", "ohlcv", BTC, "1h")


@pytest.mark.parametrize(("column", "value", "rule"), [
    ("close", np.nan, "close is NaN or infinite"),
    ("high", 98.0, "high below max"),   # high 98 < open 100.5 (and < low 100)
    ("low", 101.5, "low above min"),
    ("open", -1.0, "open is zero or negative"),
    ("volume", -5.0, "negative volume"),
])
def test_validation_errors_name_symbol_and_time(column: str, value: float, rule: str) -> None:
    df = bars(ROWS)
    df.loc[1, column] = value
    with pytest.raises(DataError) as info:
        validate_frame(df, Kind.OHLCV, symbol=BTC, timeframe="1h")
    msg = str(info.value)
    assert BTC in msg
    assert rule in msg
    assert "2024-01-01T01:00:00+00:00" in msg  # the bad row's time


OPT = "BTC/USD:BTC-200514-8500-P"


@pytest.mark.parametrize("kind", [Kind.OHLCV, Kind.MARK])
def test_an_options_zero_price_is_a_worthless_option_not_bad_data(kind: Kind) -> None:
    # issue 14 item 9: Deribit marked BTC-14MAY20-8500-P at 0 BTC on 2020-05-14 05:41
    df = bars([(0.0, 0.0, 0.0, 0.0), (0.0, 0.0005, 0.0, 0.0)])
    out = validate_frame(df, kind, symbol=OPT, timeframe="1h")
    assert out["close"].tolist() == [0.0, 0.0]
    # the symbol grammar decides unless the caller says (an instrument outside the grammar)
    assert len(validate_frame(df, kind, symbol="MYOPTION", timeframe="1h", is_option=True)) == 2
    df.loc[1, "low"] = -0.0001
    with pytest.raises(DataError, match="low is negative at 2024-01-01T01:00:00"):
        validate_frame(df, kind, symbol=OPT, timeframe="1h")


def test_zero_prices_are_still_bad_data_for_perps_and_indexes() -> None:
    df = bars([(0.0, 0.0, 0.0, 0.0)])
    with pytest.raises(DataError, match="open is zero or negative"):
        validate_frame(df, Kind.OHLCV, symbol=BTC, timeframe="1h")
    with pytest.raises(DataError, match="open is zero or negative"):
        validate_frame(df, Kind.INDEX, symbol=OPT, timeframe="1h")  # an index is never 0
    with pytest.raises(DataError, match="open is zero or negative"):
        validate_frame(df, Kind.OHLCV, symbol=OPT, timeframe="1h", is_option=False)


def test_conflicting_duplicates_rejected_identical_dropped() -> None:
    df = bars(ROWS)
    dup = pd.concat([df, df.iloc[[1]]], ignore_index=True)
    assert len(validate_frame(dup, Kind.OHLCV, symbol=BTC, timeframe="1h")) == 3
    conflict = dup.copy()
    conflict.loc[3, "close"] = 101.5
    with pytest.raises(DataError, match=r"conflicting duplicate rows at 2024-01-01T01:00:00"):
        validate_frame(conflict, Kind.OHLCV, symbol=BTC, timeframe="1h")


def test_unsorted_and_jittered_stamps_are_normalized() -> None:
    df = bars(ROWS).iloc[::-1].reset_index(drop=True)
    df["ts"] = df["ts"] + pd.Timedelta(milliseconds=37)  # exchange jitter: floored to 1h
    out = validate_frame(df, Kind.OHLCV, symbol=BTC, timeframe="1h")
    assert list(out["ts"]) == list(pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC"))


def test_tz_naive_rejected_unless_assume_utc() -> None:
    df = bars(ROWS)
    df["ts"] = df["ts"].dt.tz_localize(None)
    with pytest.raises(DataError, match="no time zone"):
        validate_frame(df, Kind.OHLCV, symbol=BTC, timeframe="1h")
    out = validate_frame(df, Kind.OHLCV, symbol=BTC, timeframe="1h", assume_utc=True)
    assert out["ts"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_int_ms_and_datetime_index_are_accepted() -> None:
    df = bars(ROWS)
    as_ms = df.assign(ts=df["ts"].dt.as_unit("ms").astype("int64"))  # epoch milliseconds
    out = validate_frame(as_ms, Kind.OHLCV, symbol=BTC, timeframe="1h")
    assert out["ts"].iloc[1] == pd.Timestamp("2024-01-01 01:00", tz="UTC")
    indexed = df.set_index("ts")
    assert len(validate_frame(indexed, Kind.OHLCV, symbol=BTC, timeframe="1h")) == 3


def test_funding_is_signed_and_floored_to_the_second() -> None:
    f = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 08:00:00.004"], utc=True),
                      "rate": [-0.0001]})
    out = validate_frame(f, Kind.FUNDING, symbol=BTC, timeframe=None)
    assert out["ts"].iloc[0] == pd.Timestamp("2024-01-01 08:00", tz="UTC")
    assert out["rate"].iloc[0] == -0.0001


def test_gaps_are_reported() -> None:
    h = 3_600_000
    ts = np.array([0, h, 4 * h, 5 * h, 7 * h], dtype="int64")
    rep = find_gaps(ts, h)
    # missing 2h, 3h (one gap of 2 bars) and 6h (one bar): 2 gaps, 3 missing of 8 expected
    assert rep.count == 2
    assert rep.missing_bars == 3
    assert rep.longest_ms == 2 * h
    assert rep.pct_missing == pytest.approx(3 / 8)
    assert rep.gaps == ((2 * h, 4 * h), (6 * h, 7 * h))
