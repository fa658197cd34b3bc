"""Fee rates and tier tables in whole runs: which source wins, what the run says about it.

Issue 14 items 6 (profile fee rates applied: instrument > profile > default) and 7 (tier tables:
run configuration > dataset > profile > flat default, warned once per symbol). Bars are flat
(open = high = low = close), slippage and funding are off, so every number is worked by hand.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import backtester
from backtester import Strategy
from backtester.cli import _register, cli
from backtester.instruments import instrument_from_symbol
from backtester.report._load import load_run
from backtester.report.sections import warnings_panel

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def flat_bars(price: float, n: int = 4) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": price, "high": price, "low": price, "close": price,
                         "volume": 1e9})


class BuyOnce(Strategy):
    """Market-buy ``qty`` of every symbol at the first step (filled at the next open)."""

    qty: str = "1"

    def on_bar(self, ctx: Any) -> None:
        if getattr(self, "_done", False):
            return
        self._done = True
        for sym in ctx.symbols:
            ctx.buy(sym, Decimal(self.qty))


def _run(**keys: Any) -> backtester.BacktestResult:
    keys.setdefault("data", {BTC: flat_bars(50_000.0)})
    return backtester.run(BuyOnce, funding="zero", slippage_bps=0,
                          collateral={"USDT": 100_000}, **keys)


# -- fees (item 6) --------------------------------------------------------------------------------
@pytest.mark.parametrize(("profile", "fee", "source"), [
    # 1 BTC at 50,000, taker: Bybit 0.055 % -> 27.50; Binance USDⓈ-M and OKX 0.05 % -> 25.00
    ("bybit", "27.5", "profile"), ("binance-usdm", "25", "profile"), ("okx", "25", "profile")])
def test_a_taker_fill_pays_the_profiles_rate(profile: str, fee: str, source: str,
                                             tmp_path: Path) -> None:
    res = _run(profile=profile)
    assert Decimal(res.fills.iloc[0]["fee_exact"]) == Decimal(fee)
    assert Decimal(res.state["collateral_exact"]["USDT"]) == Decimal(100_000) - Decimal(fee)
    rates = res.meta["fee_rates"][BTC]
    assert (rates["taker_source"], rates["maker_source"]) == (source, source)
    # config.json says which source each symbol's fees came from
    config = json.loads((res.write(tmp_path / "run") / "config.json").read_text())
    assert config["fee_rates"][BTC]["taker_source"] == source
    assert any(w.startswith(f"fees of {BTC}: maker ") and f"profile {profile}" in w
               for w in res.warnings)


def test_the_instruments_own_rate_wins_and_is_not_warned_about() -> None:
    # an instrument stating taker 0.04 % (a ccxt market's, or the caller's): 1 x 50,000 x
    # 0.0004 = 20.00 under any profile
    inst = instrument_from_symbol(BTC, maker_rate=Decimal("0.0001"),
                                  taker_rate=Decimal("0.0004"))
    res = _run(profile="bybit", instruments={BTC: inst})
    assert Decimal(res.fills.iloc[0]["fee_exact"]) == Decimal(20)
    assert res.meta["fee_rates"][BTC] == {"maker": "0.0001", "taker": "0.0004",
                                          "maker_source": "instrument",
                                          "taker_source": "instrument"}
    assert not any(w.startswith("fees of") for w in res.warnings)


# -- tiers (item 7) -------------------------------------------------------------------------------
def test_missing_tiers_warn_once_per_symbol_in_the_run_and_the_report(tmp_path: Path) -> None:
    # OKX ships no tier tables: both perps get the flat 0.5 % (1 BTC at 50,000 -> MM 250;
    # 1 ETH at 2,500 -> MM 12.5), one warning each, also in the report's warnings section
    res = _run(profile="okx", data={BTC: flat_bars(50_000.0), ETH: flat_bars(2_500.0)},
               compare_margin_modes=True)
    flat = [w for w in res.warnings if "no tier table" in w]
    assert len(flat) == 2
    assert flat[0].startswith(f"no tier table: {BTC} has none in the run's tiers, the data or "
                              "profile okx; maintenance margin at a flat 0.5 %")
    assert flat[1].startswith(f"no tier table: {ETH} has none")
    assert res.meta["tier_sources"] == {BTC: "flat default", ETH: "flat default"}
    assert res.equity["maintenance_margin"].iloc[-1] == pytest.approx(50_000 * 0.005
                                                                        + 2_500 * 0.005)
    panel = warnings_panel(load_run(res.write(tmp_path / "run")))
    assert [p for p in panel if "no tier table" in p] == flat


def _csv(path: Path, price: float) -> Path:
    frame = flat_bars(price)
    frame["ts"] = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(path, index=False)
    return path


def test_dataset_tiers_from_data_import_rank_between_run_tiers_and_the_profile(
        tmp_path: Path) -> None:
    # a dataset imported with `data import`, its tiers from a ccxt-layout file:
    #   BTC: 0-50 MMR 1 %, 50+ MMR 2 % (maintenance amount derived: 50 x (2 % - 1 %) = 0.5)
    #   ETH: flat MMR 4 %, overridden by the run's tiers (flat 3 %)
    # long 1 BTC at 100 (notional 100): MM = 100 x 2 % - 0.5 = 1.5 (the Bybit profile's
    # BTC table would give 0.5); long 1 ETH at 100: MM = 3 (run tiers) -> total 4.5
    tiers_file = tmp_path / "tiers.json"
    tiers_file.write_text(json.dumps({
        BTC: [{"tier": 1, "minNotional": 0, "maxNotional": 50, "maintenanceMarginRate": 0.01,
               "maxLeverage": 100},
              {"tier": 2, "minNotional": 50, "maxNotional": 1e9,
               "maintenanceMarginRate": 0.02, "maxLeverage": 50}],
        ETH: [{"tier": 1, "minNotional": 0, "maxNotional": 1e9, "maintenanceMarginRate": 0.04,
               "maxLeverage": 20}]}))
    _register()
    runner = CliRunner()
    root = tmp_path / "datasets"
    for sym, name in ((BTC, "btc.csv"), (ETH, "eth.csv")):
        out = runner.invoke(cli, ["data", "import", str(_csv(tmp_path / name, 100.0)),
                                  "--exchange", "myex", "--symbol", sym, "--kind", "ohlcv",
                                  "--datasets", str(root)], catch_exceptions=False)
        assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["data", "import", "--exchange", "myex", "--tiers-file",
                              str(tiers_file), "--datasets", str(root)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    stored = json.loads((root / "myex" / "leverage_tiers.json").read_text())
    assert stored["source"] == "file tiers.json"
    assert set(stored["tiers"]) == {BTC, ETH}

    run_tiers = {ETH: [{"min_notional": 0, "mmr": 0.03, "max_leverage": 20}]}
    res = backtester.run(BuyOnce, dataset="myex", datasets_root=root, profile="bybit",
                         funding="zero", slippage_bps=0, collateral={"USDT": 100_000},
                         tiers=run_tiers, leverage=10)
    assert res.meta["tier_sources"] == {BTC: "dataset", ETH: "run configuration"}
    assert res.equity["maintenance_margin"].iloc[-1] == pytest.approx(1.5 + 3.0)
    assert not any("no tier table" in w for w in res.warnings)


def test_data_import_errors_are_one_line(tmp_path: Path) -> None:
    _register()
    runner = CliRunner()
    cases = [
        (["data", "import", "--exchange", "x"],
         "error: data import: give a data FILE (with --symbol and --kind), --markets or "
         "--tiers-file"),
        (["data", "import", "--exchange", "x", "--tiers-file", str(tmp_path / "none.json")],
         f"error: tiers file {tmp_path / 'none.json'}: cannot read"),
        (["data", "import", str(_csv(tmp_path / "b.csv", 1.0)), "--exchange", "x",
          "--kind", "ohlcv"], "error: --symbol: required to import the data file b.csv"),
    ]
    for args, start in cases:
        out = runner.invoke(cli, [*args, "--datasets", str(tmp_path / "ds")],
                            catch_exceptions=False)
        assert out.exit_code == 2, out.output
        assert out.output.strip().startswith(start), out.output
        assert len(out.output.strip().splitlines()) == 1
