"""Collateral pools per profile (backtester.margin.pools), with numbers worked by hand.

binance-usdm keeps one pool per settle asset, binance-coinm and deribit one per coin: a position
draws only on its settle asset's pool, each pool is called and liquidated on its own and its
liquidation closes only its positions. bybit and okx keep one USD pool with haircuts.
Instruments have zero trading fees, bars are flat unless said, liquidation slippage is 0.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

ZERO_FEES = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}


def bars(close: list[float], low: list[float] | None = None) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=len(close), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": close, "high": close, "low": low or close,
                         "close": close, "volume": 1e9})


class OpenAndHold(Strategy):
    """Open ``legs`` ("SYMBOL=QTY@LEVERAGE;...") at the first bar, then hold."""

    legs: str = ""

    def on_bar(self, ctx):
        if getattr(self, "_done", False):
            return
        self._done = True
        for leg in self.legs.split(";"):
            sym, rest = leg.rsplit("=", 1)
            qty, lev = rest.split("@")
            ctx.set_leverage(sym, float(lev))
            q = Decimal(qty)
            (ctx.buy if q > 0 else ctx.sell)(sym, abs(q))


def run(data, legs, *, profile, collateral, check="close", mode="cross"):
    insts = {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
    return backtester.run(OpenAndHold, data=data, instruments=insts, funding="zero",
                          profile=profile, collateral=collateral, margin_check=check,
                          margin_mode=mode,
                          slippage_bps=0, liquidation_slippage_bps=0, params={"legs": legs})


def events(result, name):
    return [e for e in result.events if e["event"] == name]


USDC_PERP, USDT_PERP = "BTC/USDC:USDC", "BTC/USDT:USDT"


def test_usdm_usdc_pool_is_called_and_liquidated_without_the_usdt_balance():
    # binance-usdm, USDT 10,000 and USDC 2,000. Long 1 BTC/USDC:USDC @ 50,000 at 50x (IM
    # 1,000 from the USDC pool; no tier table -> MMR 0.5 %) and 0.1 BTC/USDT:USDT at 10x (IM
    # 500 from the USDT pool; Binance tier 1: MMR 0.4 %).
    # 48,290: USDC pool MB = 2,000 - 1,710 = 290, MM = 0.5 % x 48,290 = 241.45 -> ratio
    #         0.8326 >= 0.8: a margin call of the USDC pool. USDT pool MB = 10,000 - 171 =
    #         9,829, MM = 0.4 % x 4,829 = 19.316. Account: MB 10,119, MM 260.766, ratio 0.8326.
    # 48,200: USDC pool MB = 2,000 - 1,800 = 200 <= MM 241 -> the USDC pool is liquidated
    #         (one USD pool would have MB 12,000 - 1,980 = 10,020: healthy). Binance closes
    #         the USDC perp at 48,200: PnL -1,800, fee 0.3 % (BTC) x 48,200 = 144.6 (below
    #         the pool's 200 left) -> USDC 2,000 - 1,800 - 144.6 = 55.4; USDT untouched.
    prices = [50_000.0] * 3 + [48_290.0] * 2 + [48_200.0] * 2
    data = {USDC_PERP: bars(prices), USDT_PERP: bars(prices)}
    legs = f"{USDC_PERP}=1@50;{USDT_PERP}=0.1@10"
    r = run(data, legs, profile="binance-usdm", collateral={"USDT": 10_000, "USDC": 2_000})

    eq = r.equity
    assert eq["margin_balance"].iloc[3] == pytest.approx(290 + 9_829)
    assert eq["maintenance_margin"].iloc[3] == pytest.approx(241.45 + 19.316)
    assert eq["margin_ratio"].iloc[3] == pytest.approx(241.45 / 290)
    (call,) = events(r, "MarginCalled")
    assert (call["scope"], call["pool"]) == ("pool", "USDC")
    assert call["margin_balance"] == pytest.approx(290)
    assert call["maintenance_margin"] == pytest.approx(241.45)
    assert call["initial_margin"] == pytest.approx(48_290 / 50)

    (liq,) = events(r, "PositionLiquidated")
    assert (liq["scope"], liq["pool"]) == ("pool", "USDC")
    assert liq["margin_ratio_before"] == pytest.approx(241 / 200)
    assert [(s["symbol"], s["qty"], s["fee"]) for s in liq["steps"]] == [
        (USDC_PERP, Decimal("-1"), Decimal("144.6"))]
    assert Decimal(r.state["collateral_exact"]["USDC"]) == Decimal("55.4")
    assert Decimal(r.state["collateral_exact"]["USDT"]) == Decimal("10000")
    assert [(p["symbol"], p["size"]) for p in r.state["positions"]] == [(USDT_PERP, 0.1)]
    assert r.meta["stopped_reason"] is None

    # the same book in one USD pool (bybit): the USDT balance backs the USDC perp
    one = run(data, legs, profile="bybit", collateral={"USDT": 10_000, "USDC": 2_000})
    assert one.metrics["liquidations"] == 0
    assert one.equity["margin_balance"].iloc[-1] == pytest.approx(10_020)


def test_coinm_eth_crash_liquidates_the_eth_pool_only():
    # binance-coinm (BTC/USD:BTC: the profile's table, MMR 0.4 % below 5 BTC; ETH/USD:ETH: no
    # table, flat MMR 0.5 %; liquidation fee 0.5 %), intrabar check. BTC 0.1 and ETH 1.27.
    # Long 100 BTC/USD:BTC (face 10,000 USD) @ 50,000 at 10x: BTC pool. Long 1,000
    # ETH/USD:ETH (face 10,000 USD) @ 2,000 at 10x: ETH pool.
    # Crash bar: ETH low 1,600 (close 1,650), BTC low 49,000 (close 50,000).
    #   ETH pool at its low: PnL = 10,000 x (1/2,000 - 1/1,600) = -1.25 ETH -> MB 0.02 ETH;
    #   MM = 0.5 % x 10,000 / 1,600 = 0.03125 ETH -> liquidated at 1,600 (ratio 1.5625). The
    #   bankruptcy price 1 / (1/2,000 + 1.27/10,000) = 1,594.9 is below it: a liquidation
    #   order, PnL -1.25 ETH, fee min(0.5 % x 6.25 = 0.03125, 0.02 left) = 0.02 -> ETH 0.
    #   BTC pool at its low: 0.1 + 10,000 x (1/50,000 - 1/49,000) = 0.095918 BTC, MM 0.4 % x
    #   10,000 / 49,000 BTC: healthy, its position and balance untouched. (Valued together,
    #   0.1 BTC = 4,900 USD would have covered the ETH shortfall of 0.01125 ETH = 18 USD.)
    #   After the liquidation the account is the BTC pool: at the low MB = 0.095918 x 49,000
    #   = 4,700 USD, MM = 0.4 % x 10,000 = 40 USD.
    btc, eth = "BTC/USD:BTC", "ETH/USD:ETH"
    data = {btc: bars([50_000.0] * 6, [50_000.0] * 3 + [49_000.0] + [50_000.0] * 2),
            eth: bars([2_000.0] * 3 + [1_650.0] * 3, [2_000.0] * 3 + [1_600.0] + [1_650.0] * 2)}
    r = run(data, f"{btc}=100@10;{eth}=1000@10", profile="binance-coinm",
            collateral={"BTC": 0.1, "ETH": 1.27}, check="intrabar")
    (liq,) = events(r, "PositionLiquidated")
    assert (liq["scope"], liq["pool"]) == ("pool", "ETH")
    assert liq["trigger_price"] == {eth: 1_600.0}
    assert liq["margin_ratio_before"] == pytest.approx(0.03125 / 0.02)
    (step,) = liq["steps"]
    assert (step["action"], step["symbol"], step["qty"]) == ("liquidation_order", eth,
                                                             Decimal("-1000"))
    assert step["realized_pnl"] == Decimal("-1.25")
    assert step["fee"] == Decimal("0.02")
    assert Decimal(r.state["collateral_exact"]["ETH"]) == 0
    assert Decimal(r.state["collateral_exact"]["BTC"]) == Decimal("0.1")
    assert [(p["symbol"], p["size"]) for p in r.state["positions"]] == [(btc, 100.0)]
    assert r.equity["margin_balance"].iloc[3] == pytest.approx(4_700)
    assert r.equity["maintenance_margin"].iloc[3] == pytest.approx(40)
    # distance to liquidation before the crash (bars 1-2), every underlying moved by x, each
    # pool on its own (coin balance + 10,000 x (1/entry - 1/m) <= MMR x 10,000 / m):
    #   ETH pool (0.5 %): m <= 10,050 / (1.27 + 10,000 / 2,000) = 1,602.87 -> x = -19.86 %
    #   BTC pool (0.4 %): m <= 10,040 / (0.1 + 10,000 / 50,000) = 33,466.7 -> x = -33.07 %
    # the nearest is the ETH pool's (one pool for both would be further still)
    dist = r.equity["distance_to_liquidation"].to_numpy()
    assert dist[1] == pytest.approx(10_050 / 6.27 / 2_000 - 1, rel=1e-9)
    assert dist[2] == dist[1]


@pytest.mark.parametrize("mode", ["cross", "isolated"])
def test_orders_are_admitted_against_their_own_pool(mode):
    # USDT 10,000 and USDC 400. Buy 0.1 BTC/USDC:USDC @ 50,000 at 10x: IM 500 USDC.
    # binance-usdm: the USDC pool has 400 -> insufficient margin in the USDC pool; 0.08 BTC
    # (IM 400) is admitted. bybit: one USD pool, the USDT backs it -> admitted.
    data = {USDC_PERP: bars([50_000.0] * 3)}
    coll = {"USDT": 10_000, "USDC": 400}
    usdm = run(data, f"{USDC_PERP}=0.1@10", profile="binance-usdm", collateral=coll, mode=mode)
    assert list(usdm.rejections["reason"]) == ["insufficient_margin"]
    assert "available 400.00 USD in the USDC pool" in usdm.rejections["message"].iloc[0]
    assert usdm.state["positions"] == []
    fits = run(data, f"{USDC_PERP}=0.08@10", profile="binance-usdm", collateral=coll, mode=mode)
    assert fits.rejections.empty
    bybit = run(data, f"{USDC_PERP}=0.1@10", profile="bybit", collateral=coll, mode=mode)
    assert bybit.rejections.empty
    assert bybit.equity["initial_margin"].iloc[-1] == pytest.approx(500)


@pytest.mark.parametrize("profile", ["bybit", "okx"])
def test_unified_profiles_pool_every_asset_with_haircuts(profile):
    # One USD pool: BTC 0.2 @ 50,000 x haircut 0.95 = 9,500 plus USDC 1,000 back a USDT perp.
    # Long 4 BTC/USDT:USDT @ 50,000 at 20x: IM 10,000 <= 10,500 (MMR 0.5 %).
    # Crash to 48,000 (BTC collateral falls too): MB = 0.2 x 48,000 x 0.95 + 1,000 - 8,000
    # = 2,120; MM = 0.5 % x 192,000 = 960 -> ratio 0.4528, no call.
    # At 47,000: MB = 8,930 + 1,000 - 12,000 = -2,070 <= MM -> liquidated (one pool).
    data = {USDT_PERP: bars([50_000.0] * 3 + [48_000.0] * 2 + [47_000.0] * 2)}
    r = run(data, f"{USDT_PERP}=4@20", profile=profile, collateral={"BTC": 0.2, "USDC": 1_000})
    assert r.rejections.empty
    assert r.equity["margin_balance"].iloc[3] == pytest.approx(2_120)
    assert r.equity["margin_ratio"].iloc[3] == pytest.approx(960 / 2_120)
    (liq,) = events(r, "PositionLiquidated")
    assert (liq["scope"], liq["pool"]) == ("account", None)
    # the same collateral on binance-usdm: neither BTC nor USDC backs a USDT perp
    usdm = run(data, f"{USDT_PERP}=4@20", profile="binance-usdm",
               collateral={"BTC": 0.2, "USDC": 1_000})
    assert list(usdm.rejections["reason"]) == ["insufficient_margin"]


def test_distance_to_liquidation_is_the_nearest_pools():
    # The book of the test above at 50,000 (bars 1-2, both perps open) and 48,290 (bars 3-4).
    # Every underlying (BTC) moves by x; each pool is liquidated on its own:
    #   USDC pool: 2,000 + 1 x (m - 50,000) <= 0.5 % x m  <=>  m <= 48,000 / 0.995
    #              = 48,241.2060... -> x = 48,241.206 / 50,000 - 1 = -3.5176 % at 50,000,
    #              and 48,241.206 / 48,290 - 1 = -0.1010 % at 48,290;
    #   USDT pool: 10,000 + 0.1 x (m - 50,000) <= 0.4 % x 0.1 x m  <=>  m <= -5,000 / 0.0996:
    #              never.
    # One pool for both would need 12,000 + 1.1 x (m - 50,000) <= 0.005 m + 0.0004 m, i.e.
    # m <= 43,000 / 1.0946 = 39,283.8 (-21.4 %): the pools make it six times nearer.
    # After the USDC pool's liquidation (bar 5 on) only the USDT leg is left: no distance.
    prices = [50_000.0] * 3 + [48_290.0] * 2 + [48_200.0] * 2
    data = {USDC_PERP: bars(prices), USDT_PERP: bars(prices)}
    legs = f"{USDC_PERP}=1@50;{USDT_PERP}=0.1@10"
    r = run(data, legs, profile="binance-usdm", collateral={"USDT": 10_000, "USDC": 2_000})
    dist = r.equity["distance_to_liquidation"].to_numpy()
    m_liq = 48_000 / 0.995
    assert dist[0] == float("inf")  # nothing held yet
    assert dist[1] == pytest.approx(m_liq / 50_000 - 1, rel=1e-9)
    assert dist[2] == pytest.approx(m_liq / 50_000 - 1, rel=1e-9)
    assert dist[3] == pytest.approx(m_liq / 48_290 - 1, rel=1e-9)
    assert dist[5] == float("inf")
    assert r.metrics["min_distance_to_liquidation"] == pytest.approx(1 - m_liq / 48_290,
                                                                     rel=1e-9)


class Idle(Strategy):
    """Holds nothing (only the collateral)."""

    def on_bar(self, ctx):
        pass


def test_a_flat_account_holding_coins_is_revalued_every_bar():
    # bybit, one USD pool: 1 BTC (haircut 0.95) and 100 USDT, no position ever. BTC at
    # 50,000 -> 40,000 -> 30,000 -> 35,000: equity = BTC + 100, margin balance = 0.95 BTC
    # + 100 (the coin's fall lowers both with no position open)
    prices = [50_000.0, 40_000.0, 30_000.0, 35_000.0]
    r = backtester.run(Idle, data={USDT_PERP: bars(prices)}, funding="zero", profile="bybit",
                       instruments={USDT_PERP: instrument_from_symbol(USDT_PERP)},
                       collateral={"BTC": 1, "USDT": 100})
    eq = r.equity
    assert eq["equity"].tolist() == pytest.approx([p + 100 for p in prices])
    assert eq["margin_balance"].tolist() == pytest.approx([0.95 * p + 100 for p in prices])
    assert eq["collateral_moving"].tolist() == pytest.approx([0.95 * p for p in prices])
    assert r.metrics["total_return"] == pytest.approx(35_100 / 50_100 - 1)
