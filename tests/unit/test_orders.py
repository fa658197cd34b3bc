"""Order validation: every submission-time RejectReason, as an event with a message."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from backtester import ConfigError
from backtester.orders import Order, OrderType, RejectReason, Side, validate_order
from tests.builders import BTC, ETH, Scripted, bars, flat, perp, run


def _first_rejection(actions: dict[int, Any], *, inst: Any = None, n: int = 4,
                     **keys: Any) -> tuple[Scripted, Any]:
    strat = Scripted(actions)
    instruments = {BTC: inst} if inst is not None else None
    result = run(strat, {BTC: flat(n)}, instruments=instruments, **keys)
    return strat, result


def _reason(strat: Scripted, step: int) -> RejectReason:
    ticket = strat.out[step]
    assert ticket is not None
    assert not ticket.is_accepted
    return ticket.rejection.reason  # type: ignore[no-any-return]


def test_qty_not_lot_multiple() -> None:
    strat, result = _first_rejection({0: lambda ctx: ctx.buy(BTC, "0.0015")},
                                     inst=perp(lot_size=Decimal("0.001")))
    assert _reason(strat, 0) is RejectReason.QTY_NOT_LOT_MULTIPLE
    assert "lot size 0.001" in strat.out[0].rejection.message
    # the rejection is an event in the results, and nothing filled
    assert list(result.rejections["reason"]) == ["qty_not_lot_multiple"]
    assert result.fills.empty


def test_qty_not_positive() -> None:
    strat, _ = _first_rejection({0: lambda ctx: ctx.buy(BTC, 0)})
    assert _reason(strat, 0) is RejectReason.QTY_NOT_POSITIVE


@pytest.mark.parametrize("qty", [Decimal("1e999"), "1e400", "-1e309"])
def test_qty_beyond_the_float_range_is_a_rejection_not_an_error(qty: Any) -> None:
    # a finite Decimal beyond float64's ~1.8e308 is infinite in the margin arithmetic (it
    # used to abort the run: the lot check's Decimal remainder raised DivisionImpossible)
    strat, result = _first_rejection({0: lambda ctx: ctx.buy(BTC, qty),
                                      1: lambda ctx: ctx.buy(BTC, 1)})
    assert _reason(strat, 0) is RejectReason.QTY_NOT_FINITE
    assert "is not a finite number (or beyond the float range" in strat.out[0].rejection.message
    assert list(result.fills["qty"]) == [1.0]  # the run went on trading


def test_price_not_tick_multiple() -> None:
    strat, _ = _first_rejection({0: lambda ctx: ctx.buy(BTC, 1, limit="99.995")},
                                inst=perp(tick_size=Decimal("0.01")))
    assert _reason(strat, 0) is RejectReason.PRICE_NOT_TICK_MULTIPLE
    assert "tick size 0.01" in strat.out[0].rejection.message


def test_stop_price_not_tick_multiple() -> None:
    strat, _ = _first_rejection({0: lambda ctx: ctx.sell(BTC, 1, stop="90.25")},
                                inst=perp(tick_size=Decimal("0.5")))
    assert _reason(strat, 0) is RejectReason.PRICE_NOT_TICK_MULTIPLE


def test_below_min_qty() -> None:
    strat, _ = _first_rejection({0: lambda ctx: ctx.buy(BTC, "0.005")},
                                inst=perp(min_qty=Decimal("0.01")))
    assert _reason(strat, 0) is RejectReason.BELOW_MIN_QTY


def test_below_min_notional() -> None:
    # 0.04 BTC x last close 100 = 4 USDT < 5 USDT minimum; 0.05 x 100 = 5 passes
    strat, _ = _first_rejection({0: lambda ctx: ctx.buy(BTC, "0.04"),
                                 1: lambda ctx: ctx.buy(BTC, "0.05")},
                                inst=perp(min_notional=Decimal(5)))
    assert _reason(strat, 0) is RejectReason.BELOW_MIN_NOTIONAL
    assert strat.out[1].is_accepted


def test_post_only_would_take() -> None:
    # last close 100: a post-only buy at 101 would cross; at 99 it rests
    strat, _ = _first_rejection({0: lambda ctx: ctx.buy(BTC, 1, limit=101, post_only=True),
                                 1: lambda ctx: ctx.buy(BTC, 1, limit=99, post_only=True)})
    assert _reason(strat, 0) is RejectReason.POST_ONLY_WOULD_TAKE
    assert strat.out[1].is_accepted


def test_reduce_only_would_increase() -> None:
    # flat: nothing to reduce; long 1 (filled at bar 1's open): a reduce-only buy increases
    strat, result = _first_rejection({
        0: lambda ctx: ctx.sell(BTC, 1, reduce_only=True),
        1: lambda ctx: ctx.buy(BTC, 1),
        2: lambda ctx: ctx.buy(BTC, 1, reduce_only=True),
        3: lambda ctx: ctx.sell(BTC, 1, reduce_only=True),
    }, n=5)
    assert _reason(strat, 0) is RejectReason.REDUCE_ONLY_WOULD_INCREASE
    assert _reason(strat, 2) is RejectReason.REDUCE_ONLY_WOULD_INCREASE
    assert strat.out[3].is_accepted
    assert list(result.fills["qty"]) == [1.0, -1.0]


def test_insufficient_margin() -> None:
    # 1,000 USDT at leverage 10: 200 BTC x 100 = 20,000 notional needs 2,000 initial margin
    strat, result = _first_rejection({0: lambda ctx: ctx.buy(BTC, 200),
                                      1: lambda ctx: ctx.buy(BTC, 90)},
                                     collateral={"USDT": 1_000}, leverage=10)
    assert _reason(strat, 0) is RejectReason.INSUFFICIENT_MARGIN
    assert "2,000.00" in strat.out[0].rejection.message
    # 90 x 100 / 10 = 900 <= 1,000 available
    assert strat.out[1].is_accepted
    assert list(result.fills["qty"]) == [90.0]


def test_no_market_data_before_the_first_bar_of_a_symbol() -> None:
    # ETH's first 1h bar opens 02:00 and closes 03:00; at the 01:00 step it has no bar yet
    strat = Scripted({0: lambda ctx: ctx.buy(ETH, 1), 2: lambda ctx: ctx.buy(ETH, 1)})
    run(strat, {BTC: flat(5), ETH: flat(3, start="2024-01-01 02:00")})
    assert _reason(strat, 0) is RejectReason.NO_MARKET_DATA
    assert strat.out[2].is_accepted


def test_unknown_symbol_is_config_error_with_did_you_mean() -> None:
    strat = Scripted({0: lambda ctx: ctx.buy("BTC/USDT:USDC", 1)})
    with pytest.raises(ConfigError, match=r"did you mean 'BTC/USDT:USDT'"):
        run(strat, {BTC: flat(3)})


def test_limit_without_price_is_config_error() -> None:
    strat = Scripted({0: lambda ctx: ctx.order(BTC, "buy", 1, order_type="take_profit")})
    with pytest.raises(ConfigError, match="trigger price"):
        run(strat, {BTC: flat(3)})


def test_validate_order_unit() -> None:
    inst = perp(lot_size=Decimal("0.001"), tick_size=Decimal("0.1"), min_notional=Decimal(5))
    ok = Order(id=1, symbol=BTC, side=Side.BUY, qty=Decimal("0.1"), order_type=OrderType.LIMIT,
               created_ms=0, price=Decimal("100.1"))
    assert validate_order(ok, inst, ref_price=100.0) is None
    # limit orders are valued at their limit: 0.01 x 100.1 = 1.00 < 5
    small = Order(id=2, symbol=BTC, side=Side.BUY, qty=Decimal("0.01"),
                  order_type=OrderType.LIMIT, created_ms=0, price=Decimal("100.1"))
    rej = validate_order(small, inst, ref_price=100.0)
    assert rej is not None
    assert rej.reason is RejectReason.BELOW_MIN_NOTIONAL
    # reduce-only orders skip the minimum notional (closing dust must be possible)
    dust = Order(id=3, symbol=BTC, side=Side.SELL, qty=Decimal("0.01"),
                 order_type=OrderType.MARKET, created_ms=0, is_reduce_only=True)
    assert validate_order(dust, inst, ref_price=100.0) is None


def test_rejections_frame_carries_tag_and_time() -> None:
    strat = Scripted({1: lambda ctx: ctx.buy(BTC, 0, tag="oops")})
    result = run(strat, {BTC: bars([(100, 100, 100, 100)] * 3)})
    row = result.rejections.iloc[0]
    assert row["tag"] == "oops"
    assert row["ts"].isoformat() == "2024-01-01T02:00:00+00:00"  # second step = 01:00 bar close


def test_instrument_expired() -> None:
    # a dated future expiring 2024-01-01 08:00 (grammar: 08:00 UTC on the date); after the
    # 08:00 step orders on it are refused
    fut = "BTC/USDT:USDT-240101"
    strat = Scripted({0: lambda ctx: ctx.buy(fut, 1), 9: lambda ctx: ctx.buy(fut, 1)})
    result = run(strat, {fut: flat(12)})
    assert strat.out[0].is_accepted
    assert _reason(strat, 9) is RejectReason.INSTRUMENT_EXPIRED
    assert list(result.fills["qty"]) == [1.0]
    # the held future was cash-settled at expiry (at 100 = entry: no PnL) and is gone
    assert [e["event"] for e in result.events] == ["InstrumentExpired"]
    assert result.state["positions"] == []
