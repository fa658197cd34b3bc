"""``backtester run`` and ``backtester demo`` through click's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from backtester.cli import _register, cli
from tests.cli_helpers import invoke as _invoke
from tests.cli_helpers import one_error_line as _one_error_line

_register()
REPO = Path(__file__).resolve().parents[3]
PAIR = str(REPO / "strategies" / "hedged_pair.py")


def test_run_with_a_bad_parameter(tmp_path: Path) -> None:
    code, _, err = _invoke("run", PAIR, "--dataset", "sample", "--datasets", str(tmp_path),
                           "--param", "lookbak=5")
    assert code == 2
    assert "did you mean 'lookback'" in _one_error_line(err)


def test_run_with_a_badly_typed_parameter(tmp_path: Path) -> None:
    code, _, err = _invoke("run", PAIR, "--dataset", "sample", "--datasets", str(tmp_path),
                           "--param", "lookback=many")
    assert code == 2
    assert "'lookback' expects int" in _one_error_line(err)


def test_run_with_an_unknown_dataset(tmp_path: Path) -> None:
    code, _, err = _invoke("run", PAIR, "--dataset", "nosuch", "--datasets", str(tmp_path),
                           "--output-dir", str(tmp_path / "reports"))
    assert code == 2
    assert "no dataset 'nosuch'" in _one_error_line(err)


def test_run_with_a_missing_strategy_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    code, _, err = _invoke("run", str(missing), "--dataset", "sample", "--datasets",
                           str(tmp_path))
    assert code == 2
    line = _one_error_line(err)
    assert "nope.py" in line
    assert "not found" in line


def test_run_with_a_strategy_file_that_fails_to_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import no_such_module_xyz\n")
    code, _, err = _invoke("run", str(bad), "--dataset", "sample", "--datasets", str(tmp_path))
    assert code == 2
    assert "failed to import" in _one_error_line(err)


def test_run_with_a_bad_flag_value(tmp_path: Path) -> None:
    code, _, err = _invoke("run", PAIR, "--dataset", "sample", "--datasets", str(tmp_path),
                           "--margin-mode", "sideways")
    assert code == 2
    assert "margin_mode" in _one_error_line(err)


def test_demo_writes_a_results_folder(tmp_path: Path) -> None:
    # on a terminal (TTY_COMPATIBLE=1 makes CliRunner's stderr one for rich): progress for
    # each step of the 30 seconds the demo used to spend in silence (issue 16 item 10)
    result = CliRunner().invoke(cli, ["demo", "--datasets", str(tmp_path / "ds"),
                                      "--output-dir", str(tmp_path / "reports")],
                                env={"TTY_COMPATIBLE": "1"})
    code, out, err = result.exit_code, result.stdout, result.stderr
    assert code == 0, err
    for step in ("sample dataset (synthetic", "backtest HedgedPair (cross)",
                 "backtest HedgedPair (isolated)", "backtest HedgedPair (portfolio)",
                 "writing results", "report HedgedPair-sample-"):
        assert step in err, step
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # stdout is a "terminal" too: colours
    folder = Path(out.split("results: ")[1].split()[0])
    assert folder.parent == tmp_path / "reports"
    # one report; the other margin modes' files for its comparison, without full reports
    # of their own (issue 16 item 12)
    assert (folder / "report.html").is_file()
    for mode in ("isolated", "portfolio"):
        assert (folder / f"alternative-{mode}" / "equity.parquet").is_file()
        assert not (folder / f"alternative-{mode}" / "report.html").exists()
    # the portfolio run's modelling assumptions: one line naming the file that lists them
    listed = json.loads((folder / "alternative-portfolio" / "warnings.json").read_text())
    family = [w for w in listed if w.startswith("portfolio margin assumption: ")]
    assert len(family) >= 3
    line = (f"warning: portfolio margin assumption: {len(family)} of them, listed in "
            f"{folder / 'alternative-portfolio' / 'warnings.json'}")
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", err).splitlines()
    assert line in lines
    assert "warning: synthetic data: the sample dataset is generated, not market history" \
        in lines
    for name in ("metrics.json", "state.json", "config.json", "equity.parquet",
                 "trades.parquet", "journal.parquet", "positions.parquet"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["is_synthetic"] is True
    assert config["dataset"] == "sample"
    warnings = json.loads((folder / "warnings.json").read_text())
    assert any("synthetic" in w for w in warnings)


@pytest.mark.parametrize("command", ["run", "demo"])
def test_help_has_an_example(command: str) -> None:
    code, out, _ = _invoke(command, "--help")
    assert code == 0
    assert "Example:" in out
