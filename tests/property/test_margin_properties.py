"""Invariants of the margin math (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtester.margin.prices import Leg, liquidation_price, margin_surplus
from backtester.margin.profiles import load_profile
from backtester.margin.tiers import TierTable

pytestmark = pytest.mark.property

BTC_2024 = load_profile("binance-usdm").tiers["BTC/USDT:USDT"]


def assert_mb_equals_mm(legs: list[Leg], price: float, *, balance: float,
                        other_mm: float = 0.0) -> None:
    """At the LP the recomputed margin balance equals maintenance margin (1e-6 relative)."""
    mb = balance + sum(leg.fx * leg.upnl(price) for leg in legs)
    mm = other_mm + sum(leg.fx * leg.maintenance_margin(price) for leg in legs)
    assert mb == pytest.approx(mm, rel=1e-6, abs=1e-9)


@st.composite
def tier_tables(draw: st.DrawFn) -> TierTable:
    n = draw(st.integers(min_value=1, max_value=8))
    steps = draw(st.lists(st.floats(min_value=1_000.0, max_value=1e7), min_size=n - 1,
                          max_size=n - 1))
    floors = [0.0]
    for s in steps:
        floors.append(floors[-1] + s)
    rates = sorted(draw(st.lists(st.floats(min_value=0.001, max_value=0.5), min_size=n,
                                 max_size=n)))
    return TierTable.from_rows([{"min_notional": f, "mmr": r, "max_leverage": 10}
                                for f, r in zip(floors, rates)])


@given(tier_tables(), st.data())
def test_mm_is_continuous_across_tier_boundaries(table: TierTable, data: st.DataObject) -> None:
    # with cum from the §2.1 recursion, MM just below a floor equals MM at the floor
    for tier in table.tiers[1:]:
        floor = tier.min_notional
        below = table.maintenance_margin(floor * (1 - 1e-12))
        at = table.maintenance_margin(floor)
        assert at == pytest.approx(below, rel=1e-9, abs=1e-6)
    # and MM never decreases with notional
    a, b = sorted(data.draw(st.lists(st.floats(min_value=0.0, max_value=1e8), min_size=2,
                                     max_size=2)))
    assert table.maintenance_margin(b) >= table.maintenance_margin(a) - 1e-6 * max(1.0, b)


@settings(max_examples=300)
@given(
    qty=st.floats(min_value=0.001, max_value=500.0),
    entry=st.floats(min_value=1_000.0, max_value=200_000.0),
    move=st.floats(min_value=-0.05, max_value=0.05),
    leverage=st.floats(min_value=1.5, max_value=100.0),
    is_long=st.booleans(),
)
def test_lp_side_and_surplus_zero_linear(qty: float, entry: float, move: float, leverage: float,
                                         is_long: bool) -> None:
    signed = qty if is_long else -qty
    mark = entry * (1 + move)
    leg = Leg(qty=signed, entry_price=entry, tiers=BTC_2024)
    balance = qty * entry / leverage                  # isolated wallet = IM at entry
    surplus_now = margin_surplus([leg], mark, balance=balance)
    lp = liquidation_price([leg], mark=mark, balance=balance)
    if not is_long or leverage > 2.0:
        assert lp is not None        # a short always has one; so does a long above 2x here
    if surplus_now > 0.0 and lp is not None:
        assert (lp < mark) if is_long else (lp > mark)
    if lp is not None:
        assert_mb_equals_mm([leg], lp, balance=balance)


@settings(max_examples=300)
@given(
    contracts=st.integers(min_value=1, max_value=1_000_000),
    entry=st.floats(min_value=1_000.0, max_value=200_000.0),
    move=st.floats(min_value=-0.05, max_value=0.05),
    wallet_coin=st.floats(min_value=0.01, max_value=1_000.0),
    is_long=st.booleans(),
)
def test_lp_side_and_surplus_zero_inverse(contracts: int, entry: float, move: float,
                                          wallet_coin: float, is_long: bool) -> None:
    coin_tiers = TierTable.from_rows([
        {"min_notional": 0, "mmr": 0.004, "max_leverage": 125},
        {"min_notional": 5, "mmr": 0.005, "max_leverage": 100},
        {"min_notional": 50, "mmr": 0.01, "max_leverage": 50},
        {"min_notional": 500, "mmr": 0.05, "max_leverage": 10},
    ])
    mark = entry * (1 + move)
    leg = Leg(qty=contracts if is_long else -contracts, entry_price=entry, contract_size=100,
              is_linear=False, tiers=coin_tiers)
    surplus_now = margin_surplus([leg], mark, balance=wallet_coin)
    lp = liquidation_price([leg], mark=mark, balance=wallet_coin)
    if surplus_now > 0.0 and lp is not None:
        assert (lp < mark) if is_long else (lp > mark)
    if lp is not None:
        assert_mb_equals_mm([leg], lp, balance=wallet_coin)


@settings(max_examples=200)
@given(
    long_qty=st.floats(min_value=0.01, max_value=100.0),
    short_qty=st.floats(min_value=0.01, max_value=100.0),
    other_upnl=st.floats(min_value=-50_000.0, max_value=50_000.0),
    other_mm=st.floats(min_value=0.0, max_value=10_000.0),
    wallet=st.floats(min_value=1_000.0, max_value=1_000_000.0),
)
def test_cross_hedge_surplus_zero_at_lp(long_qty: float, short_qty: float, other_upnl: float,
                                        other_mm: float, wallet: float) -> None:
    legs = [Leg(qty=long_qty, entry_price=60_000.0, tiers=BTC_2024),
            Leg(qty=-short_qty, entry_price=62_000.0, tiers=BTC_2024)]
    balance = wallet + other_upnl
    lp = liquidation_price(legs, mark=61_000.0, balance=balance, other_maintenance=other_mm)
    if lp is not None:
        assert_mb_equals_mm(legs, lp, balance=balance, other_mm=other_mm)
