"""Deribit standard margin in the engine: size-dependent IM and MM rates (margin-rules §7.2).

The engine charges what the calculator charges: ``rate = base + per_coin × size in coins`` on
``size × rate`` (linear: converted at the index), leverage playing no part; admission, the
recorded requirements, liquidation and the distance to liquidation all use it. Instruments have
zero trading fees; bars are hourly from 00:00 UTC, before Deribit's 08:00 daily settlement.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

ZERO_FEES = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}
PERP = "BTC/USDC:USDC"


def bars(close: list[float], low: list[float] | None = None) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01 00:00", periods=len(close), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": close, "high": close, "low": low or close,
                         "close": close, "volume": 1e9})


class Script(Strategy):
    """Orders by bar number: ``plan`` = "BAR:QTY;BAR:QTY@LIMIT" (signed BTC; market orders,
    or resting limit orders with ``@price``)."""

    plan: str = ""

    def on_bar(self, ctx):
        k = getattr(self, "k", 0)
        self.k = k + 1
        for item in self.plan.split(";"):
            bar, order = item.split(":")
            qty, _, limit = order.partition("@")
            if int(bar) == k:
                q = Decimal(qty)
                (ctx.buy if q > 0 else ctx.sell)(PERP, abs(q), limit=float(limit) if limit
                                                 else None)


def run(close, plan, collateral, low=None, check="intrabar"):
    return backtester.run(Script, data={PERP: bars(close, low)}, profile="deribit",
                          instruments={PERP: instrument_from_symbol(PERP, **ZERO_FEES)},
                          funding="zero", slippage_bps=0, liquidation_slippage_bps=0,
                          margin_check=check, collateral={"USDC": collateral},
                          params={"plan": plan})


def test_requirements_are_the_published_size_dependent_example():
    # §7.2 [DB2]: BTC_USDC perp, 25 BTC @ 100,000: IM 2 % + 25 x 0.005 % = 2.125 % -> 53,125
    # USDC; MM 1 % + 25 x 0.005 % = 1.125 % -> 28,125 USDC (a flat 2 % / 0.5 % would be
    # 50,000 / 12,500).
    r = run([100_000.0] * 4, "0:25", 60_000)
    assert len(r.fills) == 1
    eq = r.equity
    assert eq["initial_margin"].iloc[2] == pytest.approx(53_125.0, rel=1e-12)
    assert eq["maintenance_margin"].iloc[2] == pytest.approx(28_125.0, rel=1e-12)
    # the run's final state through the calculator gives the same numbers
    (pos,) = r.meta["final_margin"]["positions"]
    assert pos["initial_margin"] == pytest.approx(53_125.0, rel=1e-12)
    assert pos["maintenance_margin"] == pytest.approx(28_125.0, rel=1e-12)


def test_admission_needs_the_size_dependent_initial_margin():
    # 52,000 USDC covers 2 % of 2,500,000 (50,000) but not the 53,125 the rates ask for
    r = run([100_000.0] * 4, "0:25", 52_000)
    assert r.fills.empty
    (rej,) = r.rejections.itertuples()
    assert rej.reason == "insufficient_margin"
    assert "53,125.00" in rej.message
    # adding 5 BTC to 20: IM(25) - IM(20) = 53,125 - 20 x 2.1 % x 100,000 = 11,125
    r = run([100_000.0] * 5, "0:20;2:5", 42_000 + 11_100)  # 20 BTC needs 42,000: 11,100 left
    assert len(r.fills) == 1
    assert "11,125.00" in r.rejections["message"].iloc[0]


def test_a_resting_order_holds_its_size_dependent_initial_margin():
    # a limit buy of 10 BTC at 90,000 never fills (lows stay at 100,000) and holds IM of
    # 10 x (2 % + 10 x 0.005 %) x 90,000 = 18,450 USDC: available = 60,000 - 18,450
    r = run([100_000.0] * 4, "0:10@90000", 60_000, check="close")
    assert r.fills.empty
    assert r.equity["available"].iloc[2] == pytest.approx(60_000 - 18_450, rel=1e-12)


def test_liquidation_and_distance_use_the_size_dependent_maintenance():
    # 25 BTC long from 100,000 on 60,000 USDC. The account is liquidated at the mark m where
    # 60,000 + 25 x (m - 100,000) <= 1.125 % x 25 x m, i.e. m <= 2,440,000 / 24.71875
    # = 98,710.24: a low of 98,750 is a margin call only (MB 28,750, MM 27,773.4, ratio
    # 0.966), a low of 98,700 liquidates. With the flat 0.5 % it would take m <= 97,487.
    m_liq = 2_440_000 / 24.71875
    close = [100_000.0] * 6
    low = [100_000.0] * 3 + [98_750.0, 100_000.0, 98_700.0]
    r = run(close, "0:25", 60_000, low=low)
    liq = [e for e in r.events if e["event"] == "PositionLiquidated"]
    # events are stamped at the close of their bar: bar 5 (05:00-06:00), bar 3
    assert [e["time"][11:16] for e in liq][:1] == ["06:00"]
    calls = [e for e in r.events if e["event"] == "MarginCalled"]
    assert calls[0]["time"][11:16] == "04:00"
    assert calls[0]["margin_ratio"] == pytest.approx(0.28125 * 98_750 / 28_750, rel=1e-12)
    # distance at the flat bars before: every underlying moved by x from 100,000
    dist = r.equity["distance_to_liquidation"]
    assert dist.iloc[2] == pytest.approx(m_liq / 100_000 - 1, rel=1e-9)


def test_distance_counts_unsettled_session_pnl():
    # Deribit keeps realized PnL in the session ledger until 08:00. Long 1 BTC at 50,000
    # (01:00), sold at 51,000 (03:00: +1,000 to the session, the wallet stays 5,000), bought
    # again at 51,000 (04:00). MM = 1 % + 1 x 0.005 % = 1.005 % of the notional.
    #   held from 50,000 at 51,000: 5,000 + (m - 50,000) <= 0.01005 m
    #   held from 51,000 with the session's 1,000: 5,000 + 1,000 + (m - 51,000) <= 0.01005 m
    # both give m = 45,000 / 0.98995 = 45,456.84 -> x = -10.87 % (without the session:
    # 46,000 / 0.98995 -> -8.89 %).
    r = run([50_000.0] * 2 + [51_000.0] * 6, "0:1;2:-1;3:1", 5_000, check="close")
    eq = r.equity
    assert (eq["wallet"].iloc[:7] == 5_000).all()
    want = 45_000 / 0.98995 / 51_000 - 1
    dist = eq["distance_to_liquidation"]
    assert dist.iloc[2] == pytest.approx(want, rel=1e-9)  # holding the first long
    assert dist.iloc[3] == float("inf")  # flat
    assert list(dist.iloc[4:7]) == pytest.approx([want] * 3, rel=1e-9)


class PerpAndPut(Strategy):
    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            ctx.buy("BTC/USD:BTC", Decimal(500))  # 500 x 100 USD = 50,000 USD face, 1 BTC
            ctx.buy("BTC/USD:BTC-250328-40000-P", Decimal(1))  # 0.1 BTC premium


def test_distance_values_a_coin_settled_option_at_the_coin_price():
    # 0.2 BTC; long 50,000 USD face of the inverse perp at 50,000 and one put paid 0.1 BTC:
    # 0.1 BTC left plus a put worth 0.1 BTC (held at its value in coin, so worth 0.1 x m in
    # USD when every underlying moves to m). MM of the perp (size 50,000 / m BTC, rate
    # 1.5 % + 0.005 % x size) in USD: 50,000 x (0.015 + 0.00005 x 50,000 / m). Liquidation:
    #   (0.1 + 0.1) m + 50,000 (m / 50,000 - 1) - 750 - 125,000 / m = 0
    #   1.2 m^2 - 50,750 m - 125,000 = 0  ->  m = 42,294.13, x = -15.41 %
    # (the put counted as 0.1 USD instead would give m = 46,142, x = -7.7 %)
    import math

    perp, put = "BTC/USD:BTC", "BTC/USD:BTC-250328-40000-P"
    ts = pd.date_range("2025-01-01", periods=5, freq="1h", tz="UTC")

    def flat(px: float) -> pd.DataFrame:
        return pd.DataFrame({"ts": ts, "open": px, "high": px, "low": px, "close": px,
                             "volume": 1e9})

    from backtester.data.feed import MarketFrames

    index = flat(50_000.0)
    data = {perp: MarketFrames(ohlcv=flat(50_000.0), index=index),
            put: MarketFrames(ohlcv=flat(0.1), index=index)}
    r = backtester.run(PerpAndPut, data=data, profile="deribit", funding="zero",
                       instruments={s: instrument_from_symbol(s, **ZERO_FEES) for s in data},
                       slippage_bps=0, margin_check="close", collateral={"BTC": 0.2})
    assert len(r.fills) == 2
    m = (50_750 + math.sqrt(50_750**2 + 4 * 1.2 * 125_000)) / 2.4
    dist = r.equity["distance_to_liquidation"]
    assert list(dist.iloc[1:]) == pytest.approx([m / 50_000 - 1] * 4, rel=1e-9)
