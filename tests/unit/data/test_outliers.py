"""Implausible data is flagged with its timestamps; real and sample data are not (issue 15, 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtester.data.outliers import DEFAULT_RETURN_MULTIPLE, find_outliers
from backtester.data.sample import ensure_sample
from backtester.data.schema import Kind, validate_frame
from backtester.data.store import Store
from backtester.margin.profile import load_profile

BINANCE_CAP = load_profile("binance-usdm").funding_rate_cap
FUT = "freqtrade-testdata/futures"


def _btc_1m(shared: Path) -> pd.DataFrame:
    raw = pd.read_csv(shared / "nautilus-trader/candles/btc-perp-20211231-20220201_1m.csv")
    raw["ts"] = pd.to_datetime(raw.pop("timestamp"), utc=True)
    return validate_frame(raw, Kind.OHLCV, symbol="BTC/USDT:USDT", timeframe="1m")


def _feather(shared: Path, name: str, kind: Kind, tf: str | None) -> pd.DataFrame:
    raw = pd.read_feather(shared / name).rename(columns={"date": "ts"})
    if kind is Kind.FUNDING:
        raw = raw.rename(columns={"open": "rate"})[["ts", "rate"]]
    return validate_frame(raw, kind, symbol="X/USDT:USDT", timeframe=tf)


def test_profile_cap_is_binance_widest_published_cap() -> None:
    # margin-rules §2.5 [B10]: ±3 % per interval for perpetuals with max leverage <= 25x
    assert BINANCE_CAP == 0.03


def test_funding_rate_beyond_the_cap_is_flagged_with_its_time_15(shared_data: Path) -> None:
    frame = _feather(shared_data, f"{FUT}/XRP_USDT_USDT-8h-funding_rate.feather", Kind.FUNDING,
                     None)
    frame.loc[3, "rate"] = 10.0  # 1000 % per interval, as in the issue

    found = find_outliers(frame, Kind.FUNDING, symbol="XRP/USDT:USDT", funding_cap=BINANCE_CAP,
                          cap_source="binance-usdm profile")

    assert [(o.ts_ms, o.value) for o in found] == [
        (int(pd.Timestamp("2021-11-19T00:00Z").value // 10**6), 10.0)]
    assert found[0].message == (
        "funding XRP/USDT:USDT at 2021-11-19T00:00:00Z: funding rate 10 (1000.00%) is beyond "
        "the exchange's cap ±0.03 (binance-usdm profile)")


def test_a_100x_price_spike_is_flagged_15(shared_data: Path) -> None:
    frame = _btc_1m(shared_data).iloc[:1440].copy()  # the first day
    spike = 700
    for col in ("open", "high", "low", "close"):
        frame.loc[spike, col] *= 100

    found = find_outliers(frame, Kind.OHLCV, symbol="BTC/USDT:USDT", funding_cap=None)

    # the spike bar (up 100x) and the bar after it (back down) are flagged, nothing else
    times = [str(pd.Timestamp(o.ts_ms, unit="ms", tz="UTC")) for o in found]
    assert times == [str(frame["ts"].iloc[spike]), str(frame["ts"].iloc[spike + 1])]
    assert "is 100.1× the previous close" in found[0].reason  # 100 × close_t / close_t-1


def test_a_wick_alone_is_flagged_too_15(shared_data: Path) -> None:
    frame = _btc_1m(shared_data).iloc[:1440].copy()
    frame.loc[100, "low"] = frame.loc[100, "low"] / 100  # a bad print in the low only

    found = find_outliers(frame, Kind.OHLCV, symbol="BTC/USDT:USDT", funding_cap=None)

    assert [(o.column, o.ts_ms) for o in found] == [
        ("low", int(frame["ts"].iloc[100].value // 10**6))]


def test_real_recorded_data_raises_no_flag_15(shared_data: Path) -> None:
    series = [
        (_btc_1m(shared_data), Kind.OHLCV),
        (_feather(shared_data, f"{FUT}/XRP_USDT_USDT-5m-futures.feather", Kind.OHLCV, "5m"),
         Kind.OHLCV),
        (_feather(shared_data, f"{FUT}/XRP_USDT_USDT-1h-futures.feather", Kind.OHLCV, "1h"),
         Kind.OHLCV),
        (_feather(shared_data, f"{FUT}/XRP_USDT_USDT-1h-mark.feather", Kind.MARK, "1h"),
         Kind.MARK),
        (_feather(shared_data, f"{FUT}/XRP_USDT_USDT-8h-mark.feather", Kind.MARK, "8h"),
         Kind.MARK),
        (_feather(shared_data, "freqtrade-testdata/spot/ETH_BTC-5m.feather", Kind.OHLCV, "5m"),
         Kind.OHLCV),
        (_feather(shared_data, "freqtrade-testdata/spot/XRP_ETH-1m.feather", Kind.OHLCV, "1m"),
         Kind.OHLCV),
        (_feather(shared_data, "freqtrade-testdata/spot/XRP_ETH-5m.feather", Kind.OHLCV, "5m"),
         Kind.OHLCV),
        (_feather(shared_data, f"{FUT}/XRP_USDT_USDT-8h-funding_rate.feather", Kind.FUNDING,
                  None), Kind.FUNDING),
    ]
    rows = json.loads((shared_data / "kalyar197-eth-dashboard/funding_rate_btc.json").read_text())
    btc_funding = pd.DataFrame({"ts": pd.to_datetime([r[0] for r in rows], unit="ms", utc=True),
                                "rate": [r[1] / 100 for r in rows]})  # stored in percent
    series.append((validate_frame(btc_funding, Kind.FUNDING, symbol="BTC/USDT:USDT",
                                  timeframe=None), Kind.FUNDING))

    for frame, kind in series:
        assert find_outliers(frame, kind, symbol="X/USDT:USDT", funding_cap=BINANCE_CAP) == []


def test_sample_dataset_with_its_crash_raises_no_flag_15(tmp_path: Path) -> None:
    ensure_sample(tmp_path)
    store = Store(tmp_path)
    cap = load_profile("bybit").funding_rate_cap  # the sample's profile
    checked = 0
    for s in store.list("sample"):
        frame = store.read("sample", s.kind, s.symbol, s.timeframe)
        assert find_outliers(frame, s.kind, symbol=s.symbol, funding_cap=cap) == [], s.path
        checked += 1
    assert checked > 10


def test_the_multiple_is_configurable_15(shared_data: Path) -> None:
    frame = _btc_1m(shared_data)
    # the largest real move of the month is a 1m wick of about 42 robust scales
    assert find_outliers(frame, Kind.OHLCV, symbol="BTC/USDT:USDT", funding_cap=None,
                         return_multiple=DEFAULT_RETURN_MULTIPLE) == []
    assert len(find_outliers(frame, Kind.OHLCV, symbol="BTC/USDT:USDT", funding_cap=None,
                             return_multiple=30)) >= 1
    assert find_outliers(frame, Kind.OHLCV, symbol="BTC/USDT:USDT", funding_cap=None,
                         return_multiple=45) == []


def test_options_and_flat_series_are_not_checked_for_returns() -> None:
    ts = pd.date_range("2025-01-01", periods=5, freq="1h", tz="UTC")
    option = pd.DataFrame({"ts": ts, "open": 1.0, "high": 1.0, "low": 1.0,
                           "close": [1.0, 0.01, 0.02, 0.01, 0.01], "volume": 0.0})
    option["low"] = option["close"]
    option["open"] = option["close"]
    option["high"] = option["close"]
    assert find_outliers(option, Kind.OHLCV, symbol="BTC/USDC:USDC-250131-95000-C",
                         funding_cap=None) == []
    flat = option.assign(close=np.ones(5), open=1.0, high=1.0, low=1.0)
    assert find_outliers(flat, Kind.OHLCV, symbol="BTC/USDT:USDT", funding_cap=None) == []


@pytest.mark.parametrize("rate", [0.03, -0.03])
def test_a_rate_at_the_cap_is_not_flagged(rate: float) -> None:
    frame = pd.DataFrame({"ts": pd.to_datetime(["2025-01-01"], utc=True), "rate": [rate]})
    assert find_outliers(frame, Kind.FUNDING, symbol="X/USDT:USDT", funding_cap=0.03) == []
