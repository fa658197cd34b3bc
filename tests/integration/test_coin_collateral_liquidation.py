"""Liquidations of books backed by coin collateral, and bankruptcy prices at the trigger (issue 14
item 1).

Rules under test (docs/margin.md, "Liabilities and coin collateral"):

* in a USD pool (bybit, okx, portfolio mode) a negative balance is a liability against the
  pool's other collateral; when the pool is liquidated, the liability is repaid by selling that
  collateral at its index in the triggering scenario, moved against the account by the
  liquidation slippage (other stablecoins first, then coins by value); the insurance fund covers
  only what the whole pool cannot;
* the bankruptcy price is the price of the liquidated leg at which the pool's margin balance is
  zero when its underlying moves — the leg, the other legs on that underlying and the collateral
  in that coin all move together from the triggering prices; everything else is held there.

Profile ``bybit``: BTC haircut 0.95, maintenance 0.5 % (its BTC/USDT tier), liquidation
slippage 0.5 %; instruments have zero fees so the arithmetic stays readable.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

ZERO_FEES = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def bars(prices: list[float], *, lows: list[float] | None = None) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=len(prices), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": prices, "high": prices,
                         "low": lows if lows is not None else prices, "close": prices,
                         "volume": 1e9})


class Scripted(Strategy):
    """Open ``legs`` at the first bar (fills at the second bar's open); close everything at
    bar ``close_at`` (never when -1)."""

    legs: str = ""
    leverage: float = 10.0
    close_at: int = -1

    def on_start(self, ctx):
        self.k = -1

    def on_bar(self, ctx):
        self.k += 1
        if self.k == 0:
            for leg in self.legs.split(";"):
                sym, qty = leg.rsplit("=", 1)
                ctx.set_leverage(sym, self.leverage)
                q = Decimal(qty)
                t = ctx.buy(sym, q) if q > 0 else ctx.sell(sym, -q)
                assert t.is_accepted, t.rejection
        elif self.k == self.close_at:
            ctx.close_all()


def run(data, legs, *, collateral, margin_check="close", close_at=-1, profile="bybit"):
    insts = {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
    return backtester.run(Scripted, data=data, instruments=insts, funding="zero",
                          collateral=collateral, margin_check=margin_check, slippage_bps=0,
                          profile=profile, params={"legs": legs, "close_at": close_at})


def liquidation(result):
    (ev,) = [e for e in result.events if e["event"] == "PositionLiquidated"]
    return ev


def balances(result) -> dict[str, Decimal]:
    return {a: Decimal(v) for a, v in result.state["collateral_exact"].items()}


def test_btc_collateral_backing_a_btc_long_is_sold_before_the_fund_pays():
    # 1 BTC of collateral (50,000 USD, margin value 0.95 x 50,000 = 47,500), long 1 BTC perp
    # @ 50,000 at 10x. BTC crashes to 20,000 in one bar:
    #   margin balance = 0.95 x 20,000 + (20,000 - 50,000) = -11,000 <= MM -> liquidate.
    # Bankruptcy price: the collateral moves with the perp,
    #   0.95 P + (P - 50,000) = 0  ->  P = 50,000 / 1.95 = 25,641.0256..., on the tick rounded
    #   against the account (down for a long): 25,641.02.
    # The market fill 20,000 x (1 - 0.5 %) = 19,900 is beyond it: takeover at 25,641.02,
    #   realized -24,358.98 USDT; the fund bears the gap (25,641.02 - 19,900) x 1 = 5,741.02.
    # The USDT liability is repaid with the BTC at 20,000 x (1 - 0.5 %) = 19,900: all 1 BTC
    #   gives 19,900, USDT -4,458.98, which the fund covers. The account lost everything
    #   (-100 %), not -60 % (the fund used to reset the USDT while the BTC was still held).
    data = {BTC: bars([50_000.0] * 3 + [20_000.0] * 3)}
    r = run(data, f"{BTC}=1", collateral={"BTC": 1})
    ev = liquidation(r)
    steps = [(s["action"], s["symbol"], s["qty"], s["price"], s["realized_pnl"])
             for s in ev["steps"]]
    assert steps == [
        ("takeover", BTC, Decimal(-1), Decimal("25641.02"), Decimal("-24358.98")),
        ("collateral_sale", "BTC", Decimal(-1), Decimal(19_900), Decimal(19_900)),
        ("insurance_cover", "", Decimal(0), Decimal(0), Decimal("4458.98")),
    ]
    assert ev["insurance_flow"] == {"USDT": Decimal("-10200")}  # -5,741.02 - 4,458.98
    assert ev["is_bankrupt"] is True
    assert balances(r) == {"BTC": Decimal(0), "USDT": Decimal(0)}
    assert r.equity["equity"].iloc[-1] == 0.0
    assert r.metrics["total_return"] == -1.0
    assert any(w.startswith("liability assumption:") for w in r.warnings)
    kinds = r.journal[r.journal["kind"] == "collateral_conversion"]
    assert list(zip(kinds["asset"], kinds["amount"].map(Decimal), strict=True)) == [
        ("BTC", Decimal(-1)), ("USDT", Decimal(19_900))]


def test_btc_collateral_repays_an_eth_loss_and_the_rest_stays_with_the_account():
    # 0.1 BTC collateral (BTC flat at 50,000: 5,000 USD, margin value 4,750), long 10 ETH @
    # 2,500 at 10x. ETH falls to 1,900: margin balance 4,750 - 6,000 = -1,250 -> liquidate.
    # ETH's bankruptcy price (the BTC does not move with ETH): 4,750 + 10 (P - 2,500) = 0
    #   -> P = 2,025; the market 1,900 x 0.995 = 1,890.5 is beyond it: takeover at 2,025,
    #   realized -4,750 USDT; the fund bears (2,025 - 1,890.5) x 10 = 1,345.
    # The 4,750 USDT liability is repaid with BTC at 50,000 x 0.995 = 49,750:
    #   4,750 / 49,750 = 0.0954773869346... BTC, rounded up to 1e-12: 0.095477386935 BTC,
    #   which gives 0.095477386935 x 49,750 = 4,750.00000001625 USDT.
    # Left: 0.1 - 0.095477386935 = 0.004522613065 BTC and 0.00000001625 USDT; equity at the
    # last bar = 0.004522613065 x 50,000 + 0.00000001625 = 226.13065326625 (not 5,000: the fund
    # used to pay the 4,750 while the account kept its 0.1 BTC).
    data = {BTC: bars([50_000.0] * 6), ETH: bars([2_500.0] * 3 + [1_900.0] * 3)}
    r = run(data, f"{ETH}=10", collateral={"BTC": 0.1})
    ev = liquidation(r)
    assert [s["action"] for s in ev["steps"]] == ["takeover", "collateral_sale"]
    takeover, sale = ev["steps"]
    assert takeover["price"] == Decimal(2_025)
    assert takeover["realized_pnl"] == Decimal(-4_750)
    assert sale["qty"] == Decimal("-0.095477386935")
    assert sale["price"] == Decimal(49_750)
    assert sale["realized_pnl"] == Decimal("4750.00000001625")
    assert ev["insurance_flow"] == {"USDT": Decimal(-1_345)}
    assert balances(r) == {"BTC": Decimal("0.004522613065"), "USDT": Decimal("0.00000001625")}
    assert abs(r.equity["equity"].iloc[-1] - 226.13065326625) < 1e-9


def test_a_liability_against_coin_collateral_is_liquidated_when_the_pool_runs_out():
    # 1 BTC collateral, long 0.5 BTC @ 50,000, closed by the strategy at 40,000:
    #   realized 0.5 x (40,000 - 50,000) = -5,000 USDT: a 5,000 USDT loan against the BTC.
    # Margin balance at 40,000: 0.95 x 40,000 - 5,000 = 33,000: healthy, nothing is sold.
    # BTC then falls to 5,000: 0.95 x 5,000 - 5,000 = -250 <= 0 with a liability and no
    # position: the pool is liquidated. The BTC is sold at 5,000 x 0.995 = 4,975, the USDT
    # becomes -25 and the fund covers the 25.
    data = {BTC: bars([50_000.0] * 3 + [40_000.0] * 3 + [5_000.0] * 2)}
    r = run(data, f"{BTC}=0.5", collateral={"BTC": 1}, close_at=3)
    mid = r.equity.loc[pd.Timestamp("2025-01-01 06:00", tz="UTC")]
    assert mid["margin_balance"] == 33_000.0
    ev = liquidation(r)
    assert [(s["action"], s["qty"], s["price"], s["realized_pnl"]) for s in ev["steps"]] == [
        ("collateral_sale", Decimal(-1), Decimal(4_975), Decimal(4_975)),
        ("insurance_cover", Decimal(0), Decimal(0), Decimal(25)),
    ]
    assert ev["is_bankrupt"] is True
    assert balances(r) == {"BTC": Decimal(0), "USDT": Decimal(0)}


def test_the_bankruptcy_price_is_taken_at_the_triggering_low_not_at_the_close():
    # 5,500 USDT, long 1 BTC @ 50,000 at 10x. One bar's low is 44,000, its close 50,000
    # (intrabar check): at the low the margin balance is 5,500 - 6,000 = -500 -> liquidate.
    # Bankruptcy price at that scenario: 5,500 + (P - 50,000) = 0 -> P = 44,500; the market
    # 44,000 x 0.995 = 43,780 is beyond it: the position is taken over at 44,500 (loss 5,500,
    # the whole balance) and the fund bears (44,500 - 43,780) x 1 = 720 as the takeover gap —
    # not a liquidation order at 43,780 followed by a 720 insurance cover (the bankruptcy price
    # used to be solved from the close's margin balance: 50,000 - 11,500 = 38,500).
    lows = [50_000.0] * 3 + [44_000.0] + [50_000.0]
    data = {BTC: bars([50_000.0] * 5, lows=lows)}
    r = run(data, f"{BTC}=1", collateral={"USDT": 5_500}, margin_check="intrabar")
    ev = liquidation(r)
    assert [(s["action"], s["price"], s["realized_pnl"]) for s in ev["steps"]] == [
        ("takeover", Decimal(44_500), Decimal(-5_500))]
    assert ev["insurance_flow"] == {"USDT": Decimal(-720)}
    assert ev["trigger_price"] == {BTC: 44_000.0}
    assert balances(r) == {"USDT": Decimal(0)}


def test_per_asset_pools_do_not_sell_other_pools_collateral():
    # binance-usdm keeps one pool per settle asset: BTC held in the account does not back a
    # USDT-settled perp, so a USDT deficit goes to the fund and the BTC stays (margin-rules §1.2).
    # 5,500 USDT + 1 BTC, long 1 BTC perp @ 50,000 at 10x, crash to 40,000:
    #   USDT pool: 5,500 - 10,000 < 0 -> liquidate; bankruptcy price 50,000 - 5,500 = 44,500,
    #   takeover there (loss 5,500), USDT 0; the BTC balance is untouched.
    data = {BTC: bars([50_000.0] * 3 + [40_000.0] * 2)}
    r = run(data, f"{BTC}=1", collateral={"USDT": 5_500, "BTC": 1}, profile="binance-usdm")
    ev = liquidation(r)
    assert [s["action"] for s in ev["steps"]] == ["takeover"]
    assert ev["steps"][0]["price"] == Decimal(44_500)
    assert balances(r) == {"BTC": Decimal(1), "USDT": Decimal(0)}
