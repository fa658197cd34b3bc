"""``backtester sweep`` with bad input: one line, exit 2, nothing run (issue 15, items 6, 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from backtester.cli import _register, cli

_register()
REPO = Path(__file__).resolve().parents[3]
PAIR = str(REPO / "strategies" / "hedged_pair.py")


def _sweep(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["sweep", PAIR, "--dataset", "sample", "--datasets",
                                      str(tmp_path / "ds"), "--output-dir",
                                      str(tmp_path / "reports"), "--workers", "1", *args])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return result.exit_code, lines[0]


@pytest.mark.parametrize("address", ["notaurl", "localhost:8786", "tls://host"])
def test_scheduler_that_is_not_an_address_15(tmp_path: Path, address: str) -> None:
    code, line = _sweep(tmp_path, "--grid", "entry_z=2", "--scheduler", address)

    assert code == 2
    assert line.startswith(f"error: --scheduler: {address!r} is not a Dask scheduler address")
    assert not (tmp_path / "reports").exists()


def test_grid_too_large_is_refused_with_its_size_15(tmp_path: Path) -> None:
    code, line = _sweep(tmp_path, "--grid", "entry_z=0:1e9:1e-9")

    assert code == 2
    assert "1,000,000,000,000,000,001 values" in line
    assert not (tmp_path / "reports").exists()


def test_max_runs_lowers_the_limit_15(tmp_path: Path) -> None:
    code, line = _sweep(tmp_path, "--grid", "entry_z=1,2", "--grid", "lookback=24,48",
                        "--max-runs", "3")

    assert code == 2
    assert "the grid makes 2 entry_z × 2 lookback = 4 runs, more than the limit of 3" in line


def test_tls_flags_need_a_tls_scheduler_15(tmp_path: Path) -> None:
    code, line = _sweep(tmp_path, "--grid", "entry_z=2", "--tls-ca-file", "ca.pem",
                        "--tls-cert", "c.pem", "--tls-key", "k.pem")

    assert code == 2
    assert "need --scheduler tls://host:port" in line
