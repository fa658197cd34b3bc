"""Accounting invariants (hypothesis)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtester.accounting import Account
from backtester.instruments import instrument_from_symbol
from tests.builders import BTC, Scripted, flat, run

pytestmark = pytest.mark.property

RATES = {"maker_rate": Decimal("0.0002"), "taker_rate": Decimal("0.0005")}
LIN = instrument_from_symbol("BTC/USDT:USDT", **RATES)
INV = instrument_from_symbol("BTC/USD:BTC", **RATES)

prices = st.decimals(min_value=Decimal("0.5"), max_value=Decimal(200_000), places=2)
lin_qty = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1_000), places=3)
inv_qty = st.integers(min_value=1, max_value=100_000).map(Decimal)


@given(qty=lin_qty, price=prices, is_long=st.booleans(), maker_open=st.booleans(),
       maker_close=st.booleans(), inverse=st.booleans(), inv_q=inv_qty)
def test_round_trip_at_one_price_loses_exactly_the_fees(
        qty: Decimal, price: Decimal, is_long: bool, maker_open: bool, maker_close: bool,
        inverse: bool, inv_q: Decimal) -> None:
    inst = INV if inverse else LIN
    q = inv_q if inverse else qty
    signed = q if is_long else -q
    asset = inst.settle
    a = Account({asset: Decimal(1_000_000)}, start_ms=0)
    fee1 = inst.fee_exact(signed, price, is_maker=maker_open)
    fee2 = inst.fee_exact(-signed, price, is_maker=maker_close)
    a.apply_fill(1, inst, signed, price, fee1)
    realized = a.apply_fill(2, inst, -signed, price, fee2)
    assert realized == 0
    assert fee1 >= 0  # no rebates configured
    assert fee2 >= 0
    assert a.balances[asset] == Decimal(1_000_000) - fee1 - fee2
    assert a.positions[inst.symbol].qty == 0
    a.check_replay()


fills = st.lists(st.tuples(st.integers(min_value=-5_000, max_value=5_000).filter(bool),
                           st.decimals(min_value=Decimal(50), max_value=Decimal(150), places=2)),
                 min_size=1, max_size=30)


@given(fills=fills, inverse=st.booleans())
def test_journal_replays_exactly_to_balances(fills: list[tuple[int, Decimal]],
                                            inverse: bool) -> None:
    inst = INV if inverse else LIN
    a = Account({inst.settle: Decimal(10_000)}, start_ms=0)
    for k, (q_lots, px) in enumerate(fills):
        q = Decimal(q_lots) if inverse else Decimal(q_lots) / 1000
        a.apply_fill(k, inst, q, px, inst.fee_exact(q, px, is_maker=k % 2 == 0))
    assert a.journal.replay() == a.balances
    # the position is the sum of the fills
    total = sum((Decimal(q) if inverse else Decimal(q) / 1000 for q, _ in fills), Decimal(0))
    assert a.positions[inst.symbol].qty == total


@settings(max_examples=15, deadline=None)
@given(qty=st.integers(min_value=1, max_value=50), price=st.integers(min_value=10, max_value=500))
def test_engine_round_trip_at_flat_price_costs_the_two_taker_fees(qty: int, price: int) -> None:
    # buy at bar 1's open, sell at bar 2's open, one flat price, no slippage, no funding:
    # final wallet = 100,000 - 2 x qty x price x 0.00055 (the Bybit profile's taker rate)
    strat = Scripted({0: lambda ctx: ctx.buy(BTC, qty), 1: lambda ctx: ctx.close(BTC)})
    result = run(strat, {BTC: flat(4, price=float(price))})
    assert result.state["collateral_exact"]["USDT"] == str(
        (Decimal(100_000) - 2 * Decimal(qty) * Decimal(price) * Decimal("0.00055"))
        .quantize(Decimal("1e-12")))
    assert float(result.fills["realized_pnl"].sum()) == 0.0
