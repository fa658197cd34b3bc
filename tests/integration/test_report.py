"""report.html for a wipe-out, a run without trades, a one-day run and a normal week.

The runs are real backtests on tiny stored datasets (tests/report_runs.py); their reports are
written while quantstats' and yfinance's download functions raise, so a report that renders
proves that no benchmark was downloaded.
"""

from __future__ import annotations

import html
import json
import re
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from backtester.cli import cli, main
from backtester.report.attribution import attribution_from_frames
from backtester.report.page import PLOTLYJS_BEGIN, PLOTLYJS_END
from backtester.report.sections import SECTION_IDS
from tests.report_runs import SCENARIOS, built_runs

EXTERNAL_REF = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
ANY_URL = re.compile(r"https?://[^\s\"'<>)]+", re.IGNORECASE)
# XML namespace names are identifiers, never fetched
NAMESPACES = ("http://www.w3.org/",)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return built_runs(tmp_path_factory.getbasetemp() / "report-runs")


def _report(path: Path) -> str:
    return (path / "report.html").read_text(encoding="utf-8")


def _outside_plotlyjs(doc: str) -> str:
    # plotly.js is a vendored library inlined once; its source holds URL strings of map tile
    # servers it never contacts here. Everything else in the page is checked.
    head, _, rest = doc.partition(PLOTLYJS_BEGIN)
    _, _, tail = rest.partition(PLOTLYJS_END)
    return head + tail


@pytest.mark.parametrize("kind", SCENARIOS)
def test_every_scenario_writes_a_report_with_every_section(runs: dict[str, Path],
                                                           kind: str) -> None:
    doc = _report(runs[kind])
    for sid, _ in SECTION_IDS:
        assert f'<section id="{sid}">' in doc
    assert doc.count(PLOTLYJS_BEGIN) == 1  # plotly.js inlined exactly once


@pytest.mark.parametrize("kind", SCENARIOS)
def test_report_references_no_external_url(runs: dict[str, Path], kind: str) -> None:
    page = _outside_plotlyjs(_report(runs[kind]))
    # unescape so the quantstats document inside <iframe srcdoc="..."> is checked too
    text = html.unescape(page)
    assert EXTERNAL_REF.findall(text) == []
    assert [u for u in ANY_URL.findall(text) if not u.startswith(NAMESPACES)] == []
    assert "<script src" not in text


def test_wipeout_report_explains_the_liquidation(runs: dict[str, Path]) -> None:
    path = runs["wipeout"]
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["is_wiped_out"] is True
    assert metrics["liquidations"] == 1
    doc = _report(path)
    assert "quantstats tearsheet skipped: the equity curve was wiped out" in doc
    assert "<iframe" not in doc
    liq = doc.split('<section id="liquidations">')[1].split("</section>")[0]
    assert "#1 at" in liq
    assert "Insurance fund flow" in liq
    assert "takeover" in liq  # the wipe-out gapped beyond the bankruptcy price


def test_no_trade_report_is_sane(runs: dict[str, Path]) -> None:
    doc = _report(runs["notrade"])
    assert "no fills: the strategy placed no order that executed" in doc
    assert "no liquidation happened in this run" in doc
    assert "no order was rejected" in doc


def test_one_day_report_skips_quantstats_with_a_note(runs: dict[str, Path]) -> None:
    doc = _report(runs["oneday"])
    assert "quantstats tearsheet skipped: 0 daily return(s)" in doc


def test_week_report_has_tearsheet_benchmark_comparison_and_rejections(
        runs: dict[str, Path]) -> None:
    doc = _report(runs["week"])
    tear = doc.split('<section id="tearsheet">')[1].split("</section>")[0]
    assert "<iframe" in tear
    assert "365-day year" in tear
    assert "benchmark: BTC/USDT:USDT buy and hold" in tear
    assert "Periods/Year: 365" in html.unescape(tear)
    cmp_ = doc.split('<section id="comparison">')[1].split("</section>")[0]
    assert "isolated" in cmp_
    assert "qty_not_lot_multiple" in doc.split('<section id="rejections">')[1]
    assert 'class="sortable" id="trades-table"' in doc


@pytest.mark.parametrize("kind", SCENARIOS)
def test_attribution_matches_the_equity_curve(runs: dict[str, Path], kind: str) -> None:
    path = runs[kind]
    equity = pd.read_parquet(path / "equity.parquet")
    out = attribution_from_frames(pd.read_parquet(path / "journal.parquet"),
                                  pd.read_parquet(path / "trades.parquet"),
                                  pd.read_parquet(path / "positions.parquet"),
                                  end=equity["ts"].iloc[-1])
    usdt = out["USDT"]
    assert usdt.parts_sum == usdt.equity_change  # exact
    assert usdt.deposits == Decimal(100_000 if kind != "wipeout" else 3_000)
    # the float equity curve agrees with the booked attribution to valuation precision
    curve_change = float(equity["equity"].iloc[-1]) - float(usdt.deposits)
    assert curve_change == pytest.approx(float(usdt.equity_change), abs=1e-6)


def test_cli_report_command_rewrites_the_report(runs: dict[str, Path]) -> None:
    path = runs["wipeout"]
    (path / "report.html").unlink()
    from backtester.cli import _register

    _register()
    result = CliRunner().invoke(cli, ["report", str(path), "--no-tearsheet"])
    assert result.exit_code == 0, result.output
    assert f"report: {path / 'report.html'}" in result.output
    assert (path / "report.html").exists()


def test_cli_report_on_a_folder_that_is_not_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["backtester", "report", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "is not a run folder" in capsys.readouterr().err
