"""Progress on stderr for long commands, only on a terminal and never with --quiet; console
output readable at 80 columns; warnings once each, on one line (issue 16 items 10 and 11).

The commands run through click's CliRunner, whose stderr is not a terminal: rich's
``TTY_COMPATIBLE=1`` makes it one (as a real terminal would be).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import backtester
from backtester import display
from backtester.cli import _register, cli
from tests.builders import RecordingProgress
from tests.report_runs import BuyAndHold, make_dataset

_register()
STRATEGY = "tests.report_runs:BuyAndHold"
TTY = {"TTY_COMPATIBLE": "1"}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    make_dataset(root, "tiny", hours=72)
    return root


def _run(datasets: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    args = ["run", STRATEGY, "--dataset", "tiny", "--datasets", str(datasets), "--funding",
            "zero", "--collateral", "USDT=100000", "--output-dir", str(out), "--profile", "bybit",
            *extra]
    return CliRunner().invoke(cli, args, env=env)


def test_run_reports_its_steps_on_a_terminal(datasets: Path, tmp_path: Path) -> None:
    res = _run(datasets, tmp_path, "--quiet", env=TTY)
    assert res.exit_code == 0, res.stderr
    assert "backtest BuyAndHold" not in res.stderr  # --quiet: no bars even on a terminal

    res = _run(datasets, tmp_path, env=TTY)
    assert res.exit_code == 0, res.stderr
    for step in ("loading dataset tiny", "backtest BuyAndHold (cross)", "collecting results",
                 "writing results", "report BuyAndHold-tiny-"):
        assert step in res.stderr, step
    assert "\x1b[" in res.stderr  # drawn with terminal control codes, then cleared


def test_no_progress_when_stderr_is_not_a_terminal(datasets: Path, tmp_path: Path) -> None:
    res = _run(datasets, tmp_path)
    assert res.exit_code == 0, res.stderr
    assert "backtest BuyAndHold" not in res.stderr
    assert "\x1b[" not in res.stderr
    assert "\x1b[" not in res.stdout


def test_report_command_reports_progress(datasets: Path, tmp_path: Path) -> None:
    folder = Path(_run(datasets, tmp_path, "--quiet").stdout.strip().splitlines()[-1])
    res = CliRunner().invoke(cli, ["report", str(folder), "--no-tearsheet"], env=TTY)
    assert res.exit_code == 0, res.stderr
    assert f"report {folder.name}" in res.stderr
    quiet = CliRunner().invoke(cli, ["report", str(folder), "--no-tearsheet", "--quiet"],
                               env=TTY)
    assert quiet.stdout.strip() == str(folder / "report.html")
    assert f"report {folder.name}" not in quiet.stderr


def test_the_library_reports_through_the_callers_object(datasets: Path) -> None:
    # no printing in the library: a run tells the reporter it is given what it does
    progress = RecordingProgress()
    result = backtester.run(BuyAndHold, dataset="tiny", datasets_root=datasets, funding="zero",
                            collateral={"USDT": 100_000}, progress=progress, profile="bybit")
    opened = [e[1] for e in progress.log if e[0] == "open"]
    assert opened == ["loading dataset tiny", "backtest BuyAndHold (cross)",
                      "collecting results"]
    # the bar loop is polled, not called: the last poll is the number of steps run
    assert ("open", "backtest BuyAndHold (cross)", len(result.equity)) in progress.log
    polled = [e[1] for e in progress.log if e[0] == "update"]
    assert polled == [len(result.equity)]


def test_summary_fits_80_columns_with_units_and_legend(datasets: Path, tmp_path: Path) -> None:
    res = _run(datasets, tmp_path, "--compare-margin-modes")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "…" not in out
    # every line fits 80 columns, but file paths, which are never cut
    assert max(len(line) for line in out.splitlines()
               if not line.startswith(("results: ", "report: "))) <= 80
    folder = Path(re.search(r"results: (\S+)", out).group(1))  # type: ignore[union-attr]
    metrics = json.loads((folder / "metrics.json").read_text())
    # one format: money with two decimals, fractions as percentages
    fees = display.money(metrics["fees_paid"])
    assert re.search(rf"fees_paid \(USD\)\s+{re.escape(fees)} *\n", out)
    assert display.percent(metrics["total_return"]) in out
    assert display.COST_SIGNS in out
    assert display.LEGEND in out  # the comparison has undefined survival collateral
    assert "margin modes compared" in out


def test_each_warning_is_printed_once_on_one_line(datasets: Path, tmp_path: Path) -> None:
    # the tiny dataset has no markets.json: every run (3 with the comparison) warns that the
    # contract specs of each symbol are guessed; Python's own warning display is not used
    res = _run(datasets, tmp_path, "--compare-margin-modes", "--quiet")
    assert res.exit_code == 0, res.stderr
    lines = res.stderr.splitlines()
    guessed = [ln for ln in lines if "guessed from the symbol" in ln]
    # one line a symbol, each once although every run of the comparison warns it
    assert [ln.split(" tick ")[0] for ln in guessed] == [
        "warning: contract specs guessed from the symbol: BTC/USDT:USDT",
        "warning: contract specs guessed from the symbol: ETH/USDT:USDT"]
    assert "BacktesterWarning" not in res.stderr
    assert all(ln.startswith("warning: ") for ln in lines)


def test_warnings_logged_by_the_library_are_not_printed_twice(datasets: Path,
                                                             tmp_path: Path) -> None:
    # outside pytest (whose log capture hides it) Python prints library log warnings without a
    # handler; the command prints each warning itself, once, so the library's log stays quiet
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    code = "import sys; from backtester.cli import main; sys.argv[0] = 'backtester'; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "run", STRATEGY, "--dataset", "tiny", "--datasets",
         str(datasets), "--funding", "zero", "--output-dir", str(tmp_path), "--profile",
         "bybit", "--quiet"],
        capture_output=True, text=True, check=False, cwd=repo,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines
    assert all(ln.startswith("warning: ") for ln in lines), done.stderr
    assert sum("guessed from the symbol: BTC/USDT:USDT" in ln for ln in lines) == 1
