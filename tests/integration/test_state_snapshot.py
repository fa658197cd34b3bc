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
