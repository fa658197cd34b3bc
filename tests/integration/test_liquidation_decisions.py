"""Issue 17 item 3: the margin layer returns decisions, the engine books them.

A liquidation is a sequence of decisions (backtester.margin.decisions) that the engine carries
out through Account's public methods; the margin code changes nothing of the account itself.
The book is test_liquidation_profiles' Deribit case, worked there by hand: long 20 BTC @ 50,000
with 65,000 USDT, the mark falls to 47,000; Deribit closes slices of 10 % of the starting size
(2 BTC) at 47,000 with the 0.5 % fee (2 x 47,000 x 0.5 % = 470) until healthy: two slices.
Left: MB = 65,000 - 60,000 - 940 = 4,060, MM = 16 x 47,000 x 0.65 % - 950 = 3,938, so at the
next bar the ratio 3,938 / 4,060 = 0.970 is above Deribit's call level 0.8: a margin call.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from backtester.engine import Engine
from backtester.margin.decisions import (
    CancelOrders,
    EmitEvent,
    LiquidationFill,
    PositionFee,
    RecordLiquidationFill,
    SetIsolatedMargin,
)
from tests.integration.test_liquidation_profiles import run


@pytest.fixture
def booked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, int, int]]:
    # every decision the engine books, with the account's version before and after booking it
    out: list[tuple[Any, int, int]] = []
    original = Engine.book_decision

    def spy(self: Engine, d: Any) -> Any:
        before = self.account.version
        result = original(self, d)
        out.append((d, before, self.account.version))
        return result

    monkeypatch.setattr(Engine, "book_decision", spy)
    return out


@pytest.mark.shared
def test_a_liquidation_is_decisions_the_engine_books_in_order(btc_tiers, booked):
    r = run("deribit", btc_tiers, [50_000.0] * 3 + [47_000.0] * 3, 65_000)
    kinds = [type(d) for d, _, _ in booked]
    assert kinds == [CancelOrders,
                     LiquidationFill, PositionFee, RecordLiquidationFill,
                     LiquidationFill, PositionFee, RecordLiquidationFill,
                     EmitEvent,
                     EmitEvent]
    fills = [d for d, _, _ in booked if isinstance(d, LiquidationFill)]
    assert [(f.qty, f.price) for f in fills] == [(Decimal(-2), Decimal(47_000))] * 2
    fees = [d for d, _, _ in booked if isinstance(d, PositionFee)]
    assert [f.fee for f in fees] == [Decimal(470)] * 2
    liquidated, called = booked[-2][0].event, booked[-1][0].event
    assert type(liquidated).__name__ == "PositionLiquidated"
    assert type(called).__name__ == "MarginCalled"
    assert (called.margin_balance, called.maintenance_margin) == pytest.approx((4_060, 3_938))
    assert called.ts_ms == liquidated.ts_ms + 3_600_000
    # between two bookings of one liquidation the margin code changed nothing of the account:
    # each decision finds the account as the previous booking left it
    for (_, _, after), (_, before, _) in itertools.pairwise(booked):
        assert before == after
    # and what was booked is what the results show
    assert r.state["positions"][0]["size"] == pytest.approx(16)
    assert r.journal[r.journal["kind"] == "liquidation_fee"]["amount"].map(Decimal).sum() \
        == Decimal(-940)


@pytest.mark.shared
def test_an_isolated_allocation_is_booked_by_the_engine(btc_tiers, booked):
    # isolated mode: the 20 BTC @ 50,000 buy at 20x allocates 1,000,000 / 20 = 50,000 USDT,
    # decided by the margin engine and booked by the engine (the fill's ledger step)
    import backtester
    from backtester.instruments import instrument_from_symbol
    from tests.integration.test_liquidation_profiles import PERP, Open, bars

    inst = {PERP: instrument_from_symbol(PERP, taker_rate=Decimal(0), maker_rate=Decimal(0))}
    r = backtester.run(Open, data={PERP: bars([50_000.0] * 4)}, instruments=inst,
                       funding="zero", profile="binance-usdm", tiers=btc_tiers,
                       margin_mode="isolated", margin_check="close", slippage_bps=0,
                       collateral={"USDT": 100_000})
    allocations = [d for d, _, _ in booked if isinstance(d, SetIsolatedMargin)]
    assert allocations == [SetIsolatedMargin(PERP, Decimal(50_000))]
    assert r.state["positions"][0]["isolated_margin"] == pytest.approx(50_000)
