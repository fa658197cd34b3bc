"""The report's "capital" section on real runs (tests/report_runs.py) and on edited run data.

The runs are the report tests' tiny backtests; the edited ones add the columns a run only has
in some cases (option books: ``portfolio_initial_margin``; ``--survival-collateral``: the
survival columns of comparison.csv; Deribit daily settlement: session journal rows) or remove
columns an older run folder lacks.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtester.report._html import fmt
from backtester.report._load import RunData, load_run
from backtester.report.capital import capital
from backtester.report.sections import SECTION_IDS
from tests.report_runs import SCENARIOS, built_runs

CAPITAL_CHARTS = ("fig-capital-wallet", "fig-capital-utilization", "fig-capital-utilization-hist",
                  "fig-capital-idle")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return built_runs(tmp_path_factory.getbasetemp() / "report-runs")


def _section(path: Path) -> str:
    doc = (path / "report.html").read_text(encoding="utf-8")
    return doc.split('<section id="capital">')[1].split("</section>")[0]


def test_capital_is_a_section_after_the_margin_dashboard() -> None:
    ids = [sid for sid, _ in SECTION_IDS]
    assert ids.index("capital") == ids.index("margin") + 1


@pytest.mark.parametrize("kind", SCENARIOS)
def test_every_report_has_the_capital_section_and_its_charts(runs: dict[str, Path],
                                                             kind: str) -> None:
    body = _section(runs[kind])
    assert "Capital-efficiency metrics" in body
    for div in CAPITAL_CHARTS:
        assert f'id="{div}"' in body, div
    # no option was held in these runs: no standard-vs-portfolio chart
    assert "fig-capital-portfolio-im" not in body


def test_week_metrics_are_formatted_from_metrics_json(runs: dict[str, Path]) -> None:
    path = runs["week"]
    m = json.loads((path / "metrics.json").read_text())
    body = _section(path)
    rom = m["return_on_average_margin"]
    assert isinstance(rom, float)
    assert f"<td data-v=\"return on average initial margin\">return on average initial margin" \
           f"</td><td data-v=\"{fmt(rom, percent=True)}\">{fmt(rom, percent=True)}</td>" in body
    assert fmt(m["margin_utilization_max"], percent=True) in body
    assert f"{fmt(m['peak_initial_margin'])} USD" in body
    # the run compared margin modes: its capital columns are shown, survival was not asked for
    assert "Capital by margin mode" in body
    modes = body.split("Capital by margin mode")[1]
    assert '<td data-v="isolated">isolated</td>' in modes
    assert '<td data-v="portfolio">portfolio</td>' in modes
    assert "survival collateral not computed" in body


def test_no_trade_run_shows_dashes_for_undefined_metrics(runs: dict[str, Path]) -> None:
    path = runs["notrade"]
    m = json.loads((path / "metrics.json").read_text())
    assert m["return_on_average_margin"] is None  # no margin was ever used
    body = _section(path)
    assert '<td data-v="—">—</td>' in body
    assert "no margin-mode comparison in this run" in body


def _edited(path: Path, **changes: object) -> RunData:
    return dataclasses.replace(load_run(path), **changes)  # type: ignore[arg-type]


def test_portfolio_margin_chart_when_options_were_held(runs: dict[str, Path]) -> None:
    run = load_run(runs["week"])
    eq = run.equity.copy()
    pim = eq["initial_margin"].to_numpy(dtype="float64") * 0.4
    pim[: len(pim) // 2] = np.nan  # options held only in the second half
    eq["portfolio_initial_margin"] = pim
    body = capital(_edited(runs["week"], equity=eq,
                           metrics={**run.metrics, "portfolio_to_standard_margin": 0.4}))
    assert 'id="fig-capital-portfolio-im"' in body
    assert "portfolio IM / standard IM" in body
    assert "40.00% of the standard one" in body


def test_all_nan_portfolio_margin_draws_no_chart(runs: dict[str, Path]) -> None:
    eq = load_run(runs["week"]).equity.copy()
    eq["portfolio_initial_margin"] = np.nan
    assert "fig-capital-portfolio-im" not in capital(_edited(runs["week"], equity=eq))


def test_survival_columns_and_session_ledger_note(runs: dict[str, Path]) -> None:
    run = load_run(runs["week"])
    assert run.comparison is not None
    cmp_ = run.comparison.copy()
    cmp_["survival_collateral_scale"] = [0.25, 0.5, 0.125][: len(cmp_)]
    cmp_["survival_collateral_usd"] = cmp_["survival_collateral_scale"] * 100_000
    journal = run.journal.copy()
    journal.loc[journal.index[:2], "ledger"] = "session"
    body = capital(_edited(runs["week"], comparison=cmp_, journal=journal))
    assert "survival collateral not computed" not in body
    assert "smallest multiple of the starting collateral" in body
    assert "25,000.00" in body  # 0.25 x 100,000 USD
    assert "2 journal entries were booked to the session ledger" in body
    assert "08:00 UTC" in body


def test_old_run_folder_without_capital_data_gets_notes(runs: dict[str, Path]) -> None:
    run = load_run(runs["week"])
    keep = [c for c in run.equity.columns
            if c not in ("wallet", "available", "margin_utilization", "idle_collateral",
                         "margin_balance", "initial_margin")]
    metrics = {k: v for k, v in run.metrics.items()
               if k not in ("return_on_average_margin", "return_on_peak_margin",
                            "average_initial_margin", "peak_initial_margin", "traded_notional",
                            "capital_velocity", "fee_drag", "funding_drag")
               and not k.startswith(("margin_utilization", "idle_collateral"))}
    body = capital(_edited(runs["week"], equity=run.equity[keep], metrics=metrics,
                           comparison=None))
    assert "holds no capital-efficiency numbers" in body
    assert "no wallet / available balance per step" in body
    assert "no margin utilization to show" in body
    assert "fig-capital" not in body


def test_empty_equity_still_renders(runs: dict[str, Path]) -> None:
    run = load_run(runs["week"])
    body = capital(_edited(runs["week"], equity=run.equity.iloc[:0]))
    assert "no steps were recorded" in body
    assert "Capital by margin mode" in body


def test_histogram_counts_every_finite_step(runs: dict[str, Path]) -> None:
    from backtester.report.charts import histogram_figure

    util = pd.Series([0.1, 0.2, np.nan, 0.2, np.inf, 0.9])
    fig = histogram_figure(util, title="u", xaxis="x", bins=4, percent=True)
    assert int(sum(fig.data[0].y)) == 4  # NaN and inf are not steps with a utilization
    assert "(4 steps)" in fig.layout.title.text
