"""One stablecoin set and one valuation conversion for the whole project (issue 17 item 4).

The bar loop's feed left TUSD out of its stablecoins while the calculator valued it at 1 USD:
a run's TUSD collateral silently counted for nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.data.feed import Feed
from backtester.instruments import assets
from backtester.margin import snapshot
from backtester.margin.snapshot import parse_snapshot, valuation_price


def test_one_stablecoin_set_17() -> None:
    assert snapshot.STABLECOINS is assets.STABLECOINS
    assert all(Feed.is_stable(a) for a in assets.STABLECOINS)
    assert Feed.is_stable("TUSD")
    assert not Feed.is_stable("BTC")


class _Idle(Strategy):
    def on_bar(self, ctx: backtester.Context) -> None:
        pass


def test_tusd_collateral_counts_at_one_usd_in_a_run_17() -> None:
    ts = pd.date_range("2024-01-01", periods=24, freq="1h", tz="UTC")
    px = np.full(24, 50_000.0)
    bars = pd.DataFrame({"ts": ts, "open": px, "high": px, "low": px, "close": px,
                         "volume": 1.0})
    result = backtester.run(_Idle, data={"BTC/USDT:USDT": bars}, profile="bybit",
                            collateral={"USDT": 1_000, "TUSD": 1_000}, funding="zero")
    # no trade, no funding: equity = 1,000 USDT x 1 + 1,000 TUSD x 1 USD = 2,000 USD every bar
    # (before: 1,000, the TUSD dropped)
    assert result.equity["equity"].tolist() == [2_000.0] * 24


def _snap(**extra: object) -> snapshot.ParsedSnapshot:
    return parse_snapshot({"profile": "bybit", "collateral": {"USDT": 10_000.0}, **extra})


def test_valuation_price_is_the_one_conversion_17() -> None:
    inverse: dict[str, Any] = {
        "prices": {"BTC/USD:BTC": {"mark": 50_000.0, "index": 49_000.0}},
        "positions": [{"symbol": "BTC/USD:BTC", "side": "long", "size": 1_000,
                       "entry_price": 50_000.0, "leverage": 10,
                       "instrument": {"type": "swap", "linear": False, "contract_size": 1},
                       "tiers": [{"min_notional": 0, "mmr": 0.005, "maintenance_amount": 0,
                                  "max_leverage": 100}]}]}
    snap = _snap(**inverse)
    # a stablecoin without an index: 1 USD; a USD pool's coin-settled contract: its coin at
    # that contract's index (49,000, not the mark); an asset with no price at all: unknown
    assert valuation_price(snap, "TUSD") == 1.0
    assert valuation_price(snap, "BTC") == 49_000.0
    assert valuation_price(snap, "ETH") is None
    # an index given for the coin itself wins
    with_index = _snap(prices={**inverse["prices"], "BTC": {"index": 48_000.0}},
                       positions=inverse["positions"])
    assert valuation_price(with_index, "BTC") == 48_000.0
    # a coin-valued profile counts in its coin: 1 per unit
    coin = parse_snapshot({"profile": "binance-coinm", "collateral": {"BTC": 1.0}})
    assert valuation_price(coin, "BTC") == pytest.approx(1.0)
