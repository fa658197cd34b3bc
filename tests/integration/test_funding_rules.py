"""Funding rules on hand-built data: missing history, interval changes, continuous accrual."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backtester
from backtester import DataError, Strategy
from backtester.data.feed import MarketFrames
from backtester.instruments import instrument_from_symbol

PERP = "BTC/USDT:USDT"


class Long1(Strategy):
    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            ctx.buy(PERP, Decimal(1))


def bars(n: int, price: float = 100.0) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": price, "high": price, "low": price, "close": price,
                         "volume": 1e9})


def inst():
    return {PERP: instrument_from_symbol(PERP, taker_rate=Decimal(0), maker_rate=Decimal(0))}


def test_held_perp_without_funding_history_is_an_error_unless_opted_out():
    data = {PERP: bars(10)}
    with pytest.raises(DataError, match="no funding history for BTC/USDT:USDT"):
        backtester.run(Long1, data=data, instruments=inst(), collateral={"USDT": 1000})
    ok = backtester.run(Long1, data=data, instruments=inst(), collateral={"USDT": 1000},
                        funding="zero")
    assert ok.state["positions"][0]["size"] == 1.0


def test_interval_change_8h_to_4h_to_1h_keeps_each_stamp_time():
    # Stamps 08:00 (8h), 12:00 and 16:00 (4h), then hourly 17:00 and 18:00; jitter of a few ms
    # is floored to the second. Long 1 @ 100 from 01:00: each stamp pays 100 x rate. The bars
    # run from 00:00 to 24:00, beyond the history at both ends: charged zero there, by request
    # (04:00 on the history's first 4h spacing, 19:00 .. 23:00 on its last 1h spacing).
    stamps = pd.to_datetime(["2025-01-01 08:00:00.013", "2025-01-01 12:00:00.004",
                             "2025-01-01 16:00:00", "2025-01-01 17:00:00.009",
                             "2025-01-01 18:00:00"], utc=True, format="ISO8601")
    rates = [0.0001, 0.0002, -0.0003, 0.0004, 0.0005]
    funding = pd.DataFrame({"ts": stamps, "rate": rates})
    r = backtester.run(Long1, data={PERP: MarketFrames(ohlcv=bars(24), funding=funding)},
                       instruments=inst(), collateral={"USDT": 1000}, slippage_bps=0,
                       funding="history_or_zero")
    assert ("funding charged zero for BTC/USDT:USDT at 6 funding time(s) outside its history "
            "(2025-01-01T04:00:00Z .. 2025-01-01T23:00:00Z; the history covers "
            "2025-01-01T08:00:00Z .. 2025-01-01T18:00:00Z), as asked "
            "(funding='history_or_zero')") in r.warnings
    paid = [e for e in r.events if e["event"] == "FundingPaid"]
    assert [e["time"] for e in paid] == ["2025-01-01T08:00:00Z", "2025-01-01T12:00:00Z",
                                         "2025-01-01T16:00:00Z", "2025-01-01T17:00:00Z",
                                         "2025-01-01T18:00:00Z"]
    # long pays positive rates and receives negative ones: -(100 x rate) each
    assert [e["amount"] for e in paid] == [Decimal("-0.01"), Decimal("-0.02"), Decimal("0.03"),
                                           Decimal("-0.04"), Decimal("-0.05")]


def test_fill_at_a_bar_opening_at_the_stamp_counts_as_held():
    # The order placed at the 07:00 close fills at the 08:00 bar's open; the 08:00 stamp charges
    # it (freqtrade's convention, DESIGN §2). A stamp inside a bar only sees fills at its open.
    class BuyLate(Strategy):
        def on_bar(self, ctx):
            if ctx.now == pd.Timestamp("2025-01-01 08:00", tz="UTC").value // 10**6:
                ctx.buy(PERP, Decimal(2))

    funding = pd.DataFrame({"ts": pd.to_datetime(["2025-01-01 08:00", "2025-01-01 16:00"],
                                                 utc=True), "rate": [0.001, 0.001]})
    r = backtester.run(BuyLate, data={PERP: MarketFrames(ohlcv=bars(24), funding=funding)},
                       instruments=inst(), collateral={"USDT": 1000}, slippage_bps=0)
    paid = [e for e in r.events if e["event"] == "FundingPaid"]
    # the order was placed at the 08:00 step (close of the 07:00 bar) and fills at the open of
    # the 08:00 bar, which opens at the stamp: both stamps charge 2 x 100 x 0.001 = 0.2
    assert [e["amount"] for e in paid] == [Decimal("-0.2"), Decimal("-0.2")]


def test_deribit_accrues_funding_continuously():
    # Deribit profile: the 8-hour rate in force accrues every bar pro rata: hourly bars pay
    # rate / 8 x size x mark. Rate 0.0008 from 00:00: each hourly bar after the fill pays
    # 0.0001 x 1 x 100 = 0.01 (linear USDC perp so the amounts stay in USD).
    sym = "BTC/USDC:USDC"
    funding = pd.DataFrame({"ts": pd.to_datetime(["2025-01-01 00:00"], utc=True),
                            "rate": [0.0008]})

    class LongUsdc(Strategy):
        def on_bar(self, ctx):
            if not getattr(self, "done", False):
                self.done = True
                ctx.buy(sym, Decimal(1))

    insts = {sym: instrument_from_symbol(sym, taker_rate=Decimal(0), maker_rate=Decimal(0))}
    r = backtester.run(LongUsdc, data={sym: MarketFrames(ohlcv=bars(6), funding=funding)},
                       instruments=insts, profile="deribit", collateral={"USDC": 1000},
                       slippage_bps=0)
    paid = [e for e in r.events if e["event"] == "FundingPaid"]
    # filled at the 01:00 open; accrues at the closes 02:00 ... 06:00 = 5 bars
    assert len(paid) == 5
    assert all(e["amount"] == Decimal("-0.01") for e in paid)


def test_held_after_the_funding_history_ends_is_an_error_16():
    # hourly bars 00:00 .. 24:00, funding every 8h at 00:00 and 08:00 only: the 16:00 stamp
    # (the history's 8h schedule carried on) is uncovered while the position is held
    funding = pd.DataFrame({"ts": pd.to_datetime(["2025-01-01 00:00", "2025-01-01 08:00"],
                                                 utc=True), "rate": [0.001, 0.001]})
    data = {PERP: MarketFrames(ohlcv=bars(24), funding=funding)}
    with pytest.raises(DataError) as err:
        backtester.run(Long1, data=data, instruments=inst(), collateral={"USDT": 1000})
    assert str(err.value) == (
        "BTC/USDT:USDT is held at the funding time 2025-01-01T16:00:00Z, after its funding "
        "history ends at 2025-01-01T08:00:00Z: no funding rates from 2025-01-01T08:00:00Z to "
        "2025-01-02T00:00:00Z; fetch funding for that span, or run with "
        "funding='history_or_zero' to charge zero there")
    r = backtester.run(Long1, data=data, instruments=inst(), collateral={"USDT": 1000},
                       funding="history_or_zero", slippage_bps=0)
    paid = [e for e in r.events if e["event"] == "FundingPaid"]
    assert [e["time"] for e in paid] == ["2025-01-01T08:00:00Z"]  # filled at 01:00
    assert any(w.startswith("funding charged zero for BTC/USDT:USDT at 1 funding time(s)")
               for w in r.warnings)
    # the strategy sees no rate where there is no history
    assert backtester.run(RateWatcher, data=data, instruments=inst(),
                          funding="history_or_zero").records["rate"].iloc[-1] != \
        backtester.run(RateWatcher, data=data, instruments=inst(),
                       funding="history_or_zero").records["rate"].iloc[-1]  # NaN != NaN


def test_continuous_funding_outside_the_history_is_an_error_16():
    # Deribit accrues continuously, each bar at the rate in force at its open: bars from 00:00,
    # a history from 02:00 only. The position filled at the 01:00 open has no rate in force
    # through the 01:00 bar (before the history), and none from 10:00 (the 02:00 rate's 8 hours
    # are over: after the history)
    sym = "BTC/USDC:USDC"
    funding = pd.DataFrame({"ts": pd.to_datetime(["2025-01-01 02:00"], utc=True),
                            "rate": [0.0008]})

    class LongUsdc(Strategy):
        def on_bar(self, ctx):
            if not getattr(self, "done", False):
                self.done = True
                ctx.buy(sym, Decimal(1))

    insts = {sym: instrument_from_symbol(sym, taker_rate=Decimal(0), maker_rate=Decimal(0))}
    data = {sym: MarketFrames(ohlcv=bars(16), funding=funding)}
    with pytest.raises(DataError, match="held at the funding time 2025-01-01T01:00:00Z, before "
                                        "its funding history starts at 2025-01-01T02:00:00Z"):
        backtester.run(LongUsdc, data=data, instruments=insts, profile="deribit",
                       collateral={"USDC": 1000})
    r = backtester.run(LongUsdc, data=data, instruments=insts, profile="deribit",
                       collateral={"USDC": 1000}, funding="history_or_zero", slippage_bps=0)
    paid = [e for e in r.events if e["event"] == "FundingPaid"]
    # accrues on the bars opening 02:00 .. 09:00 (8 bars, 0.0008 / 8 x 100 = 0.01 each); zero
    # on the 01:00 bar and from the 10:00 bar (10:00 .. 15:00, 6 bars)
    assert len(paid) == 8
    assert all(e["amount"] == Decimal("-0.01") for e in paid)
    assert ("funding charged zero for BTC/USDC:USDC at 7 funding time(s) outside its history "
            "(2025-01-01T01:00:00Z .. 2025-01-01T15:00:00Z; the history covers "
            "2025-01-01T02:00:00Z .. 2025-01-01T02:00:00Z), as asked "
            "(funding='history_or_zero')") in r.warnings


class RateWatcher(Strategy):
    def on_bar(self, ctx):
        rate = ctx.funding_rate(PERP)
        ctx.record(rate=float("nan") if rate is None else rate)


def test_fill_time_joins_funding_and_candles_16():
    # the buy placed at the 08:00 step fills at the open of the 08:00 bar: its trade is stamped
    # 08:00 (was 09:00, the bar's close), the time of the funding stamp that charges it, and
    # the candle it filled in is the one opening at its ts (its open is its price)
    class BuyAt8(Strategy):
        def on_bar(self, ctx):
            if ctx.now == pd.Timestamp("2025-01-01 08:00", tz="UTC").value // 10**6:
                ctx.buy(PERP, Decimal(2))

    candles = bars(24)
    candles["open"] = 100.0 + candles.index  # each bar opens at 100 + its hour
    candles["high"] = candles[["open", "close"]].max(axis=1)
    candles["low"] = candles[["open", "close"]].min(axis=1)
    funding = pd.DataFrame({"ts": pd.to_datetime(["2025-01-01 00:00", "2025-01-01 08:00",
                                                  "2025-01-01 16:00"], utc=True),
                            "rate": [0.001] * 3})
    r = backtester.run(BuyAt8, data={PERP: MarketFrames(ohlcv=candles, funding=funding)},
                       instruments=inst(), collateral={"USDT": 1000}, slippage_bps=0)
    fill = r.fills.iloc[0]
    first_paid = next(e for e in r.events if e["event"] == "FundingPaid")
    assert fill["ts"] == pd.Timestamp("2025-01-01 08:00", tz="UTC")
    assert fill["ts"] == pd.Timestamp(first_paid["time"])
    assert fill["step_ts"] == pd.Timestamp("2025-01-01 09:00", tz="UTC")
    assert fill["price"] == candles.set_index("ts").loc[fill["ts"], "open"] == 108.0
    # the decision that placed it was recorded at the step at its ts (the 07:00 bar's close)
    assert r.equity.index.get_loc(fill["ts"]) == 7
