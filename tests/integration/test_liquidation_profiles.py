"""Liquidation by profile: Binance closes, Bybit/OKX step down tiers, Deribit slices; tiered
brackets gate leverage. Tier tables are the real Binance BTC/USDT:USDT brackets (2024-10-24) from
../shared/data/exchange/binance_leverage_tiers.json."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

PERP = "BTC/USDT:USDT"


def bars(prices: list[float]) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=len(prices), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": prices, "high": prices, "low": prices,
                         "close": prices, "volume": 1e9})


class Open(Strategy):
    qty: str = "20"
    leverage: float = 20.0

    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            ctx.set_leverage(PERP, self.leverage)
            self.ticket = ctx.buy(PERP, Decimal(self.qty))
            type(self).last_ticket = self.ticket


def run(profile: str, tiers: dict, prices: list[float], collateral: float, qty: str = "20",
        leverage: float = 20.0):
    inst = {PERP: instrument_from_symbol(PERP, taker_rate=Decimal(0), maker_rate=Decimal(0))}
    return backtester.run(Open, data={PERP: bars(prices)}, instruments=inst, funding="zero",
                          profile=profile, tiers=tiers, margin_check="close", slippage_bps=0,
                          liquidation_slippage_bps=0, collateral={"USDT": collateral},
                          params={"qty": qty, "leverage": leverage})


def liquidation_steps(result) -> list[dict]:
    ev = [e for e in result.events if e["event"] == "PositionLiquidated"]
    assert len(ev) == 1
    return [s for s in ev[0]["steps"] if s["action"] == "liquidation_order"]


@pytest.mark.shared
def test_binance_closes_the_whole_position(btc_tiers):
    # Long 20 BTC @ 50,000 = 1,000,000 notional: tier 3 (600k-3M, MMR 0.65 %, cum 950).
    # Price 47,000: notional 940,000, MM = 940,000 x 0.65 % - 950 = 5,160.
    # Collateral 65,000: MB = 65,000 - 60,000 = 5,000 <= 5,160 -> liquidation; Binance closes all.
    r = run("binance-usdm", btc_tiers, [50_000.0] * 3 + [47_000.0] * 3, 65_000)
    steps = liquidation_steps(r)
    assert [s["qty"] for s in steps] == [Decimal("-20")]
    assert r.state["positions"] == []


@pytest.mark.shared
def test_bybit_steps_down_to_the_lower_tier_and_stops_when_healthy(btc_tiers):
    # Same book on the tiered (Bybit/OKX) rule: reduce to the floor of the current tier
    # (600,000 notional): keep 600,000 / 940,000 x 20 = 12.766 -> 12.766 BTC (lot 0.001) stays,
    # 7.234 BTC is closed at 47,000 with the 0.55 % fee (7.234 x 47,000 x 0.55 % = 1,870.0).
    # Then tier 2: MM = 12.766 x 47,000 x 0.5 % - 50 = 2,950.0; MB = 65,000 - 60,000 - 1,870.0
    # = 3,130.0 > 2,950.0 -> healthy, one step.
    r = run("bybit", btc_tiers, [50_000.0] * 3 + [47_000.0] * 3, 65_000)
    steps = liquidation_steps(r)
    assert len(steps) == 1
    assert steps[0]["qty"] == Decimal("-7.234")
    assert steps[0]["fee"] == Decimal("1869.989")
    assert r.state["positions"][0]["size"] == pytest.approx(12.766)


@pytest.mark.shared
def test_deribit_liquidates_in_slices_until_healthy(btc_tiers):
    # Deribit's incremental rule closes slices of 10 % of the starting size (2 BTC) and
    # re-checks after each; each slice pays the 0.5 % liquidation fee (2 x 47,000 x 0.5 % = 470).
    # Slice 1: 18 BTC -> MM = 846,000 x 0.65 % - 950 = 4,549; MB = 5,000 - 470 = 4,530 -> again.
    # Slice 2: 16 BTC -> MM = 752,000 x 0.65 % - 950 = 3,938; MB = 4,530 - 470 = 4,060 -> healthy.
    r = run("deribit", btc_tiers, [50_000.0] * 3 + [47_000.0] * 3, 65_000)
    steps = liquidation_steps(r)
    assert [s["qty"] for s in steps] == [Decimal("-2"), Decimal("-2")]
    assert [s["fee"] for s in steps] == [Decimal("470"), Decimal("470")]
    assert r.state["positions"][0]["size"] == pytest.approx(16)


@pytest.mark.shared
def test_leverage_above_the_bracket_maximum_is_rejected(btc_tiers):
    # 20 BTC @ 50,000 = 1,000,000 notional is tier 3, whose maximum leverage is 75x: asking for
    # 100x is refused with leverage_exceeds_bracket; 50x is admitted.
    r = run("binance-usdm", btc_tiers, [50_000.0] * 4, 1_000_000, leverage=100.0)
    assert list(r.rejections["reason"]) == ["leverage_exceeds_bracket"]
    assert "75" in r.rejections["message"].iloc[0]
    ok = run("binance-usdm", btc_tiers, [50_000.0] * 4, 1_000_000, leverage=50.0)
    assert ok.rejections.empty


@pytest.mark.shared
def test_liquidation_fills_are_orders_of_their_own_in_the_order_log(btc_tiers):
    # issue 17 item 3: the two Deribit slices above (2 BTC each at 47,000) are filled through
    # the engine's order log, each under an order of its own — before, their fills carried
    # order_id 0 and orders.parquet had no row for them
    r = run("deribit", btc_tiers, [50_000.0] * 3 + [47_000.0] * 3, 65_000)
    orders, fills = r.orders, r.fills
    liq_orders = orders[orders["tag"] == "liquidation"]
    assert len(liq_orders) == 2
    assert list(liq_orders["side"]) == ["sell", "sell"]
    assert [Decimal(q) for q in liq_orders["qty"]] == [Decimal(2), Decimal(2)]
    assert list(liq_orders["type"]) == ["market", "market"]
    assert list(liq_orders["tif"]) == ["IOC", "IOC"]
    assert liq_orders["reduce_only"].all()
    assert list(liq_orders["status"]) == ["filled", "filled"]
    liq_fills = fills[fills["liquidity"] == "liquidation"]
    assert list(liq_fills["order_id"]) == list(liq_orders["order_id"])
    assert list(liq_fills["qty"]) == [-2.0, -2.0]
    # every order id is unique and the strategy's own buy keeps its id
    assert orders["order_id"].is_unique
    user = fills[fills["liquidity"] != "liquidation"]
    assert list(user["order_id"]) == [Open.last_ticket.order_id]
    assert 0 not in set(fills["order_id"])
