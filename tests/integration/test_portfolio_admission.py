"""Portfolio-margin admission counts the working orders of a hedge (issue 14 item 2).

Open-order rule (docs/margin.md, "Portfolio margin: admission"): in portfolio mode an order is
admitted when the pool's margin balance covers the greater of the portfolio requirement with
every working buy filled and with every working sell filled (the new order included), each
evaluated on the scenario grid with the positions held; ``available`` is the margin balance
minus that greater requirement.

Book: BTC/USDT perp at 50,000 and a dated BTC/USDT future at 50,500, zero fees, 12,000 USDT.
Portfolio grid (Deribit's published parameters, margin-rules §7.4): moves -16 % … +16 %; linear
futures lose ``qty × mark × move``; a unit's initial margin is its worst loss.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

PERP = "BTC/USDT:USDT"
FUT = "BTC/USDT:USDT-251226"
ZERO_FEES = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}


def flat(price: float, n: int = 6) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": price, "high": price, "low": price, "close": price,
                         "volume": 1e9})


class Hedge(Strategy):
    """At the first bar: buy 1 perp and sell 1 future in the same bar; then probe admission
    with a third order while both still work; record what the account says."""

    third: str = ""

    def on_start(self, ctx):
        self.k = -1
        self.seen = {}

    def on_bar(self, ctx):
        self.k += 1
        if self.k == 0:
            self.seen["perp"] = ctx.buy(PERP, 1)
            self.seen["future"] = ctx.sell(FUT, 1)
            self.seen["available"] = ctx.account.available
            if self.third:
                sym, qty = self.third.split("=")
                q = Decimal(qty)
                self.seen["third"] = ctx.buy(sym, q) if q > 0 else ctx.sell(sym, -q)
        if self.k == 2:
            self.seen["im_after"] = ctx.account.initial_margin


def run(mode: str, third: str = ""):
    data = {PERP: flat(50_000.0), FUT: flat(50_500.0)}
    insts = {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
    strat = Hedge(third=third)
    res = backtester.run(strat, data=data, instruments=insts, funding="zero",
                         collateral={"USDT": 12_000}, margin_mode=mode, margin_check="close",
                         slippage_bps=0)
    return res, strat.seen


def test_the_second_leg_of_a_hedge_is_admitted_and_the_requirement_nets():
    # Working buys filled: a naked long perp, worst loss 16 % x 50,000 = 8,000.
    # Working sells filled: a naked short future, worst loss 16 % x 50,500 = 8,080.
    # The greater, 8,080, fits in 12,000: both legs are admitted (the second leg used to be
    # refused: "initial margin 8,080 exceeds available 7,000", the first counted at 10x).
    # available while both work: 12,000 - 8,080 = 3,920.
    # Once both fill, the unit's PnL at move x is 50,000 x - 50,500 x = -500 x: the worst
    # loss is 500 x 16 % = 80 — the requirement nets.
    res, seen = run("portfolio")
    assert seen["perp"].is_accepted
    assert seen["future"].is_accepted
    assert seen["available"] == pytest.approx(3_920.0, abs=1e-6)
    assert len(res.rejections) == 0
    assert sorted(res.fills["symbol"]) == [PERP, FUT]
    assert seen["im_after"] == pytest.approx(80.0, abs=1e-6)
    assert res.metrics["liquidations"] == 0
    assert res.metrics["margin_calls"] == 0


def test_an_order_that_would_not_fit_with_the_working_buys_is_refused():
    # A third order, buy 1 more perp, while both legs work: working buys filled = long 2 perps,
    # worst loss 2 x 8,000 = 16,000 > 12,000 -> refused, naming the open-order rule.
    _res, seen = run("portfolio", third=f"{PERP}=1")
    assert seen["perp"].is_accepted
    assert seen["future"].is_accepted
    rej = seen["third"].rejection
    assert rej is not None
    assert rej.reason == "insufficient_margin"
    assert "16,000.00" in rej.message
    assert "working buys" in rej.message


def test_cross_margin_admits_the_hedge_by_summed_initial_margin():
    # cross (default leverage 10 on bybit): 5,000 + 5,050 = 10,050 <= 12,000, both admitted
    _res, seen = run("cross")
    assert seen["perp"].is_accepted
    assert seen["future"].is_accepted
    assert seen["available"] == pytest.approx(12_000 - 10_050, abs=1e-6)
