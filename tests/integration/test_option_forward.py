"""Options are priced on their own forward (Deribit's ``underlying_price``), issue 14 item 4.

Recorded data: the Deribit BTC option chain of 2020-05-14 05:41-05:44 UTC
(schepal-deribit_data_collector, see shared/data/PROVENANCE.md): per option its mark (BTC),
mark IV, ``underlying_price`` (the future or synthetic future of its expiry), ``index_price``
and Deribit's greeks. Each option gets one 1-minute bar at the minute of its row; a BTC
inverse perpetual carries the index (the mean of the rows' ``index_price`` in that minute).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.data.feed import MarketFrames
from backtester.instruments import Instrument, instrument_from_symbol
from backtester.pricing import black76

CHAIN = "schepal-deribit_data_collector/btc_options_data_2020-05-14.csv"
PERP = "BTC/USD:BTC"
MIN = 60_000


def _symbol(name: str) -> str:
    # BTC-25SEP20-9000-P -> BTC/USD:BTC-200925-9000-P
    _, day, strike, cp = name.split("-")
    code = pd.Timestamp(day).strftime("%y%m%d")
    return f"{PERP}-{code}-{strike}-{cp}"


def _chain(shared_data: Path) -> pd.DataFrame:
    d = pd.read_csv(shared_data / CHAIN)
    d["symbol"] = d["instrument_name"].map(_symbol)
    d["minute"] = d["timestamp"] // MIN * MIN
    d["deribit_delta"] = [ast.literal_eval(g)["delta"] for g in d["greeks"]]
    return d


def _candles(ts_ms: Any, price: Any) -> pd.DataFrame:
    p = np.asarray(price, dtype="float64")
    return pd.DataFrame({"ts": pd.to_datetime(np.asarray(ts_ms), unit="ms", utc=True),
                         "open": p, "high": p, "low": p, "close": p, "volume": 0.0})


def _data(rows: pd.DataFrame, *, own_forward: bool) -> tuple[dict[str, MarketFrames],
                                                              dict[str, Instrument]]:
    index = rows.groupby("minute")["index_price"].mean()
    data = {PERP: MarketFrames(ohlcv=_candles(index.index, index.to_numpy()),
                               index=_candles(index.index, index.to_numpy()), timeframe="1m")}
    for r in rows.itertuples():
        marks = {"ts": pd.to_datetime([r.minute], unit="ms", utc=True),
                 "mark_price": [r.mark_price], "mark_iv": [r.mark_iv]}
        if own_forward:
            marks["underlying_price"] = [r.underlying_price]
        data[r.symbol] = MarketFrames(ohlcv=_candles([r.minute], [r.mark_price]),
                                      option_marks=pd.DataFrame(marks), timeframe="1m")
    return data, {s: instrument_from_symbol(s) for s in data}


class ChainWatcher(Strategy):
    def on_start(self, ctx: Any) -> None:
        self.seen: list[pd.DataFrame] = []

    def on_bar(self, ctx: Any) -> None:
        c = ctx.chain("BTC")
        c["now"] = ctx.now
        self.seen.append(c)


def _chain_rows(d: pd.DataFrame, *, own_forward: bool) -> tuple[pd.DataFrame, Any]:
    data, insts = _data(d, own_forward=own_forward)
    w = ChainWatcher()
    r = backtester.run(w, data=data, instruments=insts, funding="zero", profile="deribit",
                       collateral={"BTC": 1})
    seen = pd.concat(w.seen, ignore_index=True)
    # each option at the step its own bar closed (the row's minute + 1)
    got = d.merge(seen, on="symbol")
    return got[got["now"] == got["minute"] + MIN], r


@pytest.mark.shared
def test_chain_greeks_use_each_options_own_forward(shared_data: Path) -> None:
    d = _chain(shared_data)
    t_days = (d["expiration_timestamp"] - d["timestamp"]) / 86_400_000
    # expiries >= 2 days (the bar closes up to a minute after the row: immaterial there);
    # marks > 0 (a zero mark is item 9's)
    d = d[(t_days >= 2) & (d["mark_price"] > 0)]
    got, r = _chain_rows(d, own_forward=True)
    assert len(got) == len(d) == 228
    # the forward is the option's own, exactly; the IV is the recorded mark IV
    np.testing.assert_array_equal(got["underlying"], got["underlying_price"])
    np.testing.assert_allclose(got["iv"], got["mark_iv"] / 100.0, rtol=1e-15)
    assert set(got["forward_source"]) == {"underlying_price"}
    assert set(r.meta["forward_source"].values()) == {"underlying_price"}
    assert len(r.meta["forward_source"]) == 228
    # Deribit's delta (N(d1) on underlying_price), recorded to 5 decimals: within 3e-5 on
    # every row (measured 2.6e-5 in tests/unit/pricing/test_deribit_chain.py)
    err = np.abs(got["delta"] - got["deribit_delta"])
    assert err.max() <= 3e-5
    one = got[got["instrument_name"] == "BTC-26JUN20-8000-C"].iloc[0]
    assert one["underlying"] == 9_359.92
    assert one["delta"] == pytest.approx(0.74578, abs=1e-5)


@pytest.mark.shared
def test_without_underlying_price_the_index_is_the_forward_and_the_run_says_so(
        shared_data: Path) -> None:
    d = _chain(shared_data)
    d = d[d["instrument_name"].isin(["BTC-26JUN20-8000-C", "BTC-25SEP20-9000-P"])]
    got, r = _chain_rows(d, own_forward=False)
    assert set(got["forward_source"]) == {"index"}
    assert set(r.meta["forward_source"].values()) == {"index"}
    assert any("BTC/USD:BTC-200626-8000-C: no underlying_price in its data; its forward "
               "(greeks, IV, intrabar repricing, option margin) is the BTC/USD:BTC index" in w
               for w in r.warnings)
    one = got.set_index("instrument_name").loc["BTC-26JUN20-8000-C"]
    # the index of that minute stands in: both rows are of 05:41, index 9,350.12 and 9,350.15
    assert one["underlying"] == pytest.approx((9_350.12 + 9_350.15) / 2, rel=1e-15)
    # ... and the delta misses Deribit's by more than ten times the own-forward error
    assert abs(one["delta"] - 0.74578) > 5e-4


class SellOnce(Strategy):
    symbol: str = ""

    def on_bar(self, ctx: Any) -> None:
        if not getattr(self, "done", False):
            self.done = True
            ctx.sell(self.symbol, 1)


def _short_put_run(shared_data: Path, *, own_forward: bool) -> backtester.BacktestResult:
    # BTC-25SEP20-9000-P as recorded (mark 0.17289039 BTC, IV 83.49 %, underlying_price
    # 9,435.57, index 9,350.15) held flat over four hourly bars from 2020-05-14 06:00; the
    # index's last bar wicks to 8,500 and closes at 9,350.15. Short 1 put, 1 BTC collateral.
    d = _chain(shared_data)
    row = d[d["instrument_name"] == "BTC-25SEP20-9000-P"].iloc[0]
    ts = pd.date_range("2020-05-14 06:00", periods=4, freq="1h", tz="UTC")
    index = _candles(ts.as_unit("ms").asi8, [row.index_price] * 4)
    index.loc[3, "low"] = 8_500.0
    marks = pd.DataFrame({"ts": ts, "mark_price": row.mark_price, "mark_iv": row.mark_iv})
    if own_forward:
        marks["underlying_price"] = row.underlying_price
    data = {PERP: MarketFrames(ohlcv=index, index=index),
            row.symbol: MarketFrames(ohlcv=_candles(ts.as_unit("ms").asi8, [row.mark_price] * 4),
                                     option_marks=marks)}
    insts = {s: instrument_from_symbol(s) for s in data}
    return backtester.run(SellOnce(symbol=row.symbol), data=data, instruments=insts,
                          funding="zero", profile="deribit", collateral={"BTC": 1},
                          slippage_bps=0)


@pytest.mark.shared
def test_short_put_margin_reads_the_option_forward(shared_data: Path) -> None:
    r = _short_put_run(shared_data, own_forward=True)
    assert len(r.fills) == 1
    # Deribit short put (docs/margin-rules §7.3): OTM = U − K = 9,435.57 − 9,000 = 435.57,
    # OTM/U = 0.04616255; IM = max(0.15 − 0.04616255, 0.10) + mark = 0.10383745 + 0.17289039
    # = 0.27672784 BTC (MM 0.075 + 0.17289039 = 0.24789039 is lower). With the index as U it
    # would be 0.15 − 350.15/9,350.15 + 0.17289039 = 0.28544179.
    final = r.meta["final_margin"]
    assert final["positions"][0]["initial_margin"] == pytest.approx(0.27672784, abs=1e-8)
    assert r.state["prices"]["BTC/USD:BTC-200925-9000-P"]["underlying"] == 9_435.57
    # intrabar, at the index low 8,500, the put is repriced on the forward moved with
    # the index: F_low = 9,435.57 × 8,500 / 9,350.15 = 8,577.7…, not on 8,500 itself
    expiry = instrument_from_symbol("BTC/USD:BTC-200925-9000-P").expiry_ms or 0
    now = int(r.equity.index[-1].value // 1_000_000)
    t = (expiry - now) / black76.MS_PER_YEAR
    f_low = 9_435.57 * 8_500.0 / 9_350.15
    m_low = black76.inverse_price(f_low, 9_000.0, t, 0.8349, False)
    mm_low = (0.075 + m_low) * 8_500.0  # MM of the short put (coin) at the low, in USD
    assert r.equity["maintenance_margin"].iloc[-1] == pytest.approx(mm_low, rel=1e-12)
    assert r.meta["forward_source"] == {"BTC/USD:BTC-200925-9000-P": "underlying_price"}


@pytest.mark.shared
def test_short_put_margin_on_the_index_when_the_data_has_no_forward(shared_data: Path) -> None:
    r = _short_put_run(shared_data, own_forward=False)
    # IM = 0.15 − 350.15/9,350.15 + 0.17289039 = 0.15 − 0.03744860 + 0.17289039 = 0.28544179
    assert r.meta["final_margin"]["positions"][0]["initial_margin"] == pytest.approx(
        0.28544179, abs=1e-8)
    assert r.meta["forward_source"] == {"BTC/USD:BTC-200925-9000-P": "index"}
