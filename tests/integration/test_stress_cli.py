"""``backtester stress`` on a run folder written by ``backtester.run(...).write(path)``."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import backtester
from backtester import display
from backtester.cli import _register, cli
from backtester.errors import BacktesterWarning
from backtester.margin.calculator import evaluate
from backtester.report import write_report
from backtester.risk.shock import shock
from backtester.risk.stress import load_snapshot
from tests.report_runs import BuyAndHold, make_dataset

_register()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 1 BTC long (~50,000 notional) + 0.1 ETH short on 10,000 USDT: a crash of roughly -20 %
    # liquidates it
    base = tmp_path_factory.mktemp("stress")
    make_dataset(base / "datasets", "stress", hours=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BacktesterWarning)   # specs guessed, no funding data
        result = backtester.run(BuyAndHold, dataset="stress", datasets_root=base / "datasets",
                                funding="zero", collateral={"USDT": 10_000}, profile="bybit",
                                params={"qty": 1.0, "leverage": 10.0})
    return result.write(base / "run")


def test_stress_cli_on_a_run_folder_writes_stress_json(run_dir: Path) -> None:
    args = ["stress", str(run_dir), "--scenario", "ftx_nov_2022", "--grid",
            "btc=-0.05:-0.5:0.05", "--beta-eth", "1.2", "--vol", "0:1:0.5",
            "--monte-carlo", "40", "--horizon", "2d", "--seed", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "stress scenarios" in result.output
    data = json.loads((run_dir / "stress.json").read_text())
    assert len(data["scenarios"]) == 1 + 10 * 3
    assert data["scenarios"][0]["name"] == "ftx_nov_2022"
    worst = data["scenarios"][-1]      # BTC -50 %, ETH -60 %, vol +100 %
    assert worst["status"] == "liquidate"
    assert worst["liquidated"][0] == "BTC/USDT:USDT long"
    # the smallest uniform crash liquidates, 0.1 % less does not
    move = data["smallest_crash"]["move"]
    assert -0.3 < move < -0.1
    snap = load_snapshot(run_dir).snapshot
    assets = data["smallest_crash"]["assets"]
    assert evaluate(shock(snap, dict.fromkeys(assets, move)))["status"] == "liquidate"
    assert evaluate(shock(snap, dict.fromkeys(assets, move + 0.001)))["status"] != "liquidate"
    # issue 14 item 10: each underlying alone and all together, down and up; the headline is
    # the smallest absolute move found, and it liquidates while 0.1 % less does not
    nearest = data["nearest_liquidation"]
    found = [m for m in nearest["moves"] if m["move"] is not None]
    assert {(m["underlying"], m["direction"]) for m in nearest["moves"]} == {
        (u, d) for u in ("all", "BTC", "ETH") for d in ("down", "up")}
    head = nearest["nearest"]
    assert abs(head["move"]) == min(abs(m["move"]) for m in found)
    assert abs(head["move"]) <= abs(move)
    moved = dict.fromkeys(head["assets"], head["move"])
    closer = dict.fromkeys(head["assets"], head["move"] - math.copysign(0.001, head["move"]))
    assert evaluate(shock(snap, moved))["status"] == "liquidate"
    assert evaluate(shock(snap, closer))["status"] != "liquidate"
    who = "every underlying together" if head["underlying"] == "all" else head["underlying"]
    assert "nearest liquidating moves" in result.output
    assert f"nearest liquidating move: {display.percent(head['move'], signed=True)}" in (
        " ".join(result.output.split()))
    assert who in result.output
    n_bars = len(backtester_equity(run_dir))
    assert len(data["distance_to_liquidation"]["series"]) == n_bars
    mc = data["monte_carlo"]
    assert (mc["n_paths"], mc["seed"], mc["horizon_bars"]) == (40, 3, 48)
    # the same seed gives the same probability
    again = CliRunner().invoke(cli, [*args, "--quiet"])
    assert again.exit_code == 0
    assert again.output == ""
    assert json.loads((run_dir / "stress.json").read_text())["monte_carlo"] == mc


def backtester_equity(run_dir: Path) -> list[float]:
    import pandas as pd

    return pd.read_parquet(run_dir / "equity.parquet")["equity"].tolist()


def test_report_shows_the_stress_section_only_when_stress_json_exists(run_dir: Path,
                                                                      tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["stress", str(run_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    doc = write_report(run_dir, tearsheet_enabled=False).read_text()
    section = doc.split('<section id="stress">')[1].split("</section>")[0]
    assert "smallest uniform crash that liquidates" in section
    assert "nearest liquidating move" in section
    assert 'id="stress-moves"' in section
    assert "black_thursday_2020" in section
    assert doc.index('id="stress"') < doc.index('<section id="warnings">')
    (run_dir / "stress.json").unlink()
    doc = write_report(run_dir, tearsheet_enabled=False).read_text()
    assert '<section id="stress">' not in doc


def test_stress_cli_on_a_snapshot_file_with_json_out(run_dir: Path, tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(load_snapshot(run_dir).snapshot))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(cli, ["stress", str(snap), "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [s["name"] for s in data["scenarios"]] == [
        "black_thursday_2020", "may_2021_crash", "ftx_nov_2022"]
    assert data["distance_to_liquidation"] is None
    assert not (tmp_path / "stress.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["stress", "/no/such/run"], "error: /no/such/run: no such run folder or snapshot file"),
    (["stress", "RUN", "--grid", "eth=-0.1:-0.2:0.1"], "error: --grid: expected btc="),
    (["stress", "RUN", "--scenario", "nope"], "error: scenario 'nope': unknown"),
    (["stress", "RUN", "--monte-carlo", "5", "--horizon", "soon"], "error: horizon: expected"),
])
def test_stress_cli_errors_are_one_line_exit_2(run_dir: Path, args: list[str],
                                               message: str) -> None:
    args = [str(run_dir) if a == "RUN" else a for a in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(message)


def test_stress_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["stress", "--help"])
    assert result.exit_code == 0
    assert "backtester stress reports/my-run" in result.output


def test_stress_output_readable_at_80_columns_with_progress_16(run_dir: Path) -> None:
    # issue 16 items 10 and 11: Monte Carlo progress on a terminal (stderr), the scenario
    # table whole at 80 columns (it used to cut numbers), money with two decimals
    args = ["stress", str(run_dir), "--grid", "btc=-0.05:-0.5:0.05", "--beta-eth", "1.2",
            "--monte-carlo", "40", "--horizon", "2d", "--seed", "3"]
    res = CliRunner().invoke(cli, args, env={"TTY_COMPATIBLE": "1"})
    assert res.exit_code == 0, res.output
    assert "monte carlo 0/40 paths" in res.stderr
    plain = CliRunner().invoke(cli, args)  # piped: no bars
    assert "monte carlo" not in plain.stderr
    out = plain.stdout
    assert "…" not in out
    assert max(len(line) for line in out.splitlines() if not line.startswith("written ")) <= 80
    data = json.loads((run_dir / "stress.json").read_text())
    for s in data["scenarios"]:
        assert display.money(s["equity"]) in out
        assert display.money(s["equity_change"], signed=True) in out
        assert display.percent(s["margin_ratio"]) in out
