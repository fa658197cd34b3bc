"""Scripted cross vs isolated scenarios with numbers worked by hand.

Instruments have zero trading fees so the hand arithmetic stays readable; bars are flat
(open = high = low = close) and margin is checked at closes, so every number below is exact.
Profile ``bybit``: maintenance rate 0.5 % (no tier table given), liquidation fee 0.55 %,
BTC/ETH collateral haircut 0.95.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

ZERO_FEES = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}


def flat_bars(prices: list[float], start: str = "2025-01-01") -> pd.DataFrame:
    ts = pd.date_range(start, periods=len(prices), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": prices, "high": prices, "low": prices,
                         "close": prices, "volume": 1e9})


class OpenAndHold(Strategy):
    """Open the given positions at the first bar (fills at the second bar's open), then hold."""

    legs: str = ""  # "SYMBOL:QTY;SYMBOL:QTY" signed quantities
    leverage: float = 10.0

    def on_bar(self, ctx):
        if getattr(self, "_done", False):
            return
        self._done = True
        for leg in self.legs.split(";"):
            sym, qty = leg.rsplit("=", 1)
            ctx.set_leverage(sym, self.leverage)
            q = Decimal(qty)
            t = ctx.buy(sym, q) if q > 0 else ctx.sell(sym, -q)
            assert t.is_accepted, t.rejection


def run_book(data, legs, *, collateral, mode, leverage=10.0, instruments=None):
    insts = instruments or {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
    return backtester.run(OpenAndHold, data=data, instruments=insts, funding="zero",
                          collateral=collateral, margin_mode=mode, margin_check="close",
                          slippage_bps=0, params={"legs": legs, "leverage": leverage})


def test_correlated_crash_liquidates_cross_while_isolated_loses_only_the_weak_leg():
    # Long 1 BTC @ 50,000 and 10 ETH @ 2,500 at 10x: IM 5,000 + 2,500 = 7,500 <= 9,200.
    # Crash bar: BTC 46,000 (-4,000), ETH 1,990 (-5,100).
    # Cross:    MB = 9,200 - 4,000 - 5,100 = 100; MM = 0.5% x (46,000 + 19,900) = 329.5
    #           -> MB <= MM: the account is liquidated (both legs closed).
    # Isolated: BTC leg 5,000 - 4,000 = 1,000 > MM 230 -> survives;
    #           ETH leg 2,500 - 5,100 < 0 -> liquidated, loss capped at its 2,500.
    data = {"BTC/USDT:USDT": flat_bars([50_000.0] * 3 + [46_000.0] * 3),
            "ETH/USDT:USDT": flat_bars([2_500.0] * 3 + [1_990.0] * 3)}
    legs = "BTC/USDT:USDT=1;ETH/USDT:USDT=10"
    cross = run_book(data, legs, collateral={"USDT": 9_200}, mode="cross")
    iso = run_book(data, legs, collateral={"USDT": 9_200}, mode="isolated")

    assert cross.metrics["liquidations"] == 1
    assert cross.state["positions"] == []
    assert iso.metrics["liquidations"] == 1
    held = {p["symbol"]: p for p in iso.state["positions"]}
    assert list(held) == ["BTC/USDT:USDT"]
    # isolated wallet: 9,200 minus exactly the ETH allocation (no trading fees); the deficit
    # of 5,100 - 2,500 + liquidation fee is covered by the insurance fund
    assert Decimal(iso.state["collateral_exact"]["USDT"]) == Decimal("6700")
    liq = next(e for e in iso.events if e["event"] == "PositionLiquidated")
    assert liq["trigger_price"] == {"ETH/USDT:USDT": 1_990.0}
    # the mark (1,990) is beyond the leg's bankruptcy price (2,500 - 2,500 / 10 = 2,250): the
    # position is taken over at 2,250 and the fund bears (2,250 - 1,990 x 0.995) x 10
    (takeover,) = [s for s in liq["steps"] if s["action"] == "takeover"]
    assert takeover["price"] == Decimal("2250")
    assert liq["insurance_flow"]["USDT"] == -(Decimal("2250") - Decimal("1980.05")) * 10


def test_hedged_book_survives_crash_in_cross_but_isolated_liquidates_a_leg():
    # Long 1 BTC perp @ 50,000, short 1 BTC future @ 50,500, 20x: IM 2,500 + 2,525 = 5,025.
    # Crash: perp 40,000 (-10,000), future 40,300 (+10,200).
    # Cross:    MB = 5,100 - 10,000 + 10,200 = 5,300; MM = 0.5% x 80,300 = 401.5 -> healthy.
    # Isolated: perp leg 2,500 - 10,000 < MM -> liquidated; the future leg keeps its gain.
    fut = "BTC/USDT:USDT-251226"
    data = {"BTC/USDT:USDT": flat_bars([50_000.0] * 3 + [40_000.0] * 3),
            fut: flat_bars([50_500.0] * 3 + [40_300.0] * 3)}
    legs = f"BTC/USDT:USDT=1;{fut}=-1"
    cross = run_book(data, legs, collateral={"USDT": 5_100}, mode="cross", leverage=20)
    iso = run_book(data, legs, collateral={"USDT": 5_100}, mode="isolated", leverage=20)

    assert cross.metrics["liquidations"] == 0
    assert len(cross.state["positions"]) == 2
    assert cross.equity["equity"].iloc[-1] == pytest.approx(5_100 - 10_000 + 10_200)
    assert iso.metrics["liquidations"] == 1
    assert [p["symbol"] for p in iso.state["positions"]] == [fut]
    # same requirements either way: cross sums them, it does not net them
    assert cross.equity["initial_margin"].iloc[2] == pytest.approx(50_000 / 20 + 50_500 / 20)


def test_btc_collateral_and_long_eth_hit_together_when_btc_crashes():
    # Collateral 1 BTC @ 50,000, haircut 0.95 -> margin value 47,500. Long 100 ETH @ 2,500 at
    # 10x (IM 25,000). Crash bar: BTC 35,000 and ETH 2,170.
    #   MB = 1 x 35,000 x 0.95 + 100 x (2,170 - 2,500) = 33,250 - 33,000 = 250
    #   MM = 0.5% x 217,000 = 1,085 -> ratio 1,085 / 250 = 4.34 -> liquidated.
    # Had BTC not fallen: MB = 47,500 - 33,000 = 14,500 -> healthy.
    data = {"BTC/USDT:USDT": flat_bars([50_000.0] * 3 + [35_000.0] * 3),
            "ETH/USDT:USDT": flat_bars([2_500.0] * 3 + [2_170.0] * 3)}
    crash = run_book(data, "ETH/USDT:USDT=100", collateral={"BTC": 1}, mode="cross")
    liq = [e for e in crash.events if e["event"] == "PositionLiquidated"]
    assert len(liq) == 1
    assert liq[0]["margin_ratio_before"] == pytest.approx(1_085 / 250)

    calm = {"BTC/USDT:USDT": flat_bars([50_000.0] * 6),
            "ETH/USDT:USDT": data["ETH/USDT:USDT"]}
    held = run_book(calm, "ETH/USDT:USDT=100", collateral={"BTC": 1}, mode="cross")
    assert held.metrics["liquidations"] == 0
    assert held.equity["margin_balance"].iloc[-1] == pytest.approx(14_500)


class CallWatcher(Strategy):
    """Opens 1 BTC long and counts margin calls; de-risks on the call."""

    calls: int = 0

    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            ctx.set_leverage("BTC/USDT:USDT", 20)
            ctx.buy("BTC/USDT:USDT", Decimal(1))

    def on_margin_call(self, ctx, state):
        type(self).calls += 1
        type(self).ratio = state.margin_ratio
        ctx.close("BTC/USDT:USDT", tag="de-risk")


def test_margin_call_reaches_the_strategy_and_its_answer_fills_next_bar():
    # Long 1 @ 50,000, collateral 2,800. At 47,500: MB = 2,800 - 2,500 = 300,
    # MM = 0.5 % x 47,500 = 237.5 -> ratio 0.79 < 0.8: no call. At 47,450: MB = 250,
    # MM = 237.25 -> ratio 0.949 >= 0.8: a margin call (not yet liquidation); the strategy closes
    # and the close fills at the next open (47,450).
    data = {"BTC/USDT:USDT": flat_bars([50_000.0] * 3 + [47_500.0, 47_450.0, 47_450.0, 47_450.0])}
    CallWatcher.calls = 0
    r = backtester.run(CallWatcher, data=data,
                       instruments={"BTC/USDT:USDT": instrument_from_symbol("BTC/USDT:USDT",
                                                                            **ZERO_FEES)},
                       funding="zero", collateral={"USDT": 2_800}, margin_check="close",
                       slippage_bps=0)
    assert CallWatcher.calls == 1
    assert CallWatcher.ratio == pytest.approx(237.25 / 250)
    assert r.metrics["margin_calls"] == 1
    assert r.metrics["liquidations"] == 0
    assert r.state["positions"] == []
    assert Decimal(r.state["collateral_exact"]["USDT"]) == Decimal("2800") - Decimal("2550")


class IsolatedTopUp(Strategy):
    def on_bar(self, ctx):
        step = getattr(self, "step", 0)
        self.step = step + 1
        if step == 0:
            ctx.set_leverage("BTC/USDT:USDT", 20)
            ctx.buy("BTC/USDT:USDT", Decimal(1))
        elif step == 1:
            ctx.add_margin("BTC/USDT:USDT", 1_000)


def test_isolated_margin_can_be_topped_up_and_it_moves_the_liquidation():
    # Isolated 1 BTC @ 50,000 at 20x: allocation 2,500. A fall to 47,700 loses 2,300:
    # 2,500 - 2,300 = 200 < MM 238.5 -> liquidated without the top-up; with 1,000 added the
    # position has 1,200 > 238.5 and survives.
    data = {"BTC/USDT:USDT": flat_bars([50_000.0] * 4 + [47_700.0] * 2)}
    kw = {"data": data, "funding": "zero", "collateral": {"USDT": 10_000}, "margin_mode":
          "isolated", "margin_check": "close", "slippage_bps": 0,
          "instruments": {"BTC/USDT:USDT": instrument_from_symbol("BTC/USDT:USDT", **ZERO_FEES)}}
    topped = backtester.run(IsolatedTopUp, **kw)
    assert topped.metrics["liquidations"] == 0
    assert topped.state["positions"][0]["isolated_margin"] == pytest.approx(3_500)
    plain = backtester.run(OpenAndHold, params={"legs": "BTC/USDT:USDT=1", "leverage": 20}, **kw)
    assert plain.metrics["liquidations"] == 1


@pytest.mark.parametrize("adl", [False, True])
def test_a_bankrupt_deficit_is_recorded_as_insurance_cover_or_adl(adl):
    # Long 1 BTC @ 50,000 at 20x with 2,600 collateral; the price gaps to 45,000 in one bar.
    # Bankruptcy price 50,000 - 2,600 = 47,400: the market (45,000 less 0.5 % slippage =
    # 44,775) is beyond it, so the position is taken over at 47,400: the account ends at 0 and
    # the gap (47,400 - 44,775) x 1 = 2,625 is borne by the insurance fund (or, with adl=True,
    # by auto-deleveraging: the fund is untouched).
    data = {"BTC/USDT:USDT": flat_bars([50_000.0] * 3 + [45_000.0] * 3)}
    r = backtester.run(OpenAndHold, data=data,
                       instruments={"BTC/USDT:USDT": instrument_from_symbol("BTC/USDT:USDT",
                                                                            **ZERO_FEES)},
                       funding="zero", collateral={"USDT": 2_600}, margin_check="close",
                       slippage_bps=0, adl=adl, params={"legs": "BTC/USDT:USDT=1",
                                                        "leverage": 20})
    liq = next(e for e in r.events if e["event"] == "PositionLiquidated")
    assert liq["is_bankrupt"]
    actions = [s["action"] for s in liq["steps"]]
    assert actions == (["takeover", "adl"] if adl else ["takeover"])
    assert Decimal(r.state["collateral_exact"]["USDT"]) == Decimal(0)
    assert liq["insurance_flow"].get("USDT", Decimal(0)) == (Decimal(0) if adl
                                                              else Decimal("-2625"))
