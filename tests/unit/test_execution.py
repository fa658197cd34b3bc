"""Fills along the bar path: next open, limits, stops, gaps, OCO exits, IOC/FOK, fees.

Bars are hourly from 2024-01-01 00:00 UTC. An order placed at step k (the close of bar k) is
eligible from bar k + 1, whose fill is stamped at that bar's close. Slippage is 0 unless set;
fees: the Bybit profile's maker 0.02 %, taker 0.055 % (the instruments state none); tick 0.01.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from backtester.execution import BarPath, match_order
from backtester.orders import Order, OrderType, Side
from tests.builders import BTC, Scripted, bars, run

FLAT = (100.0, 100.0, 100.0, 100.0)


def _fills(rows: list[tuple[float, float, float, float]], actions: dict[int, Any],
           **keys: Any) -> tuple[Scripted, Any]:
    strat = Scripted(actions)
    result = run(strat, {BTC: bars(rows)}, **keys)
    return strat, result


def _one(result: Any) -> pd.Series:
    assert len(result.fills) == 1, result.fills
    return result.fills.iloc[0]


def test_market_fills_at_next_open_plus_slippage() -> None:
    # bar 1 opens 102; 10 bps against a buy: 102 x 1.001 = 102.102 -> tick 0.01 = 102.10
    # taker fee 0.055 % of 102.10 = 0.0561550
    _, result = _fills([FLAT, (102, 103, 101, 102), FLAT], {0: lambda ctx: ctx.buy(BTC, 1)},
                       slippage_bps=10)
    f = _one(result)
    assert f["price_exact"] == "102.1"
    assert f["fee_exact"] == "0.056155000000"
    assert f["liquidity"] == "taker"
    # it happened at the open of bar 1 (01:00); the engine processed it at that bar's close
    assert f["ts"] == pd.Timestamp("2024-01-01 01:00", tz="UTC")
    assert f["step_ts"] == pd.Timestamp("2024-01-01 02:00", tz="UTC")
    assert f["path_time"] == 0.0


def test_market_sell_slips_down() -> None:
    # 102 x (1 - 0.001) = 101.898 -> 101.90
    _, result = _fills([FLAT, (102, 103, 101, 102), FLAT], {0: lambda ctx: ctx.sell(BTC, 1)},
                       slippage_bps=10)
    assert Decimal(_one(result)["price_exact"]) == Decimal("101.9")


def test_volume_share_slippage() -> None:
    # 10 contracts of a 1,000-contract bar = 1 % share; impact 0.1 -> 0.1 % -> 100 x 1.001
    _, result = _fills([FLAT, FLAT, FLAT], {0: lambda ctx: ctx.buy(BTC, 10)},
                       slippage_bps=0, volume_impact=0.1)
    assert Decimal(_one(result)["price_exact"]) == Decimal("100.1")


def test_limit_fills_at_the_limit_as_maker() -> None:
    # buy limit 98; bar 1 o100 h101 l97 c99 touches 98 -> fills at 98, maker 2 bps = 0.0196
    _, result = _fills([FLAT, (100, 101, 97, 99), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1, limit=98)})
    f = _one(result)
    assert Decimal(f["price_exact"]) == Decimal(98)
    assert f["liquidity"] == "maker"
    assert Decimal(f["fee_exact"]) == Decimal("0.0196")


def test_limit_not_touched_stays_working() -> None:
    strat, result = _fills([FLAT, (100, 101, 99, 100), FLAT],
                           {0: lambda ctx: ctx.buy(BTC, 1, limit=98),
                            2: lambda ctx: len(ctx.open_orders(BTC))})
    assert result.fills.empty
    assert strat.out[2] == 1


def test_limit_gapped_through_fills_at_the_open() -> None:
    # buy limit 98; bar 1 opens at 95 (below the limit): filled at the better open, 95
    _, result = _fills([FLAT, (95, 96, 94, 95), FLAT], {0: lambda ctx: ctx.buy(BTC, 1, limit=98)})
    assert Decimal(_one(result)["price_exact"]) == Decimal(95)


def test_stop_market_gap_fills_at_the_open() -> None:
    # buy stop 105; bar 1 opens 110 (gapped over the stop): fills at 110, taker
    _, result = _fills([FLAT, (110, 112, 109, 111), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1, stop=105)})
    f = _one(result)
    assert Decimal(f["price_exact"]) == Decimal(110)
    assert f["liquidity"] == "taker"


def test_sell_stop_gap_down_fills_at_the_open() -> None:
    # long 1 from bar 1's open (100); sell stop 95; bar 3 opens 90 -> filled at 90, loss 10
    _, result = _fills([FLAT, FLAT, FLAT, (90, 91, 88, 89), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1), 1: lambda ctx: ctx.sell(BTC, 1, stop=95)})
    last = result.fills.iloc[-1]
    assert Decimal(last["price_exact"]) == Decimal(90)
    assert last["realized_pnl"] == -10.0


def test_stop_triggers_mid_bar_at_the_stop() -> None:
    # buy stop 105; bar 1 o100 h106 l99 c104 crosses 105 -> fills at 105, taker fee
    # 105 x 0.055 % = 0.05775
    _, result = _fills([FLAT, (100, 106, 99, 104), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1, stop=105)})
    f = _one(result)
    assert Decimal(f["price_exact"]) == Decimal(105)
    assert Decimal(f["fee_exact"]) == Decimal("0.05775")


def test_stop_limit_triggered_inside_its_limit_fills_at_the_stop() -> None:
    # buy stop 105 limit 105.5; bar o100 h107 l99 c106: trigger 105 <= limit -> fills at 105
    _, result = _fills([FLAT, (100, 107, 99, 106), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1, stop=105, limit="105.5")})
    assert Decimal(_one(result)["price_exact"]) == Decimal(105)


def test_stop_limit_gapped_over_waits_for_its_limit() -> None:
    # bar opens 108 above the 105.5 limit; path 108 -> 109 -> 100 -> 101 comes back to 105.5:
    # filled at the limit as maker
    _, result = _fills([FLAT, (108, 109, 100, 101), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1, stop=105, limit="105.5")})
    f = _one(result)
    assert Decimal(f["price_exact"]) == Decimal("105.5")
    assert f["liquidity"] == "maker"


def test_stop_limit_gapped_over_and_never_back_does_not_fill() -> None:
    _, result = _fills([FLAT, (108, 110, 107, 109), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1, stop=105, limit="105.5")})
    assert result.fills.empty


def test_take_profit_fills_at_its_trigger() -> None:
    # long 1 at 100 (bar 1 open); sell take-profit 110; bar 2 o100 h111 l99 c105 -> 110;
    # realized 1 x (110 - 100) = 10
    _, result = _fills([FLAT, FLAT, (100, 111, 99, 105), FLAT], {
        0: lambda ctx: ctx.buy(BTC, 1),
        1: lambda ctx: ctx.order(BTC, "sell", 1, order_type="take_profit", stop_price=110,
                                 reduce_only=True)})
    last = result.fills.iloc[-1]
    assert Decimal(last["price_exact"]) == Decimal(110)
    assert last["realized_pnl"] == 10.0


def test_attached_exits_take_profit_cancels_stop_loss() -> None:
    # entry at bar 1 open 100; exits placed at bar 1's close; bar 2 o100 h111 l99 c105 touches
    # only the take-profit (110): filled there, the stop-loss (95) is cancelled (OCO)
    strat, result = _fills([FLAT, FLAT, (100, 111, 99, 105), (90, 91, 80, 85), FLAT], {
        0: lambda ctx: ctx.buy(BTC, 1, stop_loss=95, take_profit=110),
        3: lambda ctx: len(ctx.open_orders())})
    assert list(result.fills["price"]) == [100.0, 110.0]
    assert not result.fills["is_ambiguous"].any()
    assert strat.out[3] == 0


def test_attached_exits_ambiguous_bar_takes_the_stop() -> None:
    # bar 2 o100 h111 l94 c100 touches both 95 and 110: the worse outcome (stop at 95) is
    # taken, flagged ambiguous, with a warning; realized 95 - 100 = -5
    strat, result = _fills([FLAT, FLAT, (100, 111, 94, 100), FLAT], {
        0: lambda ctx: ctx.buy(BTC, 1, stop_loss=95, take_profit=110),
        3: lambda ctx: (len(ctx.open_orders()), ctx.position(BTC).qty)})
    exit_fill = result.fills.iloc[-1]
    assert Decimal(exit_fill["price_exact"]) == Decimal(95)
    assert bool(exit_fill["is_ambiguous"])
    assert exit_fill["realized_pnl"] == -5.0
    assert any("ambiguous" in w for w in result.warnings)
    assert strat.out[3] == (0, 0.0)


def test_attached_exits_are_reduce_only_children() -> None:
    strat, _ = _fills([FLAT, FLAT, FLAT], {
        0: lambda ctx: ctx.buy(BTC, 1, stop_loss=95, take_profit=110),
        2: lambda ctx: ctx.open_orders()})
    kids = strat.out[2]
    assert {k.order_type for k in kids} == {"stop", "take_profit"}
    assert all(k.is_reduce_only and k.side == "sell" and k.parent_id == 1 for k in kids)


@pytest.mark.parametrize("tif", ["IOC", "FOK"])
def test_ioc_fok_limit_not_filled_at_the_open_is_cancelled(tif: str) -> None:
    # buy limit 98 IOC/FOK; bar 1 opens 100 (not marketable), touches 97 later: cancelled,
    # never filled, not working afterwards
    strat, result = _fills([FLAT, (100, 101, 97, 99), (97, 97, 97, 97), FLAT], {
        0: lambda ctx: ctx.buy(BTC, 1, limit=98, tif=tif),
        1: lambda ctx: len(ctx.open_orders())})
    assert result.fills.empty
    assert strat.out[1] == 0


@pytest.mark.parametrize("tif", ["IOC", "FOK"])
def test_ioc_fok_limit_marketable_at_the_open_fills(tif: str) -> None:
    # buy limit 101; bar 1 opens 100 -> fills at the open
    _, result = _fills([FLAT, (100, 101, 99, 100), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1, limit=101, tif=tif)})
    assert Decimal(_one(result)["price_exact"]) == Decimal(100)


def test_fill_close_mode_fills_market_orders_at_this_close() -> None:
    # fill="close": the order placed at bar 0's close fills at that close (100), stamped 01:00
    _, result = _fills([(99, 101, 98, 100), (110, 110, 110, 110), FLAT],
                       {0: lambda ctx: ctx.buy(BTC, 1)}, fill="close")
    f = _one(result)
    assert Decimal(f["price_exact"]) == Decimal(100)
    assert f["ts"] == pd.Timestamp("2024-01-01 01:00", tz="UTC")


def test_several_orders_in_one_bar_fill_in_path_order() -> None:
    # bar o100 h106 l94 c100: nearer extreme first (both 6 away -> high first, h-o <= o-l):
    # path 100 -> 106 -> 94 -> 100: the buy stop 105 fills before the sell stop 95
    _, result = _fills([FLAT, (100, 106, 94, 100), FLAT], {
        0: lambda ctx: (ctx.sell(BTC, 1, stop=95), ctx.buy(BTC, 1, stop=105))})
    assert list(result.fills["price"]) == [105.0, 95.0]
    assert list(result.fills["qty"]) == [1.0, -1.0]
    # both inside bar 1 (01:00-02:00): stamped with its open, placed on its path: 105 is 5/6
    # of the way from the open 100 to the high 106 (segment 0); 95 is 11/12 of the way from
    # the high 106 down to the low 94 (segment 1: 1 + 11/12)
    assert list(result.fills["ts"]) == [pd.Timestamp("2024-01-01 01:00", tz="UTC")] * 2
    assert list(result.fills["step_ts"]) == [pd.Timestamp("2024-01-01 02:00", tz="UTC")] * 2
    assert list(result.fills["path_time"]) == pytest.approx([5 / 6, 1 + 11 / 12], rel=1e-12)


def test_bar_path_visits_nearer_extreme_first() -> None:
    up = BarPath(100, 101, 90, 95)   # high 1 away, low 10 away -> high first
    assert up.points == (100, 101, 90, 95)
    down = BarPath(100, 110, 99, 105)
    assert down.points == (100, 99, 110, 105)
    # level 105 on 99 -> 110 (segment 1): 1 + (105 - 99) / 11
    assert down.first_at_or_above(105) == pytest.approx(1 + 6 / 11)


def test_match_order_market_is_taker_at_open() -> None:
    o = Order(id=1, symbol=BTC, side=Side.BUY, qty=Decimal(1), order_type=OrderType.MARKET,
              created_ms=0)
    m = match_order(o, BarPath(100, 101, 99, 100))
    assert m is not None
    assert (m.t, m.price, m.is_maker) == (0.0, 100, False)
