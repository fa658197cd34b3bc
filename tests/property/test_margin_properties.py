"""Invariants of the margin math (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtester.margin import evaluate
from backtester.margin.profile import load_profile
from backtester.margin.tiers import TierTable

pytestmark = pytest.mark.property

BTC_2024 = load_profile("binance-usdm").tiers["BTC/USDT:USDT"]


def rows(table: TierTable) -> list[dict[str, float]]:
    return [{"min_notional": t.min_notional, "max_notional": t.max_notional, "mmr": t.mmr,
             "maintenance_amount": t.maintenance_amount, "max_leverage": t.max_leverage}
            for t in table.tiers]


def solved_lp(profile: str, symbol: str, *, mode: str = "isolated",
              collateral: dict[str, float], positions: list[dict[str, Any]],
              prices: dict[str, dict[str, float]]) -> float | None:
    """The calculator's liquidation price of the first position."""
    out = evaluate({"profile": profile, "mode": mode, "position_mode": "hedge",
                    "collateral": collateral, "prices": prices, "positions": positions})
    lp: float | None = out["positions"][0]["liquidation_price"]
    return lp


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


@settings(max_examples=300, deadline=None)
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
    balance = qty * entry / leverage                  # isolated wallet = IM at entry
    # by hand: MB(P) = balance + q·(P − entry), MM(P) = the table's MM of |q|·P
    surplus_now = balance + signed * (mark - entry) - BTC_2024.maintenance_margin(qty * mark)
    lp = solved_lp("binance-usdm", "BTC/USDT:USDT", collateral={"USDT": 0.0},
                   prices={"BTC/USDT:USDT": {"mark": mark}},
                   positions=[{"symbol": "BTC/USDT:USDT", "side": "long" if is_long else "short",
                               "size": qty, "entry_price": entry, "leverage": 1,
                               "isolated_margin": balance, "tiers": rows(BTC_2024)}])
    if not is_long or leverage > 2.0:
        assert lp is not None        # a short always has one; so does a long above 2x here
    if surplus_now > 0.0 and lp is not None:
        assert (lp < mark) if is_long else (lp > mark)
    if lp is not None:
        mb = balance + signed * (lp - entry)
        assert mb == pytest.approx(BTC_2024.maintenance_margin(qty * lp), rel=1e-6, abs=1e-9)


@settings(max_examples=300, deadline=None)
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
    signed = contracts if is_long else -contracts
    face = contracts * 100.0

    def surplus(price: float) -> float:
        # by hand: MB = wallet + q·100·(1/entry − 1/P) coin, MM = the table's MM of face / P
        return (wallet_coin + signed * 100.0 * (1 / entry - 1 / price)
                - coin_tiers.maintenance_margin(face / price))

    lp = solved_lp("binance-coinm", "BTC/USD:BTC", collateral={"BTC": 0.0},
                   prices={"BTC/USD:BTC": {"mark": mark}},
                   positions=[{"symbol": "BTC/USD:BTC", "side": "long" if is_long else "short",
                               "size": contracts, "entry_price": entry, "leverage": 1,
                               "isolated_margin": wallet_coin,
                               "instrument": {"type": "swap", "linear": False,
                                              "contract_size": 100, "settle": "BTC"},
                               "tiers": rows(coin_tiers)}])
    if surplus(mark) > 0.0 and lp is not None:
        assert (lp < mark) if is_long else (lp > mark)
    if lp is not None:
        assert surplus(lp) == pytest.approx(0.0, abs=1e-6 * (wallet_coin + face / lp))


@settings(max_examples=200, deadline=None)
@given(
    long_qty=st.floats(min_value=0.01, max_value=100.0),
    short_qty=st.floats(min_value=0.01, max_value=100.0),
    other_upnl=st.floats(min_value=-50_000.0, max_value=50_000.0),
    other_mm=st.floats(min_value=0.0, max_value=10_000.0),
    wallet=st.floats(min_value=1_000.0, max_value=1_000_000.0),
)
def test_cross_hedge_surplus_zero_at_lp(long_qty: float, short_qty: float, other_upnl: float,
                                        other_mm: float, wallet: float) -> None:
    # the other contract: 100 ETH short @ 3,000 marked to give other_upnl, its flat rate giving
    # other_mm; both held at their marks while the BTC legs move
    eth_mark = 3_000.0 - other_upnl / 100.0
    eth_rate = [{"min_notional": 0, "mmr": other_mm / (100.0 * eth_mark),
                 "maintenance_amount": 0, "max_leverage": 1}]
    btc = rows(BTC_2024)
    lp = solved_lp("binance-usdm", "BTC/USDT:USDT", mode="cross", collateral={"USDT": wallet},
                   prices={"BTC/USDT:USDT": {"mark": 61_000.0},
                           "ETH/USDT:USDT": {"mark": eth_mark}},
                   positions=[
                       {"symbol": "BTC/USDT:USDT", "side": "long", "size": long_qty,
                        "entry_price": 60_000.0, "leverage": 1, "tiers": btc},
                       {"symbol": "BTC/USDT:USDT", "side": "short", "size": short_qty,
                        "entry_price": 62_000.0, "leverage": 1, "tiers": btc},
                       {"symbol": "ETH/USDT:USDT", "side": "short", "size": 100.0,
                        "entry_price": 3_000.0, "leverage": 1, "tiers": eth_rate}])
    if lp is not None:
        # by hand: each hedge-mode leg is margined on its own notional
        mb = (wallet + other_upnl + long_qty * (lp - 60_000.0)
              - short_qty * (lp - 62_000.0))
        mm = (other_mm + BTC_2024.maintenance_margin(long_qty * lp)
              + BTC_2024.maintenance_margin(short_qty * lp))
        assert mb == pytest.approx(mm, rel=1e-6, abs=1e-6)
