"""Distance to liquidation per bar: each underlying alone (others at their marks) and all together,
down and up, from the margin kernel; the headline is the nearest, with which move it is.

Flat hourly prices make every bar's distance the same number, worked by hand below from the
book (flat 0.5 % maintenance, no fees, no slippage, funding zero).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol
from tests.integration.books import two_ways

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
FLAT = [{"tier": 1, "minNotional": 0, "maxNotional": 1e12, "maintenanceMarginRate": 0.005,
         "maxLeverage": 100}]


def flat(price: float, n: int = 6) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": price, "high": price, "low": price, "close": price,
                         "volume": 1e9})


class Hold(Strategy):
    """Holds the targets from the first bar on (``btc``, ``eth``: signed contracts)."""

    btc: str = "1"
    eth: str = "0"

    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            for sym, q in ((BTC, self.btc), (ETH, self.eth)):
                if Decimal(q):
                    ctx.set_leverage(sym, 50.0)
                    ctx.target(sym, Decimal(q))


def run(collateral: float, **params: str) -> backtester.BacktestResult:
    syms = [BTC, ETH]
    insts = {s: instrument_from_symbol(s, taker_rate=Decimal(0), maker_rate=Decimal(0))
             for s in syms}

    def go() -> backtester.BacktestResult:
        return backtester.run(Hold, data={BTC: flat(20_000.0), ETH: flat(2_000.0)},
                              instruments=insts, funding="zero", profile="binance-usdm",
                              tiers={s: FLAT for s in syms}, slippage_bps=0,
                              collateral={"USDT": collateral}, params=params)

    return two_ways(go)


def test_hedged_pair_each_alone_all_together_and_the_headline() -> None:
    # long 1 BTC @ 20,000, short 10 ETH @ 2,000 (N = 20,000 each), collateral C = 1,000 USDT,
    # MM = 0.5 % of each notional (100 + 100).
    # BTC alone by x: 1,000 + 20,000x - 100(1 + x) - 100 = 0 -> x = -800 / 19,900 = -4.0201 %;
    #   up: 800 + 19,900x > 0 for every x > 0 -> none.
    # ETH alone by x: 1,000 - 20,000x - 100 - 100(1 + x) = 0 -> x = 800 / 20,100 = +3.9801 %;
    #   down: none.
    # all by x: PnLs cancel, 1,000 - 200(1 + x) = 0 -> x = +400 %; down: none.
    # headline: the nearest, ETH up +3.9801 % (the old all-together distance saw only +400 %).
    r = run(1_000.0, btc="1", eth="-10")
    eq = r.equity.iloc[1:]  # from the bar after the fills
    assert np.allclose(eq["distance_BTC_down"], -800 / 19_900, rtol=1e-12)
    assert np.isinf(eq["distance_BTC_up"]).all()
    assert np.allclose(eq["distance_ETH_up"], 800 / 20_100, rtol=1e-12)
    assert np.isinf(eq["distance_ETH_down"]).all()
    assert np.allclose(eq["distance_all_up"], 4.0, rtol=1e-12)
    assert np.isinf(eq["distance_all_down"]).all()
    assert np.allclose(eq["distance_to_liquidation"], 800 / 20_100, rtol=1e-12)
    assert r.metrics["min_distance_to_liquidation"] == pytest.approx(800 / 20_100, rel=1e-12)
    assert r.metrics["min_distance_move"] == "ETH up"


def test_single_long_and_no_position() -> None:
    # long 1 BTC @ 20,000 with 1,000 USDT: 1,000 + 20,000x - 100(1 + x) = 0
    # -> x = -900 / 19,900 = -4.5226 %; ETH (not held) alone moves nothing: none either way;
    # all together = BTC alone here
    r = run(1_000.0, btc="1")
    eq = r.equity.iloc[1:]
    assert np.allclose(eq["distance_BTC_down"], -900 / 19_900, rtol=1e-12)
    assert np.allclose(eq["distance_all_down"], -900 / 19_900, rtol=1e-12)
    assert np.isinf(eq[["distance_BTC_up", "distance_ETH_down", "distance_ETH_up"]]).all().all()
    assert r.metrics["min_distance_move"] == "BTC down"
    # the first bar's close, before the fill at the next open, holds nothing: no distance
    assert np.isinf(r.equity["distance_to_liquidation"].iloc[0])


def test_a_short_beyond_the_search_is_infinite() -> None:
    # short 0.01 BTC against 1,000,000 USDT: 1,000,000 - 200x - (1 + x) = 0 needs x ~ +4,975
    # (far beyond +1,000 %): no distance at all
    r = run(1_000_000.0, btc="-0.01")
    assert np.isinf(r.equity["distance_to_liquidation"]).all()
    assert r.metrics["min_distance_to_liquidation"] is None
    assert r.metrics["min_distance_move"] is None
