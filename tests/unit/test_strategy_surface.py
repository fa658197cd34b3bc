"""The typed strategy surface (issue 17 item 5) and the import contract (item 3).

``Context`` and the events a hook receives are exported from ``backtester``; the hooks are
typed and their parameters named for what they are; statuses and phases are ``StrEnum``s that
compare equal to the strings they replace; ``ctx.open_orders()`` returns frozen records. A
strategy written the old way (``on_margin_call(self, ctx, state)``, string comparisons, dict
access to open orders) keeps working, with a ``DeprecationWarning`` for the dict access.

Scenarios use the bybit profile (maintenance rate 0.5 % without a tier table), zero fees and flat
bars checked at closes, as in ``tests/integration/test_cross_margin_scenarios.py``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import tomllib
import typing
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import backtester
from backtester import (
    CancelReason,
    Context,
    EventScope,
    Fill,
    FundingPaid,
    InstrumentExpired,
    LiquidationAction,
    MarginCalled,
    MarginStatus,
    OpenOrder,
    OrderStatus,
    OrderType,
    PositionLiquidated,
    RejectReason,
    Side,
    Strategy,
    TimeInForce,
)
from backtester.context import Phase
from backtester.engine import Engine
from backtester.instruments import instrument_from_symbol
from backtester.margin import kernel
from backtester.orders import Order
from backtester.runs import runner
from tests.builders import BTC

ROOT = Path(__file__).resolve().parents[2]
ZERO_FEES: dict[str, Any] = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}


def _flat(prices: list[float]) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=len(prices), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": prices, "high": prices, "low": prices,
                         "close": prices, "volume": 1e9})


def _keys(collateral: float) -> dict[str, Any]:
    return {"instruments": {BTC: instrument_from_symbol(BTC, **ZERO_FEES)}, "funding": "zero",
            "collateral": {"USDT": collateral}, "margin_check": "close", "slippage_bps": 0}


def _engine(cls: type[Strategy], prices: list[float], collateral: float,
            **keys: Any) -> Engine:
    prep = runner.prepare(cls, data={BTC: _flat(prices)}, **_keys(collateral), **keys)
    eng = Engine(cls(), prep.feed, prep.config, profile=prep.profile)
    eng.run()
    return eng


# -- exports and hook signatures -------------------------------------------------------------
def test_context_and_the_hooks_event_types_are_exported_17() -> None:
    from backtester import context, events, orders

    assert backtester.Context is context.Context
    for name in ("FundingPaid", "MarginCalled", "PositionLiquidated", "InstrumentExpired",
                 "LiquidationStep", "EventScope", "LiquidationAction"):
        assert getattr(backtester, name) is getattr(events, name)
    for name in ("Fill", "OpenOrder", "OrderStatus", "CancelReason", "Side", "OrderType"):
        assert getattr(backtester, name) is getattr(orders, name)
    assert set(backtester.__all__) >= {"Context", "Fill", "MarginCalled", "MarginStatus",
                                       "OpenOrder", "PositionLiquidated"}


@pytest.mark.parametrize(("hook", "params", "event_type"), [
    ("on_start", ["self", "ctx"], None),
    ("on_bar", ["self", "ctx"], None),
    ("on_fill", ["self", "ctx", "fill"], Fill),
    ("on_funding", ["self", "ctx", "payment"], FundingPaid),
    ("on_margin_call", ["self", "ctx", "event"], MarginCalled),
    ("on_liquidation", ["self", "ctx", "event"], PositionLiquidated),
    ("on_expiry", ["self", "ctx", "event"], InstrumentExpired),
    ("on_finish", ["self", "ctx"], None),
])
def test_hooks_are_typed_and_named_for_what_they_receive_17(hook: str, params: list[str],
                                                             event_type: type | None) -> None:
    func = getattr(Strategy, hook)
    assert list(inspect.signature(func).parameters) == params
    hints = typing.get_type_hints(func)
    assert hints["ctx"] is Context
    if event_type is not None:
        assert hints[params[2]] is event_type
    assert "Parameters" in (func.__doc__ or "")


# -- enums that replace bare strings ---------------------------------------------------------
@pytest.mark.parametrize(("enum", "old"), [
    (MarginStatus, ["ok", "call", "liquidate"]),
    (EventScope, ["account", "pool", "position"]),
    (LiquidationAction, ["cancel_orders", "liquidation_order", "takeover", "adl",
                         "insurance_cover", "collateral_sale"]),
    (OrderStatus, ["working", "filled", "cancelled", "rejected"]),
    (CancelReason, ["strategy", "oco", "ioc_not_filled", "fok_not_filled",
                    "reduce_only_nothing_to_reduce", "liquidation", "expired"]),
    (Phase, ["init", "start", "bar", "finish"]),
])
def test_enums_compare_equal_to_the_strings_they_replace_17(enum: type[StrEnum],
                                                            old: list[str]) -> None:
    assert [m.value for m in enum] == old
    for member, text in zip(enum, old, strict=True):
        assert member == text
        assert text == member
        assert {text: 1}[member] == 1  # same hash: dicts keyed by the old strings still work
        assert f"{member}" == text
        assert json.dumps({"s": member}) == json.dumps({"s": text})  # the result files
        assert enum(text) is member


def test_margin_status_members_follow_the_kernels_codes_17() -> None:
    members = list(MarginStatus)
    assert members[kernel.STATUS_OK] is MarginStatus.OK
    assert members[kernel.STATUS_CALL] is MarginStatus.CALL
    assert members[kernel.STATUS_LIQUIDATE] is MarginStatus.LIQUIDATE


def test_events_built_with_strings_hold_the_enum_members_17() -> None:
    ev = MarginCalled(ts_ms=0, margin_ratio=0.9, margin_balance=1.0, maintenance_margin=0.9,
                      initial_margin=1.0, call_level=0.8,
                      scope="pool", pool="BTC")  # type: ignore[arg-type]
    assert ev.scope is EventScope.POOL
    with pytest.raises(ValueError, match="'pools' is not a valid EventScope"):
        MarginCalled(ts_ms=0, margin_ratio=0.9, margin_balance=1.0, maintenance_margin=0.9,
                     initial_margin=1.0, call_level=0.8, scope="pools")  # type: ignore[arg-type]


# -- a margin call, typed and the old way ----------------------------------------------------
# Long 1 BTC @ 50,000 at 20x, collateral 2,800 USDT. At 47,500: MB = 2,800 - 2,500 = 300,
# MM = 0.5 % x 47,500 = 237.5 -> ratio 0.79 < 0.8: no call. At 47,450: MB = 2,800 - 2,550 = 250,
# MM = 0.5 % x 47,450 = 237.25 -> ratio 0.949 >= 0.8: a margin call, not a liquidation.
CALL_PRICES = [50_000.0] * 3 + [47_500.0, 47_450.0, 47_450.0, 47_450.0]


class TypedWatcher(Strategy):
    seen: typing.ClassVar[list[Any]] = []

    def on_bar(self, ctx: Context) -> None:
        if not getattr(self, "done", False):
            self.done = True
            ctx.set_leverage(BTC, 20)
            ctx.buy(BTC, Decimal(1))
            ctx.buy(BTC, Decimal("0.01"), limit=10_000)  # rests far below: still working

    def on_margin_call(self, ctx: Context, event: MarginCalled) -> None:
        orders = ctx.open_orders()
        type(self).seen.append((event, ctx.account.status, orders))


def test_a_typed_strategy_receives_the_event_enums_and_records_17() -> None:
    TypedWatcher.seen = []
    backtester.run(TypedWatcher, data={BTC: _flat(CALL_PRICES)}, **_keys(2_800))
    [(event, status, orders)] = TypedWatcher.seen
    assert isinstance(event, MarginCalled)
    assert event.scope is EventScope.ACCOUNT
    assert event.pool is None
    assert event.margin_ratio == pytest.approx(237.25 / 250)
    assert status is MarginStatus.CALL
    [order] = orders
    assert isinstance(order, OpenOrder)
    assert (order.symbol, order.side, order.qty, order.order_type, order.price) == (
        BTC, Side.BUY, Decimal("0.01"), OrderType.LIMIT, Decimal("10000"))
    assert (order.tif, order.is_reduce_only, order.is_post_only, order.parent_id) == (
        TimeInForce.GTC, False, False, None)
    assert order.signed_qty == Decimal("0.01")
    with pytest.raises(dataclasses.FrozenInstanceError):
        order.qty = Decimal(2)  # type: ignore[misc]


class OldStyleWatcher(Strategy):
    """Written against the old surface: ``state``, string comparisons, dict access."""

    seen: typing.ClassVar[list[Any]] = []

    def on_bar(self, ctx):  # type: ignore[no-untyped-def]
        if not getattr(self, "done", False):
            self.done = True
            ctx.set_leverage(BTC, 20)
            ctx.buy(BTC, Decimal(1))
            ctx.buy(BTC, Decimal("0.01"), limit=10_000)

    def on_margin_call(self, ctx, state):  # type: ignore[no-untyped-def]
        working = [(o["symbol"], o["type"], o["qty"], o.get("reduce_only"))
                   for o in ctx.open_orders()]
        type(self).seen.append((state.margin_ratio, state.scope == "account",
                                ctx.account.status == "call", working))
        ctx.close(BTC, tag="de-risk")


def test_a_strategy_written_the_old_way_still_runs_17() -> None:
    OldStyleWatcher.seen = []
    with pytest.warns(DeprecationWarning, match=r"open_orders\(\) returns OpenOrder records"):
        r = backtester.run(OldStyleWatcher, data={BTC: _flat(CALL_PRICES)}, **_keys(2_800))
    [(ratio, is_account, is_call, working)] = OldStyleWatcher.seen
    assert ratio == pytest.approx(237.25 / 250)
    assert is_account
    assert is_call
    assert working == [(BTC, "limit", "0.01", False)]  # the old dicts' values
    assert r.metrics["margin_calls"] == 1
    assert r.metrics["liquidations"] == 0
    assert r.state["positions"] == []  # the de-risking close filled
    [call] = [e for e in r.events if e["event"] == "MarginCalled"]
    assert call["scope"] == "account"
    assert type(call["scope"]) is str


def test_open_order_dict_access_returns_the_old_dict_values_17() -> None:
    order = Order(id=7, symbol=BTC, side=Side.SELL, qty=Decimal("0.5"),
                  order_type=OrderType.STOP_LIMIT, created_ms=1_735_689_600_000,
                  price=Decimal("99.5"), stop_price=Decimal("100"), tif=TimeInForce.GTC,
                  is_reduce_only=True, tag="exit", parent_id=3)
    record = OpenOrder.from_order(order)
    old = order.as_dict()  # what ctx.open_orders() used to return
    assert old["qty"] == "0.5"
    assert old["type"] == "stop_limit"
    for key, value in old.items():
        with pytest.warns(DeprecationWarning, match=f"order\\[{key!r}\\]"):
            assert record[key] == value
        with pytest.warns(DeprecationWarning, match=f"order.get\\({key!r}\\)"):
            assert record.get(key) == value
    assert record.get("missing", "x") == "x"  # unknown keys: the default, no warning
    with pytest.raises(KeyError, match="missing"):
        record["missing"]
    assert (record.order_type, record.is_reduce_only, record.signed_qty) == (
        OrderType.STOP_LIMIT, True, Decimal("-0.5"))


# -- the order log: status and reason apart --------------------------------------------------
class OrderOutcomes(Strategy):
    # step 0: a buy with attached stop-loss 95 and take-profit 110 (fills at bar 1's open, 100);
    #         a reduce-only sell that is rejected (nothing to reduce yet).
    # bar 2 trades up to 111: the take-profit fills, its stop-loss sibling is cancelled (OCO).
    # step 3: a limit buy at 50 that never fills, cancelled by the strategy at step 4.
    def on_bar(self, ctx: Context) -> None:
        step = getattr(self, "step", -1) + 1
        self.step = step
        if step == 0:
            ctx.buy(BTC, 1, stop_loss=95, take_profit=110)
            ctx.sell(BTC, 1, reduce_only=True)
        elif step == 3:
            ctx.buy(BTC, 1, limit=50)
        elif step == 4:
            ctx.cancel()


def test_order_log_keeps_the_status_and_its_reason_apart_17() -> None:
    rows = [(100, 100, 100, 100), (100, 101, 99, 100), (100, 111, 100, 108),
            (108, 108, 108, 108), (108, 108, 108, 108), (108, 108, 108, 108)]
    prep = runner.prepare(OrderOutcomes, data={BTC: _bars(rows)}, funding="zero",
                          collateral={"USDT": 100_000}, slippage_bps=0.0)
    eng = Engine(OrderOutcomes(), prep.feed, prep.config, profile=prep.profile)
    phases = [eng.phase]
    eng.run()
    phases.append(eng.phase)
    assert phases == [Phase.INIT, Phase.FINISH]
    assert all(type(p) is Phase for p in phases)
    got = [(r.status, r.reason) for r in eng.order_log]
    # placed in this order: entry, rejected sell, stop-loss, take-profit, limit
    assert got == [(OrderStatus.FILLED, None),
                   (OrderStatus.REJECTED, RejectReason.REDUCE_ONLY_WOULD_INCREASE),
                   (OrderStatus.CANCELLED, CancelReason.OCO),
                   (OrderStatus.FILLED, None),
                   (OrderStatus.CANCELLED, CancelReason.STRATEGY)]
    assert [r.status_text for r in eng.order_log] == [
        "filled", "rejected: reduce_only_would_increase", "cancelled: oco", "filled",
        "cancelled: strategy"]
    assert [c.reason for c in eng.cancels] == [CancelReason.OCO, CancelReason.STRATEGY]


def _bars(rows: Sequence[tuple[float, float, float, float]]) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=len(rows), freq="1h", tz="UTC")
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c,
                         "volume": 1_000.0})


# -- a liquidation: scope and step actions ---------------------------------------------------
# Long 1 BTC @ 50,000 at 20x with 2,800 USDT and a limit buy 0.01 @ 10,000 resting; no
# liquidation slippage. At 47,400: MB = 2,800 - 2,600 = 200 < MM = 0.5 % x 47,400 = 237 ->
# liquidated: the working order is cancelled first (a ``cancel_orders`` step, qty 1), then a
# liquidation order sells 1 at 47,400 (PnL -2,600) with bybit's 0.55 % fee (260.70) capped at the
# margin left, 200: the balance ends at 0, not below (no bankruptcy, so the hook is called).
class Liquidated(Strategy):
    seen: typing.ClassVar[list[Any]] = []

    def on_bar(self, ctx: Context) -> None:
        if not getattr(self, "done", False):
            self.done = True
            ctx.set_leverage(BTC, 20)
            ctx.buy(BTC, Decimal(1))
            ctx.buy(BTC, Decimal("0.01"), limit=10_000)

    def on_liquidation(self, ctx, info):  # type: ignore[no-untyped-def]
        type(self).seen.append((info.scope == "account", [s.action for s in info.steps]))


def test_liquidation_scope_and_step_actions_are_enums_17() -> None:
    Liquidated.seen = []
    eng = _engine(Liquidated, [50_000.0] * 3 + [47_400.0] * 3, 2_800,
                  liquidation_slippage_bps=0)
    [ev] = [e for e in eng.events if isinstance(e, PositionLiquidated)]
    assert ev.scope is EventScope.ACCOUNT
    assert not ev.is_bankrupt
    assert all(type(s.action) is LiquidationAction for s in ev.steps)
    cancel, close = ev.steps
    assert (cancel.action, cancel.qty) == (LiquidationAction.CANCEL_ORDERS, Decimal(1))
    assert (close.action, close.qty, close.price, close.fee, close.realized_pnl) == (
        LiquidationAction.LIQUIDATION_ORDER, Decimal(-1), Decimal(47_400), Decimal(200),
        Decimal(-2_600))
    assert Liquidated.seen == [(True, ["cancel_orders", "liquidation_order"])]
    *placed, liq = eng.order_log  # the liquidation's own order comes last (issue 17 item 3)
    assert (liq.order.tag, liq.status) == ("liquidation", OrderStatus.FILLED)
    limit = placed[-1]
    assert (limit.status, limit.reason) == (OrderStatus.CANCELLED, CancelReason.LIQUIDATION)


# -- the import contract ---------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    # every module a file imports, anywhere in it (under TYPE_CHECKING and in functions too)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize(("importer", "forbidden"), [
    ("backtester/margin", "backtester.engine"),
    ("backtester/context.py", "backtester.engine"),
    ("backtester/sweep/report.py", "backtester.sweep.runner"),
    ("backtester/sweep/report.py", "backtester.sweep.walk_forward"),
])
def test_lower_layers_do_not_import_higher_ones_even_for_type_checking_17(
        importer: str, forbidden: str) -> None:
    target = ROOT / importer
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    bad = {f.name: m for f in files for m in _imports(f)
           if m == forbidden or m.startswith(forbidden + ".")}
    assert not bad


def test_import_linter_counts_type_checking_imports_17() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["exclude_type_checking_imports"] is False
    layers = config["contracts"][0]["layers"]
    # the strategy base class names the context in its hooks; the risk controls read it
    assert layers.index("backtester.strategy") < layers.index("backtester.risk") \
        < layers.index("backtester.context") < layers.index("backtester.margin")
