"""Building the feed: array validation, alignment of mark candles and the clock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtester import DataError
from backtester.data.feed import Feed, MarketFrames
from backtester.data.schema import Kind, validate_arrays, validate_frame
from backtester.instruments import instrument_from_symbol
from tests.builders import BTC, ETH, bars

ROWS = [(100.0, 101.0, 99.0, 100.5), (100.5, 102.0, 100.0, 101.0), (101.0, 101.5, 99.5, 100.0),
        (100.0, 100.5, 98.0, 99.0), (99.0, 99.5, 97.0, 98.0)]
INSTS = {s: instrument_from_symbol(s) for s in (BTC, ETH)}


def _messy(df: pd.DataFrame) -> pd.DataFrame:
    # reversed, one identical duplicate row, 37 ms of exchange jitter, one missing volume
    out = pd.concat([df, df.iloc[[2]]], ignore_index=True).iloc[::-1].reset_index(drop=True)
    out["ts"] = out["ts"] + pd.Timedelta(milliseconds=37)
    out.loc[1, "volume"] = np.nan  # the last bar (04:00)
    return out


def test_validate_arrays_gives_the_values_of_validate_frame() -> None:
    messy = _messy(bars(ROWS))
    frame = validate_frame(messy, Kind.OHLCV, symbol=BTC, timeframe="1h")
    arrays = validate_arrays(messy, Kind.OHLCV, symbol=BTC, timeframe="1h")
    assert arrays.ts_ms.tolist() == frame["ts"].astype("int64").tolist()
    assert list(arrays.columns) == ["open", "high", "low", "close", "volume"]
    for name, values in arrays.columns.items():
        np.testing.assert_array_equal(values, frame[name].to_numpy())


def test_clean_float_input_is_not_copied_and_stays_writeable() -> None:
    df = bars(ROWS)
    out = validate_arrays(df, Kind.OHLCV, symbol=BTC, timeframe="1h")
    assert np.shares_memory(out.columns["close"], df["close"].to_numpy())
    assert not out.columns["close"].flags.writeable
    df.loc[0, "close"] = 100.25  # the caller's frame is still the caller's to change
    assert df["close"].iloc[0] == 100.25


def test_conflicting_duplicate_named_in_the_array_validation() -> None:
    df = bars(ROWS)
    dup = pd.concat([df, df.iloc[[3]]], ignore_index=True)
    dup.loc[len(dup) - 1, "volume"] = 5.0
    with pytest.raises(DataError, match=r"conflicting duplicate rows at 2024-01-01T03:00:00"):
        validate_arrays(dup, Kind.OHLCV, symbol=BTC, timeframe="1h")


def test_feed_of_messy_input_equals_the_feed_of_clean_input() -> None:
    clean = bars(ROWS)
    clean.loc[4, "volume"] = 0.0  # the missing volume of the messy copy counts as 0
    a = Feed.build(INSTS, {BTC: MarketFrames(ohlcv=clean)}).symbols[BTC]
    b = Feed.build(INSTS, {BTC: MarketFrames(ohlcv=_messy(bars(ROWS)))}).symbols[BTC]
    assert a.timeframe == b.timeframe == "1h"
    assert list(a.ts) == list(b.ts) == clean["ts"].dt.as_unit("ms").astype("int64").tolist()
    for k in ("o", "h", "l", "c", "v", "mo", "mc", "ic"):
        assert list(getattr(a, k)) == list(getattr(b, k))
    assert list(a.c) == clean["close"].tolist()
    assert list(a.mc) == list(a.c)  # no mark candles: the trade candles stand in
    assert a.mark_fallback_bars == 5
    assert all(a.mark_missing[i] for i in range(5))


def test_partial_mark_candles_fall_back_bar_by_bar() -> None:
    df = bars(ROWS)
    mark = df.copy()
    mark[["open", "high", "low", "close"]] += 0.25
    mark = mark.drop(index=[1, 3])
    # hourly marks with every other bar missing: said to be hourly (by their spacing alone they
    # read as 2h candles, which would be used only after two hours: safe, but another rule)
    f = Feed.build(INSTS, {BTC: MarketFrames(ohlcv=df, mark=mark,
                                             mark_timeframe="1h")}).symbols[BTC]
    assert [bool(f.mark_missing[i]) for i in range(5)] == [False, True, False, True, False]
    assert f.mark_fallback_bars == 2
    assert list(f.mc) == [100.75, 101.0, 100.25, 99.0, 98.25]
    assert list(f.ic) == list(f.mc)  # no index candles: the mark candles stand in


def test_clock_shares_steps_of_feeds_on_the_same_bars_and_merges_others() -> None:
    same = Feed.build(INSTS, {BTC: MarketFrames(ohlcv=bars(ROWS)),
                               ETH: MarketFrames(ohlcv=bars(ROWS))})
    assert len(same.steps) == 5
    assert [tuple(f.symbol for f in feeds) for _, feeds in same.steps] == [(BTC, ETH)] * 5
    hourly, two_hourly = bars(ROWS), bars(ROWS[:3], tf="2h")
    mixed = Feed.build(INSTS, {BTC: MarketFrames(ohlcv=hourly),
                                ETH: MarketFrames(ohlcv=two_hourly)})
    h = 3_600_000
    t0 = int(hourly["ts"].iloc[0].value // 1_000_000)
    assert [(t - t0) // h for t, _ in mixed.steps] == [1, 2, 3, 4, 5, 6]
    assert [tuple(f.symbol for f in feeds) for _, feeds in mixed.steps] == [
        (BTC,), (BTC, ETH), (BTC,), (BTC, ETH), (BTC,), (ETH,)]


def test_timeframe_is_inferred_from_unsorted_stamps() -> None:
    messy = _messy(bars(ROWS, tf="15min"))
    f = Feed.build(INSTS, {BTC: MarketFrames(ohlcv=messy)}).symbols[BTC]
    assert f.timeframe == "15m"
    with pytest.raises(DataError, match="fewer than 2 bars"):
        Feed.build(INSTS, {BTC: MarketFrames(ohlcv=bars(ROWS[:1]))})


def test_feed_views_clean_input_and_is_protected_from_later_writes() -> None:
    df = bars(ROWS)
    f = Feed.build(INSTS, {BTC: MarketFrames(ohlcv=df)}).symbols[BTC]
    assert np.shares_memory(f.arrays["close"], df["close"].to_numpy())  # no copy
    assert isinstance(f.c, memoryview)
    assert f.c[1] == 101.0
    df.loc[1, "close"] = 55.0  # pandas copies on write: the feed keeps the data it validated
    assert df["close"].iloc[1] == 55.0
    assert f.c[1] == 101.0
    assert f.arrays["close"][1] == 101.0


def test_option_forward_is_its_own_underlying_price_moved_intrabar_with_the_index() -> None:
    # Deribit BTC-26JUN20-8000-C, 2020-05-14 05:41: underlying_price 9,359.92, index close
    # 9,350.12. A bar whose index runs 9,300-9,400: forward low = 9,359.92 × 9,300/9,350.12
    # = 9,309.7475, high = 9,359.92 × 9,400/9,350.12 = 9,409.8523. The second bar has no
    # underlying_price: the index (9,360) stands in and is counted.
    opt = "BTC/USD:BTC-200626-8000-C"
    perp = "BTC/USD:BTC"
    ts = pd.date_range("2020-05-14 05:00", periods=2, freq="1h", tz="UTC")
    index = pd.DataFrame({"ts": ts, "open": [9_350.0, 9_360.0], "high": [9_400.0, 9_360.0],
                          "low": [9_300.0, 9_360.0], "close": [9_350.12, 9_360.0],
                          "volume": 0.0})
    prem = pd.DataFrame({"ts": ts, "open": 0.2, "high": 0.2, "low": 0.2, "close": 0.2,
                         "volume": 0.0})
    marks = pd.DataFrame({"ts": ts, "mark_price": 0.201121, "mark_iv": 90.26,
                          "underlying_price": [9_359.92, np.nan]})
    insts = {s: instrument_from_symbol(s) for s in (opt, perp)}
    feed = Feed.build(insts, {perp: MarketFrames(ohlcv=index, index=index),
                              opt: MarketFrames(ohlcv=prem, option_marks=marks)})
    f = feed.symbols[opt]
    assert f.forward_source == "underlying_price"
    assert list(f.fc) == [9_359.92, 9_360.0]
    assert f.fl[0] == pytest.approx(9_309.7475, abs=1e-4)
    assert f.fh[0] == pytest.approx(9_409.8523, abs=1e-4)
    assert (f.fl[1], f.fh[1]) == (9_360.0, 9_360.0)
    assert f.forward_fallback_bars == 1
    assert any("underlying_price missing on 1 of 2 bars; the BTC/USD:BTC index stands in"
               in w for w in feed.warnings)
    # the perpetual's forward is its index, shared (not copied)
    p = feed.symbols[perp]
    assert p.forward_source == "index"
    assert np.shares_memory(p.arrays["forward_low"], p.arrays["index_low"])


def test_sparse_marks_without_a_timeframe_read_by_their_spacing_16() -> None:
    # marks at 00:00, 02:00, 04:00 only: read as 2h candles (the safe reading: a bar is used
    # after two hours, never early), with the rule in the warnings
    df = bars(ROWS)
    mark = df.drop(index=[1, 3]).copy()
    mark[["open", "high", "low", "close"]] += 0.25
    feed = Feed.build(INSTS, {BTC: MarketFrames(ohlcv=df, mark=mark)})
    f = feed.symbols[BTC]
    assert f.mark_timeframe == "2h"
    assert f.mark_rule == "scaled"
    # the 00:00 2h mark bar closes with the 01:00 trade bar (its close 100.75 at 02:00)
    assert [bool(f.mark_missing[i]) for i in range(5)] == [True, False, False, False, False]
    assert f.mc[1] == 100.75
    assert any(w.startswith(f"{BTC}: mark candles are 2h, trade candles 1h") for w in
               feed.warnings)
