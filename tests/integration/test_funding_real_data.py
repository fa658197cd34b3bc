"""Funding on real recorded data: freqtrade's XRP/USDT:USDT perp (Binance USDT-M).

8-hourly funding stamps (with the exchange's millisecond jitter), 1h mark candles through
2021-11-19 09:00 and 5m trade candles through 2021-11-21 22:30, handed to the engine as
DataFrames. A long position held over every stamp pays, at each stamp T,
``rate(T) x mark(T) x size`` where mark(T) is the open of the mark candle opening at T, and the
5m trade candle opening at T once the mark candles end (DESIGN §2). Rates differ between stamps
(0.0001, 0.00013046, 0.00013859, 0.00019881), so a wrong stamp-to-rate match would show. The
funding history starts on 2021-11-18, after the candles: the run opts in to charging zero at
the stamps before it (``funding="history_or_zero"``), which it says.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.data.feed import MarketFrames
from backtester.instruments import instrument_from_symbol

SYMBOL = "XRP/USDT:USDT"
QTY = Decimal(1000)


class HoldLong(Strategy):
    """Buy once at the first bar and hold."""

    def on_bar(self, ctx):
        if ctx.position(SYMBOL).is_flat and not getattr(self, "_sent", False):
            self._sent = True
            ctx.buy(SYMBOL, QTY)


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_feather(folder / name).rename(columns={"date": "ts"})


@pytest.mark.shared
def test_funding_paid_equals_rate_times_mark_times_size(shared_data: Path):
    folder = shared_data / "freqtrade-testdata" / "futures"
    trades = _read(folder, "XRP_USDT_USDT-5m-futures.feather")
    mark = _read(folder, "XRP_USDT_USDT-1h-mark.feather")
    funding = _read(folder, "XRP_USDT_USDT-8h-funding_rate.feather")
    funding = funding[["ts", "open"]].rename(columns={"open": "rate"})
    inst = instrument_from_symbol(SYMBOL, lot_size=Decimal(1), tick_size=Decimal("0.0001"),
                                  taker_rate=Decimal(0), maker_rate=Decimal(0))
    result = backtester.run(
        HoldLong, data={SYMBOL: MarketFrames(ohlcv=trades, mark=mark, funding=funding,
                                             timeframe="5m")},
        instruments={SYMBOL: inst}, collateral={"USDT": 10_000}, slippage_bps=0,
        funding="history_or_zero")

    # expected, independently: stamps floored to the second; mark = 1h mark open at T, else the
    # 5m trade open at T; the position is opened at the second 5m bar (2021-11-15 00:05).
    stamps = funding.assign(ts=funding["ts"].dt.floor("s"))
    stamps = stamps[(stamps["ts"] >= "2021-11-15 00:05") & (stamps["ts"] < "2021-11-21 22:35")]
    mark_open = mark.set_index("ts")["open"]
    trade_open = trades.set_index("ts")["open"]
    expected = Decimal(0)
    sources = []
    for t, rate in zip(stamps["ts"], stamps["rate"]):
        if t in mark_open.index:
            px, src = mark_open[t], "mark"
        else:
            px, src = trade_open[t], "trade"
        sources.append(src)
        # long pays a positive rate: amount = -size x mark x rate
        # (each payment is booked to 1e-12 of a USDT)
        term = -QTY * Decimal(repr(float(px))) * Decimal(repr(float(rate)))
        expected += term.quantize(Decimal("1e-12"))
    assert len(stamps) == 12
    assert sources.count("mark") == 5
    assert sources.count("trade") == 7

    paid = [e for e in result.events if e["event"] == "FundingPaid"]
    assert len(paid) == 12
    assert [e["mark_source"] for e in paid] == sources
    assert sum(Decimal(str(e["amount"])) for e in paid) == expected
    assert len({e["rate"] for e in paid}) == 4  # 0.0001, 0.00013046, 0.00013859, 0.00019881
    # funding is booked in the journal and replays to the wallet
    journal = result.journal[result.journal["kind"] == "funding"]
    assert sum(Decimal(a) for a in journal["amount"]) == expected
    assert result.metrics["funding_paid"] == pytest.approx(-float(expected))
    assert any(w.startswith(f"funding charged zero for {SYMBOL} at 8 funding time(s) outside its "
                            "history (2021-11-15T08:00:00Z .. 2021-11-17T16:00:00Z")
               for w in result.warnings)
