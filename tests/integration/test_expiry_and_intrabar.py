"""Expiry settlement of a dated future and the intrabar (grouped) margin check."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.data.feed import MarketFrames
from backtester.instruments import instrument_from_symbol

FUT = "BTC/USDT:USDT-250103"  # expires 2025-01-03 08:00 UTC
PERP = "BTC/USDT:USDT"
ZERO_FEES = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}


def candles(index: pd.DatetimeIndex, close: list[float], *, high=None, low=None) -> pd.DataFrame:
    return pd.DataFrame({"ts": index, "open": close, "high": high or close,
                         "low": low or close, "close": close, "volume": 1e9})


class BuyOnce(Strategy):
    symbol: str = FUT
    qty: str = "2"

    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            q = Decimal(self.qty)
            (ctx.buy if q > 0 else ctx.sell)(self.symbol, abs(q))


def test_future_settles_at_index_twap_with_delivery_fee():
    # 15-minute bars. Index closes: 50,000 until 07:30, then 51,000 (07:30 bar), 51,200
    # (07:45 bar). Delivery window 07:30-08:00 -> TWAP = (51,000 + 51,200) / 2 = 51,100.
    # Long 2 @ 50,000: settlement PnL 2 x 1,100 = 2,200; Deribit's delivery fee 0.025 %
    # (profiles/deribit.json) x 2 x 51,100 = 25.55.
    idx = pd.date_range("2025-01-03 00:00", "2025-01-03 09:45", freq="15min", tz="UTC")
    index_close = [50_000.0] * len(idx)
    i730 = list(idx).index(pd.Timestamp("2025-01-03 07:30", tz="UTC"))
    index_close[i730] = 51_000.0
    index_close[i730 + 1] = 51_200.0
    fut_idx = idx[idx < pd.Timestamp("2025-01-03 08:00", tz="UTC")]
    data = {PERP: MarketFrames(ohlcv=candles(idx, [50_000.0] * len(idx)),
                               index=candles(idx, index_close), timeframe="15m"),
            FUT: MarketFrames(ohlcv=candles(fut_idx, [50_000.0] * len(fut_idx)), timeframe="15m")}
    insts = {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
    r = backtester.run(BuyOnce, data=data, instruments=insts, funding="zero", slippage_bps=0,
                       collateral={"USDT": 100_000}, profile="deribit")
    exp = [e for e in r.events if e["event"] == "InstrumentExpired"]
    assert len(exp) == 1
    assert exp[0]["settlement_price"] == pytest.approx(51_100.0)
    assert exp[0]["price_source"] == "index_twap"
    assert exp[0]["pnl"] == Decimal("2200")
    assert exp[0]["fee"] == Decimal("25.55")
    assert r.state["positions"] == []
    assert Decimal(r.state["collateral_exact"]["USDT"]) == Decimal("100000") + Decimal(
        "2200") - Decimal("25.55")


class Hedge(Strategy):
    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            ctx.set_leverage(PERP, 20)
            ctx.set_leverage(FUT, 20)
            ctx.buy(PERP, Decimal(1))
            ctx.sell(FUT, Decimal(1))


@pytest.mark.parametrize("check", ["intrabar", "close"])
def test_intrabar_check_moves_a_hedge_together(check):
    # Perp long 1 and future short 1, both @ 50,000, collateral 3,000 (IM 2 x 2,500 = 5,000 is
    # not needed: margin is checked on maintenance). One bar wicks to 40,000 on both legs and
    # closes at 50,000. Grouped by underlying, both legs move together: at the low
    # MB = 3,000 - 10,000 + 10,000 = 3,000 > MM 0.5% x 80,000 = 400 -> no liquidation, in
    # either check mode. (Checking legs at their own worst extreme independently would see
    # -10,000 on the perp and -0 on the future and liquidate.)
    idx = pd.date_range("2025-01-01", periods=6, freq="1h", tz="UTC")
    close = [50_000.0] * 6
    low = [50_000.0] * 3 + [40_000.0] + [50_000.0] * 2
    data = {PERP: candles(idx, close, low=low), "BTC/USDT:USDT-251226": candles(idx, close,
                                                                                low=low)}
    global FUT
    old, FUT = FUT, "BTC/USDT:USDT-251226"
    try:
        insts = {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
        r = backtester.run(Hedge, data=data, instruments=insts, funding="zero",
                           slippage_bps=0, collateral={"USDT": 6_000}, margin_check=check)
    finally:
        FUT = old
    assert r.metrics["liquidations"] == 0
    assert len(r.state["positions"]) == 2


class LongOnly(Strategy):
    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            ctx.set_leverage(PERP, 20)
            ctx.buy(PERP, Decimal(1))


def test_intrabar_wick_liquidates_where_close_check_does_not():
    # Long 1 @ 50,000 with 3,000 collateral; a bar wicks to 47,000 and closes at 50,000.
    # At the low: MB = 3,000 - 3,000 = 0 <= MM 235 -> liquidated intrabar; closes only: healthy.
    idx = pd.date_range("2025-01-01", periods=6, freq="1h", tz="UTC")
    low = [50_000.0] * 3 + [47_000.0] + [50_000.0] * 2
    data = {PERP: candles(idx, [50_000.0] * 6, low=low)}
    insts = {PERP: instrument_from_symbol(PERP, **ZERO_FEES)}
    kw = {"data": data, "instruments": insts, "funding": "zero", "slippage_bps": 0,
          "collateral": {"USDT": 3_000}}
    assert backtester.run(LongOnly, margin_check="intrabar", **kw).metrics["liquidations"] == 1
    assert backtester.run(LongOnly, margin_check="close", **kw).metrics["liquidations"] == 0
