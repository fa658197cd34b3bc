"""A run's state.json is a margin-calculator snapshot that reproduces the engine's final state."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import backtester
from backtester import Strategy
from backtester.cli import _register, cli
from backtester.instruments import instrument_from_symbol


class Book(Strategy):
    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            ctx.set_leverage("BTC/USDT:USDT", 10)
            ctx.set_leverage("ETH/USDT:USDT", 10)
            ctx.buy("BTC/USDT:USDT", Decimal(2))
            ctx.sell("ETH/USDT:USDT", Decimal(30))


def bars(prices: list[float]) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=len(prices), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": prices, "high": prices, "low": prices,
                         "close": prices, "volume": 1e9})


@pytest.mark.shared
def test_state_json_evaluates_to_the_engine_state(shared_data: Path, tmp_path: Path):
    tiers = json.loads((shared_data / "exchange" / "binance_leverage_tiers.json").read_text())
    data = {"BTC/USDT:USDT": bars([60_000.0, 60_000.0, 58_000.0, 57_500.0]),
            "ETH/USDT:USDT": bars([3_000.0, 3_000.0, 2_950.0, 2_900.0])}
    insts = {s: instrument_from_symbol(s) for s in data}
    r = backtester.run(Book, data=data, instruments=insts, funding="zero",
                       profile="binance-usdm", margin_check="close", collateral={"USDT": 50_000},
                       tiers={s: tiers[s] for s in data})
    out = backtester.margin(r.state)
    last = r.equity.iloc[-1]
    assert out["margin_balance"] == pytest.approx(last["margin_balance"], rel=1e-9)
    assert out["maintenance_margin"] == pytest.approx(last["maintenance_margin"], rel=1e-9)
    assert out["initial_margin"] == pytest.approx(last["initial_margin"], rel=1e-9)
    assert [p["symbol"] for p in out["positions"]] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    # the CLI reads the file a run wrote
    path = r.write(tmp_path / "run")
    _register()
    res = CliRunner().invoke(cli, ["margin", str(path / "state.json")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["status"] == out["status"]


class TwoPools(Strategy):
    legs: tuple[tuple[str, str, float], ...] = ()  # symbol, signed contracts, leverage

    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            for sym, qty, leverage in self.legs:
                ctx.set_leverage(sym, leverage)
                q = Decimal(qty)
                (ctx.buy if q > 0 else ctx.sell)(sym, abs(q))


def test_state_json_of_a_usdm_run_with_usdt_and_usdc_pools():
    # binance-usdm keeps one pool per settle asset: the calculator's account fields of the
    # two-pool snapshot (totals in USD; ratio and status of the worst pool) are the engine's
    # last recorded values. The USDC pool (2,000, long 1 BTC from 50,000 to 48,400: MB 400,
    # MM 242, ratio 0.605) is the worst; the USDT pool (10,000, short 10 ETH) is healthy.
    data = {"BTC/USDC:USDC": bars([50_000.0, 50_000.0, 49_000.0, 48_400.0]),
            "ETH/USDT:USDT": bars([3_000.0, 3_000.0, 2_950.0, 2_900.0])}
    insts = {s: instrument_from_symbol(s) for s in data}
    r = backtester.run(TwoPools, data=data, instruments=insts, funding="zero",
                       profile="binance-usdm", margin_check="close", slippage_bps=0,
                       collateral={"USDT": 10_000, "USDC": 2_000},
                       params={"legs": (("BTC/USDC:USDC", "1", 50.0),
                                          ("ETH/USDT:USDT", "-10", 10.0))})
    assert len(r.state["positions"]) == 2
    out = backtester.margin(r.state)
    last = r.equity.iloc[-1]
    for key in ("margin_balance", "maintenance_margin", "initial_margin", "margin_ratio",
                "available", "wallet_balance", "unrealized_pnl"):
        assert out[key] == pytest.approx(last[key if key != "wallet_balance" else "wallet"],
                                         rel=1e-9), key
    usdc_mb = 2_000 - 1_600 - 50_000 * 0.0005  # less the entry fee (taker 0.05 %)
    assert out["margin_ratio"] == pytest.approx(0.005 * 48_400 / usdc_mb, rel=1e-9)
    assert out["status"] == "ok"


def test_state_json_of_a_coinm_run_with_btc_and_eth_pools():
    # binance-coinm values each coin in its own snapshot (the calculator refuses two coin
    # pools in one, naming the field): split the run's state.json per coin; each pool's
    # amounts are in its coin, x the coin's index they add up to the engine's USD totals,
    # and the worst pool's ratio is the engine's margin_ratio.
    data = {"BTC/USD:BTC": bars([50_000.0, 50_000.0, 48_000.0, 47_000.0]),
            "ETH/USD:ETH": bars([2_000.0, 2_000.0, 2_100.0, 2_200.0])}
    insts = {s: instrument_from_symbol(s) for s in data}
    r = backtester.run(TwoPools, data=data, instruments=insts, funding="zero",
                       profile="binance-coinm", margin_check="close", slippage_bps=0,
                       collateral={"BTC": 0.05, "ETH": 1.0},
                       params={"legs": (("BTC/USD:BTC", "200", 10.0),
                                          ("ETH/USD:ETH", "-1000", 10.0))})
    state = r.state
    assert len(state["positions"]) == 2
    with pytest.raises(backtester.ConfigError, match="one coin pool"):
        backtester.margin(state)
    totals = {"margin_balance": 0.0, "maintenance_margin": 0.0, "initial_margin": 0.0}
    ratios = []
    for coin in ("BTC", "ETH"):
        part = {**state, "collateral": {coin: state["collateral"][coin]},
                "positions": [p for p in state["positions"] if p["instrument"]["settle"] == coin]}
        del part["collateral_exact"]
        out = backtester.margin(part)
        assert out["valuation_currency"] == coin
        px = state["prices"][f"{coin}/USD:{coin}"]["index"]
        for key in totals:
            totals[key] += out[key] * px
        ratios.append(out["margin_ratio"])
    last = r.equity.iloc[-1]
    for key, value in totals.items():
        assert value == pytest.approx(last[key], rel=1e-9), key
    assert max(ratios) == pytest.approx(last["margin_ratio"], rel=1e-9)
