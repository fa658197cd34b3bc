"""The README's and the docs' examples run exactly as printed (issue 16 item 6).

The code blocks are read from README.md and docs/margin.md at test time, so a change to the
documents is a change to what runs here. The data files the README names are freqtrade's
recorded XRP files, a ccxt markets extract and Binance's tier file from the shared data
folder, linked (not copied) into a temporary working folder under the names the README uses.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from backtester.cli import _register, cli

REPO = Path(__file__).resolve().parents[2]
FUT = "freqtrade-testdata/futures"
#: the README's file names -> the shared data files they are
FILES = {
    "XRP_USDT_USDT-5m-futures.feather": f"{FUT}/XRP_USDT_USDT-5m-futures.feather",
    "XRP_USDT_USDT-1h-mark.feather": f"{FUT}/XRP_USDT_USDT-1h-mark.feather",
    "XRP_USDT_USDT-8h-funding_rate.feather": f"{FUT}/XRP_USDT_USDT-8h-funding_rate.feather",
    "markets.json": "ccxt-static/markets/binance.derivatives.extract.json",
    "binance_leverage_tiers.json": "exchange/binance_leverage_tiers.json",
}


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start:end if end >= 0 else None]


def _readme() -> str:
    return (REPO / "README.md").read_text()


@pytest.fixture
def workdir(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, rel in FILES.items():
        (tmp_path / name).symlink_to(shared_data / rel)
    strategy = next(b for b in _blocks(_readme(), "python")
                    if b.startswith("# my_strategy.py"))
    (tmp_path / "my_strategy.py").write_text(strategy)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BACKTESTER_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_strategy", None)


def test_readme_own_data_commands_run_as_printed_16(workdir: Path) -> None:
    # from freqtrade's files to a report, with no file renamed or deleted
    (commands,) = _blocks(_section(_readme(), "### Run it on your own data"), "bash")
    _register()
    lines = [line for line in commands.splitlines() if line.strip()]
    assert len(lines) == 5
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "backtester"
        res = CliRunner().invoke(cli, argv[1:], catch_exceptions=False)
        assert res.exit_code == 0, f"{line}\n{res.output}"
    (run,) = (workdir / "reports").iterdir()
    assert (run / "report.html").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["profile"] == "binance-usdm"
    assert config["params"]["symbol"] == "XRP/USDT:USDT"
    warnings = json.loads((run / "warnings.json").read_text())
    # the hourly marks are used on the 5m bars, and the specs come from markets.json
    assert any(w.startswith("XRP/USDT:USDT: mark candles are 1h, trade candles 5m")
               for w in warnings)
    assert not any("guessed" in w for w in warnings)


def test_readme_own_data_python_runs_as_printed_16(workdir: Path) -> None:
    # before: the snippet used undefined `candles`, `mark_candles`
    python = [b for b in _blocks(_section(_readme(), "### Run it on your own data"), "python")]
    assert len(python) == 1
    namespace: dict[str, Any] = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python[0], "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.metrics["trades"] > 0
    assert out.getvalue().splitlines()[0] == (f"{result.metrics['total_return']} "
                                               f"{result.metrics['trades']}")
    assert any(w.startswith("XRP/USDT:USDT: mark candles are 1h") for w in result.warnings)
    assert not any("guessed" in w for w in result.warnings)


def test_readme_names_the_constraints_file_16() -> None:
    assert "PIP_CONSTRAINT=constraints.txt pip install" in _readme()
    assert (REPO / "constraints.txt").is_file()


def test_margin_doc_snapshot_runs_in_the_calculator_16(tmp_path: Path) -> None:
    # before: docs/margin.md pointed to DESIGN §4, a file users do not have
    doc = (REPO / "docs" / "margin.md").read_text()
    (snapshot,) = _blocks(_section(doc, "## The calculator"), "json")
    path = tmp_path / "snapshot.json"
    path.write_text(snapshot)
    _register()
    res = CliRunner().invoke(cli, ["margin", str(path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    pos = out["positions"][0]
    # the numbers the doc works by hand: 0.5 BTC at mark 59,000, entry 60,000, 1,000 USDT
    assert pos["notional"] == 29_500.0
    assert out["unrealized_pnl"] == -500.0
    assert out["margin_balance"] == 500.0
    assert out["initial_margin"] == 1_475.0
    assert out["maintenance_margin"] == 118.0
    assert out["margin_ratio"] == pytest.approx(0.236, rel=1e-12)
    assert out["status"] == "ok"
    assert pos["liquidation_price"] == pytest.approx(29_000 / 0.498, rel=1e-12)  # 58,232.93
    assert pos["bankruptcy_price"] == 58_000.0
    assert "58,232.93" in doc
