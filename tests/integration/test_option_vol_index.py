"""Options without marks are priced from the vol index (issue 14 item 8).

Deribit's real BTC DVOL (daily, kalyar197-eth-dashboard/dvol_btc.json, see shared/data/
PROVENANCE.md) around the FTX collapse: the candle of 2022-11-08 closed at 76.66, the one of
2022-11-09 at 114.72. On hourly bars of 2022-11-09 the level known at a bar's close is 76.66
(the 11-08 candle closed at 11-09 00:00); 114.72 is known only from 11-10 00:00. Reading the
candle that opened at or before the bar (the 11-09 one) would take its close from up to 23
hours in the future.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import DataError, Strategy
from backtester.data.feed import Feed, MarketFrames
from backtester.data.store import Store
from backtester.instruments import instrument_from_symbol
from backtester.pricing import black76

PERP = "BTC/USD:BTC"
CALL = "BTC/USD:BTC-221125-18000-C"   # Deribit-style inverse, expires 2022-11-25 08:00 UTC
PUT = "BTC/USD:BTC-221125-16000-P"
CALL2 = "BTC/USD:BTC-221125-20000-C"
INDEX = 18_000.0
H = 3_600_000


def _dvol(shared_data: Path) -> pd.DataFrame:
    # [ts_ms, value] per day: the daily candle opening at ts, its close = value (the file
    # keeps one value a day; open/high/low are set to it)
    rows = json.loads((shared_data / "kalyar197-eth-dashboard" / "dvol_btc.json").read_text())
    d = pd.DataFrame(rows, columns=["ts", "close"])
    d["ts"] = pd.to_datetime(d["ts"], unit="ms", utc=True)
    d = d[(d["ts"] >= "2022-11-05") & (d["ts"] < "2022-11-12")].reset_index(drop=True)
    d["open"] = d["high"] = d["low"] = d["close"]
    return d


def _candles(ts: pd.DatetimeIndex, close: float | np.ndarray) -> pd.DataFrame:
    c = np.broadcast_to(np.asarray(close, dtype="float64"), (len(ts),))
    return pd.DataFrame({"ts": ts, "open": c, "high": c, "low": c, "close": c,
                         "volume": 1.0})


def _chain_data(start: str = "2022-11-09", hours: int = 48) -> dict[str, MarketFrames]:
    # BTC index flat at 18,000; the 18,000 call has only trade candles (its mark series is
    # missing); the other two have option marks (mark price and IV, no underlying_price)
    ts = pd.date_range(start, periods=hours, freq="1h", tz="UTC")
    flat = _candles(ts, INDEX)
    out = {PERP: MarketFrames(ohlcv=flat, index=flat),
           CALL: MarketFrames(ohlcv=_candles(ts, 0.05))}
    for sym, mark, iv in ((PUT, 0.01, 90.0), (CALL2, 0.02, 85.0)):
        out[sym] = MarketFrames(ohlcv=_candles(ts, mark), option_marks=pd.DataFrame(
            {"ts": ts, "mark_price": mark, "mark_iv": iv}))
    return out


class Chains(Strategy):
    def on_start(self, ctx: Any) -> None:
        self.seen: dict[int, pd.DataFrame] = {}

    def on_bar(self, ctx: Any) -> None:
        self.seen[ctx.now] = ctx.chain("BTC").set_index("symbol")


def _ms(s: str) -> int:
    return int(pd.Timestamp(s, tz="UTC").value // 1_000_000)


def _run(data: dict[str, MarketFrames], vol: Any) -> tuple[backtester.BacktestResult, Chains]:
    s = Chains()
    insts = {sym: instrument_from_symbol(sym) for sym in data}
    r = backtester.run(s, data=data, instruments=insts, vol_indexes={"BTC": vol},
                       funding="zero", profile="deribit", collateral={"BTC": 1})
    return r, s


@pytest.mark.shared
@pytest.mark.parametrize("form", ["ts column", "DatetimeIndex", "MarketFrames 1d"])
def test_missing_mark_series_is_priced_from_the_closed_daily_dvol(shared_data: Path,
                                                                  form: str) -> None:
    dvol = _dvol(shared_data)
    vol: Any = {"ts column": dvol, "DatetimeIndex": dvol.set_index("ts"),
                "MarketFrames 1d": MarketFrames(ohlcv=dvol, timeframe="1d")}[form]
    r, s = _run(_chain_data(), vol)
    assert r.meta["mark_source"] == {PERP: "trade", CALL: "theoretical", PUT: "option_marks",
                                     CALL2: "option_marks"}
    # the level of the last DVOL candle closed by the bar's close, with the default (flat)
    # smile: IV = level for every strike
    noon = s.seen[_ms("2022-11-09 12:00")].loc[CALL]
    assert noon["iv"] == pytest.approx(0.7666, rel=1e-15)
    assert s.seen[_ms("2022-11-09 23:00")].loc[CALL, "iv"] == pytest.approx(0.7666, rel=1e-15)
    assert s.seen[_ms("2022-11-10 00:00")].loc[CALL, "iv"] == pytest.approx(1.1472, rel=1e-15)
    # the mark, by hand: ATM (F = K = 18,000), t = 15 d 20 h = 15.833333 d = 0.0433790 y,
    # √t = 0.2082762, σ√t = 0.7666 × 0.2082762 = 0.1596646, d1 = σ√t/2 = 0.0798323,
    # N(d1) = 0.5318147; USD value F·(2N(d1) − 1) = 18,000 × 0.0636294 = 1,145.33; in BTC
    # (÷ F) 0.0636294
    assert noon["mark"] == pytest.approx(0.0636294, abs=5e-7)
    assert noon["underlying"] == INDEX
    # the marked options keep their own marks and IVs
    assert s.seen[_ms("2022-11-09 12:00")].loc[PUT, "iv"] == pytest.approx(0.90)
    assert any(w.startswith(f"{CALL}: no option marks; marks are theoretical") for w in r.warnings)
    assert any(w.startswith("BTC vol index (1d candles): a bar's level is the close of the last "
                            "vol candle closed by the bar's close (up to 23.0 hours old here)")
               for w in r.warnings)
    assert not any(PUT in w and "theoretical" in w for w in r.warnings)


@pytest.mark.shared
def test_bars_before_the_first_closed_vol_candle_keep_their_trade_candles(
        shared_data: Path) -> None:
    # the vol index starts with the 2022-11-09 candle (closes 11-10 00:00): the 24 hourly bars
    # of 11-09 (closes 01:00 ... 11-10 00:00) — the last closes with it — have no level before
    # 11-10 00:00: 23 bars keep the call's trade candles (0.05 BTC) as marks, counted and said
    dvol = _dvol(shared_data)
    r, s = _run(_chain_data(), dvol[dvol["ts"] >= "2022-11-09"])
    assert r.meta["mark_source"][CALL] == "theoretical"
    assert r.meta["mark_fallback_bars"][CALL] == 23
    assert s.seen[_ms("2022-11-09 12:00")].loc[CALL, "mark"] == 0.05
    assert s.seen[_ms("2022-11-10 00:00")].loc[CALL, "iv"] == pytest.approx(1.1472)
    assert any(w == f"{CALL}: no BTC vol index candle had closed by the close of 23 of its 48 "
               "bars: its trade candles are the marks there" for w in r.warnings)


@pytest.mark.shared
def test_stored_dataset_with_a_daily_vol_index_prices_the_option(shared_data: Path,
                                                                  tmp_path: Path) -> None:
    # the dataset path read vol_index frames with timeframe=None ("candles need a
    # timeframe"); the run's start trimmed away the candle that closes at its first bars
    store = Store(tmp_path)
    for sym, fr in _chain_data().items():
        store.write("deribit-dvol", "ohlcv", sym, "1h", fr.ohlcv)
        if fr.index is not None:
            store.write("deribit-dvol", "index", sym, "1h", fr.index)
            store.write("deribit-dvol", "mark", sym, "1h", fr.index)
        if fr.option_marks is not None:
            store.write("deribit-dvol", "option_marks", sym, "1h", fr.option_marks)
    store.write("deribit-dvol", "vol_index", "BTC/USD", "1d", _dvol(shared_data))
    markets = {}
    for sym in _chain_data():
        inst = instrument_from_symbol(sym)
        markets[sym] = {"symbol": sym, "base": "BTC", "quote": "USD", "settle": "BTC",
                        "type": "option" if inst.is_option else "swap",
                        "option": inst.is_option, "swap": not inst.is_option, "linear": False,
                        "inverse": True, "contract": True,
                        "contractSize": 1 if inst.is_option else 10,
                        "expiry": inst.expiry_ms, "strike": inst.strike,
                        "optionType": None if inst.option_type is None
                        else inst.option_type.value,
                        "precision": {"price": 0.0005 if inst.is_option else 0.5,
                                      "amount": 0.1 if inst.is_option else 1}}
    store.write_json("deribit-dvol", "markets", {"markets": markets, "precision_mode": 4})
    s = Chains()
    r = backtester.run(s, dataset="deribit-dvol", datasets_root=tmp_path, funding="zero",
                       profile="deribit", collateral={"BTC": 1}, start="2022-11-09 06:00")
    assert r.meta["mark_source"][CALL] == "theoretical"
    assert CALL not in r.meta["mark_fallback_bars"] or r.meta["mark_fallback_bars"][CALL] == 0
    assert s.seen[_ms("2022-11-09 07:00")].loc[CALL, "iv"] == pytest.approx(0.7666)


def test_vol_index_errors_are_named() -> None:
    one = pd.DataFrame({"ts": pd.to_datetime(["2022-11-08"], utc=True), "open": [70.0],
                        "high": [80.0], "low": [60.0], "close": [76.66]})
    with pytest.raises(DataError, match="BTC vol index: cannot infer the timeframe from fewer "
                                        "than 2 bars"):
        _run(_chain_data(), one)
    bad = pd.concat([one, one.assign(ts=one["ts"] + pd.Timedelta("1D"), low=90.0)])
    with pytest.raises(DataError, match=r"vol_index BTC vol index 1d: low above min\(open, "
                                        r"close\) at 2022-11-09"):
        _run(_chain_data(), bad)


def test_theoretical_put_is_worth_most_at_the_forwards_low() -> None:
    # 1h vol candles (same timeframe as the bars: each closes with its bar), level 60 all
    # along; a 2-bar book with the index 18,000 → wick low 16,200 on the second bar. The
    # 18,000 put, 2 days + 8 h to expiry at the first close: its theoretical marks are
    # Black-76 at σ = 0.60 (flat smile), high = price at the forward's low (a put is worth
    # most there), low = price at the forward's high.
    ts = pd.date_range("2022-11-23", periods=2, freq="1h", tz="UTC")
    idx = _candles(ts, INDEX)
    idx.loc[1, "low"] = 16_200.0
    data = {PERP: MarketFrames(ohlcv=idx, index=idx),
            "BTC/USD:BTC-221125-18000-P": MarketFrames(ohlcv=_candles(ts, 0.05))}
    vol = pd.DataFrame({"ts": pd.date_range("2022-11-22 23:00", periods=3, freq="1h",
                                            tz="UTC"), "open": 60.0, "high": 60.0,
                        "low": 60.0, "close": 60.0})
    r, _ = _run(data, vol)
    put = "BTC/USD:BTC-221125-18000-P"
    assert r.meta["mark_source"][put] == "theoretical"
    t = (_ms("2022-11-25 08:00") - _ms("2022-11-23 02:00")) / black76.MS_PER_YEAR
    feed = Feed.build({k: instrument_from_symbol(k) for k in data}, data,
                      vol_index={"BTC": vol}).symbols[put]
    assert feed.mh[1] == pytest.approx(black76.inverse_price(16_200.0, 18_000.0, t, 0.6, False),
                                       rel=1e-15)
    assert feed.mc[1] == pytest.approx(black76.inverse_price(INDEX, 18_000.0, t, 0.6, False),
                                       rel=1e-15)
    assert feed.ml[1] == feed.mc[1]  # the index high is its close
