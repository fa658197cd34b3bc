"""Risk controls on a hand-built context: every number is worked by hand in a comment."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from backtester.errors import ConfigError
from backtester.instruments import Instrument, instrument_from_symbol
from backtester.numeric import to_price
from backtester.orders import OrderType, Side
from backtester.risk import (
    MarginGuard,
    PositionLimits,
    RiskControls,
    attach_exits,
    gross_notional_usd,
    limit_leverage,
)

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


@dataclass
class FakeCtx:
    """The parts of backtester.context.Context the controls use."""

    prices: dict[str, float]
    qty: dict[str, float] = field(default_factory=dict)
    entry: dict[str, float] = field(default_factory=dict)
    equity: float = 10_000.0
    margin_ratio: float = 0.0
    orders: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    @property
    def symbols(self) -> list[str]:
        return sorted(self.prices)

    def instrument(self, symbol: str) -> Instrument:
        return instrument_from_symbol(symbol)

    def price(self, symbol: str) -> float:
        return self.prices[symbol]

    index = price

    def position(self, symbol: str) -> SimpleNamespace:
        q = self.qty.get(symbol, 0.0)
        return SimpleNamespace(qty=q, entry_price=self.entry.get(symbol, 0.0),
                               notional=abs(q) * self.prices[symbol])

    @property
    def account(self) -> SimpleNamespace:
        return SimpleNamespace(equity=self.equity, margin_ratio=self.margin_ratio)

    def round_price(self, symbol: str, price: float) -> Decimal:
        return to_price(price, self.instrument(symbol).tick_size)

    def order(self, symbol: str, side: str, qty: Decimal, **kw: Any) -> SimpleNamespace:
        oid = len(self.orders) + 1
        self.orders.append({"order_id": oid, "symbol": symbol, "side": Side(side), "qty": qty,
                            **kw})
        return SimpleNamespace(order_id=oid, is_accepted=True)

    def open_orders(self, symbol: str | None = None) -> list[SimpleNamespace]:
        return [SimpleNamespace(**o) for o in self.orders if o["order_id"] not in self.cancelled
                and not o.get("filled")]

    def cancel(self, order_id: int | None = None, **kw: Any) -> int:
        assert order_id is not None
        self.cancelled.append(order_id)
        return 1


def ctx_(**kw: Any) -> Any:
    return FakeCtx(prices={BTC: 40_000.0, ETH: 2_000.0}, **kw)


def test_position_limits_clip_by_contracts_and_notional() -> None:
    ctx = ctx_(qty={BTC: 0.2})
    # max 0.5 BTC contracts and 16,000 USD = 0.4 BTC at 40,000: the tighter cap is 0.4;
    # holding 0.2, a buy of 1.0 may add 0.2
    lim = PositionLimits(max_qty=0.5, max_notional_usd=16_000)
    assert lim.max_abs_qty(ctx, BTC) == Decimal("0.4")
    assert lim.clip(ctx, BTC, 1.0) == Decimal("0.2")
    # selling 1.0 from +0.2 flips to -0.8, clipped to -0.4: the order becomes -0.6
    assert lim.clip(ctx, BTC, -1.0) == Decimal("-0.6")
    # a pure reduction is never cut
    assert lim.clip(ctx, BTC, -0.1) == Decimal("-0.1")


def test_position_limits_beyond_the_cap_allow_nothing_more_on_that_side() -> None:
    ctx = ctx_(qty={BTC: 0.6})
    lim = PositionLimits(max_qty=0.5)
    assert lim.clip(ctx, BTC, 0.1) == 0
    # selling 0.3 reduces from 0.6 to 0.3: allowed whole
    assert lim.clip(ctx, BTC, -0.3) == Decimal("-0.3")


def test_position_limits_per_symbol_override() -> None:
    ctx = ctx_()
    lim = PositionLimits(max_qty=1.0, per_symbol={ETH: PositionLimits(max_notional_usd=5_000)})
    # ETH: 5,000 / 2,000 = 2.5 contracts
    assert lim.clip(ctx, ETH, 10) == Decimal("2.5")
    assert lim.clip(ctx, BTC, 3) == Decimal("1.0")


def test_position_limits_reject_negative_caps() -> None:
    with pytest.raises(ConfigError, match="max_qty"):
        PositionLimits(max_qty=-1)


def test_limit_leverage_cuts_to_the_headroom() -> None:
    # equity 10,000; gross = 0.5 BTC x 40,000 + 5 ETH x 2,000 = 30,000; max 4x: headroom 10,000
    ctx = ctx_(qty={BTC: 0.5, ETH: 5.0})
    assert gross_notional_usd(ctx) == pytest.approx(30_000.0)
    # buying 0.5 BTC (20,000) is cut to 10,000 / 40,000 = 0.25
    assert limit_leverage(ctx, BTC, 0.5, max_leverage=4.0) == Decimal("0.25")
    # a reduction passes unchanged
    assert limit_leverage(ctx, BTC, -0.5, max_leverage=4.0) == Decimal("-0.5")
    # at 3x there is no headroom: a flip from +0.5 to -0.5 leaves gross unchanged and passes,
    # a sell of 1.5 (to -1.0) would add 0.5 x 40,000 and is cut to 1.0 (ending at -0.5)
    assert limit_leverage(ctx, BTC, -1.0, max_leverage=3.0) == Decimal("-1.0")
    assert limit_leverage(ctx, BTC, -1.5, max_leverage=3.0) == Decimal("-1.0")
    assert limit_leverage(ctx, ETH, 1, max_leverage=3.0) == 0


def test_risk_controls_size_applies_limits_then_leverage() -> None:
    ctx = ctx_(qty={ETH: 5.0})
    # limit 0.3 BTC; leverage 2x of 10,000 = 20,000 - 10,000 held = 10,000 = 0.25 BTC
    rc = RiskControls(limits=PositionLimits(max_qty=0.3), max_leverage=2.0)
    assert rc.size(ctx, BTC, 1.0) == Decimal("0.25")
    assert rc.order(ctx, BTC, 1.0, tag="t") == Decimal("0.25")
    assert ctx.orders[-1]["qty"] == Decimal("0.25")
    assert ctx.orders[-1]["side"] is Side.BUY


def test_attach_exits_places_reduce_only_stop_and_take_profit_around_entry() -> None:
    ctx = ctx_(qty={BTC: -0.3}, entry={BTC: 40_000.0})
    b = attach_exits(ctx, BTC, stop_pct=0.05, take_pct=0.10)
    assert b is not None
    # a short: stop above at 40,000 x 1.05 = 42,000, take profit below at 36,000; buys of 0.3
    assert b.stop_price == pytest.approx(42_000.0)
    assert b.take_price == pytest.approx(36_000.0)
    stop, take = ctx.orders
    assert stop["order_type"] == "stop"
    assert stop["stop_price"] == pytest.approx(42_000.0)
    assert take["order_type"] == "take_profit"
    assert take["stop_price"] == pytest.approx(36_000.0)
    assert OrderType(stop["order_type"]) is OrderType.STOP
    for o in (stop, take):
        assert o["side"] is Side.BUY
        assert o["qty"] == Decimal("0.3")
        assert o["reduce_only"]
    assert attach_exits(ctx_(), BTC, stop_pct=0.05) is None  # flat: nothing to protect


def test_risk_controls_apply_cancels_the_sibling_once_one_exit_is_gone() -> None:
    ctx = ctx_(qty={BTC: 0.3}, entry={BTC: 40_000.0})
    rc = RiskControls()
    b = rc.exits(ctx, BTC, stop_pct=0.02, take_pct=0.04)
    assert b is not None
    assert b.stop_price == pytest.approx(39_200.0)
    rc.apply(ctx)
    assert ctx.cancelled == []
    ctx.orders[0]["filled"] = True  # the stop filled
    rc.apply(ctx)
    assert ctx.cancelled == [b.take_order_id]
    assert rc.brackets == []


def test_margin_guard_cuts_pro_rata_at_the_level_and_waits_a_bar() -> None:
    ctx = ctx_(qty={BTC: 0.5, ETH: -3.0}, margin_ratio=0.59)
    guard = MarginGuard(de_risk_at=0.6, reduce_fraction=0.5)
    assert guard(ctx) == 0
    ctx.margin_ratio = 0.6
    assert guard(ctx) == 2
    # half of each: sell 0.25 BTC, buy 1.5 ETH, reduce-only, tagged
    by = {o["symbol"]: o for o in ctx.orders}
    assert by[BTC]["side"] is Side.SELL
    assert by[BTC]["qty"] == Decimal("0.25")
    assert by[ETH]["side"] is Side.BUY
    assert by[ETH]["qty"] == Decimal("1.5")
    assert all(o["reduce_only"] and o["tag"] == "risk_guard" for o in ctx.orders)
    assert guard(ctx) == 0  # cooldown: the cut fills at the next bar
    assert guard(ctx) == 2
    assert guard.actions == 2


def test_margin_guard_largest_mode_cuts_only_the_largest_notional() -> None:
    # BTC 0.5 x 40,000 = 20,000 > ETH 3 x 2,000 = 6,000
    ctx = ctx_(qty={BTC: 0.5, ETH: -3.0}, margin_ratio=0.9)
    assert MarginGuard(mode="largest", reduce_fraction=1.0)(ctx) == 1
    assert ctx.orders[0]["symbol"] == BTC
    assert ctx.orders[0]["qty"] == Decimal("0.5")


def test_margin_guard_validates_its_levels() -> None:
    with pytest.raises(ConfigError, match="de_risk_at"):
        MarginGuard(de_risk_at=1.2)
    with pytest.raises(ConfigError, match="reduce_fraction"):
        MarginGuard(reduce_fraction=0)
