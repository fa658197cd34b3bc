"""Capital-efficiency metrics on hand-built runs."""

from __future__ import annotations

import json
import math
from decimal import Decimal

from tests.builders import BTC, Scripted, bars, flat, perp, run


def test_capital_velocity_of_a_known_trade_sequence():
    # Flat price 100 for 25 hours (24 h span). Buy 10 at bar 1's open and sell 10 at bar 3's
    # open: traded notional 2 x 10 x 100 = 2,000 USD. No fees, no price move: the margin balance
    # stays 10,000. Velocity = 2,000 / 10,000 x 365 / 1 day = 73 (per year).
    actions = {0: lambda ctx: ctx.buy(BTC, 10), 2: lambda ctx: ctx.sell(BTC, 10)}
    res = run(Scripted(actions), {BTC: flat(25)}, collateral={"USDT": 10_000},
              instruments={BTC: perp(taker_rate=Decimal(0), maker_rate=Decimal(0))})
    m = res.metrics
    assert m["traded_notional"] == 2_000.0
    assert m["capital_velocity"] == 73.0
    # IM while held: 10 x 100 / 20 (default Bybit leverage 10? no: the profile default) > 0
    assert m["average_initial_margin"] > 0
    assert m["margin_utilization_max"] == m["average_initial_margin"] / 10_000


def test_return_on_margin_and_drag():
    # Long 1 @ 100 (IM 100 / 10x = 10 at the default leverage of the Bybit profile), price
    # 100 -> 110 with the profile's taker fee 0.055 %: PnL = 10 - 0.055 - 0 = 9.945 (the
    # position is still open: fee paid once). Return on peak IM = 9.945 / IM_peak, IM at 110
    # = 11.
    rows = [(100, 100, 100, 100)] * 2 + [(110, 110, 110, 110)] * 3
    res = run(Scripted({0: lambda ctx: ctx.buy(BTC, 1)}), {BTC: bars(rows)},
              collateral={"USDT": 1_000}, instruments={BTC: perp()})
    m = res.metrics
    assert math.isclose(m["peak_initial_margin"], 11.0)
    assert math.isclose(m["return_on_peak_margin"], 9.945 / 11.0)
    # fee drag: fees / gross return before costs = 0.055 / 10
    assert math.isclose(m["fee_drag"], 0.055 / 10.0)
    assert m["funding_drag"] == 0.0


def test_metrics_of_a_run_without_trades_are_defined(tmp_path):
    res = run(Scripted({}), {BTC: flat(30)}, instruments={BTC: perp()})
    path = res.write(tmp_path / "r")
    text = (path / "metrics.json").read_text()
    assert "NaN" not in text
    assert "Infinity" not in text
    m = json.loads(text)
    assert m["traded_notional"] == 0.0
    assert m["capital_velocity"] == 0.0
    assert m["return_on_average_margin"] is None  # no margin was ever used: undefined, not NaN
    assert m["margin_utilization_max"] == 0.0
    assert m["idle_collateral_min"] == 100_000.0
