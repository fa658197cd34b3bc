"""Report weight and report fixes of issue 16 (items 12 and 13).

Weight: plotly.js inline (default), shared or from the CDN; no full reports for the other
margin modes unless asked; series downsampled to what a chart can show, said once per page.
Fixes: coinciding equity curves told apart, tables that fit the page (see also the browser
tests), "CAGR%", greek units, dates instead of raw milliseconds, one sign convention for
funding. The two fixes that change results (isolated liquidations at the position's own
ratio, daily closes on close-stamped days) are in test_report_days_and_isolated_ratio.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import backtester
from backtester import display
from backtester.cli import _register, cli
from backtester.errors import BacktesterWarning, ConfigError
from backtester.report import write_report
from backtester.report._load import RunData
from backtester.report.charts import MAX_POINTS
from backtester.report.page import PLOTLYJS_BEGIN, PLOTLYJS_END
from backtester.report.sections import greeks
from tests.report_runs import BuyAndHold, built_runs, make_dataset

_register()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return built_runs(tmp_path_factory.getbasetemp() / "report-runs")


@pytest.fixture
def week(runs: dict[str, Path], tmp_path: Path) -> Path:
    # a private copy: these tests rewrite its report
    return Path(shutil.copytree(runs["week"], tmp_path / "reports" / "week"))


def figure(doc: str, div_id: str) -> dict[str, Any]:
    """The ``data`` and ``layout`` of plotly figure ``div_id`` in a page (arrays decoded)."""
    start = doc.index(f'"{div_id}",', doc.index("Plotly.newPlot(", doc.index(f'id="{div_id}"')))
    dec = json.JSONDecoder()
    pos = start + len(f'"{div_id}",')
    data, pos = dec.raw_decode(doc, doc.index("[", pos))
    layout, _ = dec.raw_decode(doc, doc.index("{", doc.index(",", pos)))

    def plain(v: Any) -> Any:
        if isinstance(v, dict) and "bdata" in v:
            return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return {"data": plain(data), "layout": layout}


def section(doc: str, sid: str) -> str:
    return doc.split(f'<section id="{sid}">')[1].split("</section>")[0]


# -- item 12: weight ------------------------------------------------------------------------
def test_plotly_inline_is_the_self_contained_default_16(week: Path) -> None:
    from plotly.offline import get_plotlyjs

    doc = write_report(week, tearsheet_enabled=False).read_text(encoding="utf-8")
    lib = doc.split(PLOTLYJS_BEGIN)[1].split(PLOTLYJS_END)[0]
    assert lib == f"<script>{get_plotlyjs()}</script>"
    assert not list(week.parent.glob("plotly-*.js"))


def test_plotly_shared_writes_the_library_once_next_to_the_runs_16(week: Path,
                                                                   tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    inline = write_report(week, tearsheet_enabled=False).stat().st_size
    doc = write_report(week, tearsheet_enabled=False, plotly="shared").read_text("utf-8")
    shared = week.parent / f"plotly-{get_plotlyjs_version()}.min.js"
    assert shared.read_text(encoding="utf-8") == get_plotlyjs()
    assert f'<script charset="utf-8" src="../{shared.name}"></script>' in doc
    assert len(doc.encode()) < inline - 4_000_000  # the 4.8 MB library is not in the page
    # a second run folder references the same file, which is not written again
    stamp = shared.stat().st_mtime_ns
    other = Path(shutil.copytree(week, week.parent / "other"))
    write_report(other, tearsheet_enabled=False, plotly="shared")
    assert shared.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in week.parent.glob("plotly-*")) == [shared.name]


def test_plotly_cdn_pins_the_bundled_library_16(week: Path) -> None:
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    doc = write_report(week, tearsheet_enabled=False, plotly="cdn").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(get_plotlyjs().encode()).digest()).decode()
    assert (f'src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js" '
            f'integrity="sha256-{digest}"') in doc
    with pytest.raises(ConfigError, match="plotly: expected one of inline, cdn, shared"):
        write_report(week, plotly="compressed")


def test_cli_report_takes_plotly_mode_16(week: Path) -> None:
    res = CliRunner().invoke(cli, ["report", str(week), "--no-tearsheet", "--plotly", "shared"])
    assert res.exit_code == 0, res.output
    assert list(week.parent.glob("plotly-*.min.js"))


def test_other_margin_modes_get_full_reports_only_when_asked_16(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    make_dataset(root, "tiny", hours=72)
    base = ["run", "tests.report_runs:BuyAndHold", "--dataset", "tiny", "--datasets", str(root),
            "--funding", "zero", "--compare-margin-modes", "--quiet", "--plotly", "shared",
            "--profile", "bybit"]
    plain = CliRunner().invoke(cli, [*base, "--output-dir", str(tmp_path / "a")])
    asked = CliRunner().invoke(cli, [*base, "--output-dir", str(tmp_path / "b"),
                                     "--alternative-reports"])
    for res, has_reports in ((plain, False), (asked, True)):
        assert res.exit_code == 0, res.stderr
        folder = Path(res.stdout.strip())
        assert (folder / "report.html").is_file()
        for mode in ("isolated", "portfolio"):
            alt = folder / f"alternative-{mode}"
            assert (alt / "equity.parquet").is_file()  # the comparison reads them
            assert (alt / "report.html").is_file() is has_reports
    # the alternatives' reports share the one library in the output folder
    assert [p.name for p in (tmp_path / "b").glob("plotly-*.min.js")]
    doc = (Path(asked.stdout.strip()) / "alternative-isolated" / "report.html").read_text()
    assert 'src="../../plotly-' in doc


def test_long_series_are_downsampled_and_said_once_16(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    make_dataset(root, "long", hours=MAX_POINTS + 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BacktesterWarning)
        result = backtester.run(BuyAndHold, dataset="long", datasets_root=root, funding="zero",
                                collateral={"USDT": 100_000}, profile="bybit")
    doc = write_report(result.write(tmp_path / "run"), tearsheet_enabled=False).read_text()
    steps = len(result.equity)
    assert f"the {steps:,} steps are grouped in buckets of 2" in doc
    assert "downsampled" not in doc.lower().replace("charts draw at most", "")
    eq = figure(doc, "fig-equity")
    (line,) = eq["data"]
    assert len(line["x"]) == len(line["y"]) <= MAX_POINTS
    assert eq["layout"]["xaxis"]["type"] == "date"
    # times as epoch milliseconds: the last point is the run's last step
    assert line["x"][-1] == pd.Timestamp(result.equity.index[-1]).value // 1_000_000
    assert "downsampled" not in json.dumps(eq["layout"]["title"])


# -- item 13: fixes -------------------------------------------------------------------------
def test_coinciding_equity_curves_are_told_apart_16(runs: dict[str, Path]) -> None:
    # BuyAndHold holds no options: portfolio margin equals cross, so their curves coincide
    doc = (runs["week"] / "report.html").read_text(encoding="utf-8")
    part = section(doc, "comparison")
    assert "Identical equity curves" in part
    assert "cross = portfolio" in part
    lines = {t["name"]: t["line"] for t in figure(doc, "fig-compare")["data"]}
    assert len({json.dumps(v, sort_keys=True) for v in lines.values()}) == 3
    assert lines["cross"]["width"] > lines["portfolio"]["width"]  # the wide one underneath
    # the comparison table: one column per mode, measures in their units
    head = re.search(r'id="comparison-table"><thead><tr>(.*?)</tr>', part).group(1)  # type: ignore[union-attr]
    assert re.findall(r"<th>(.*?)</th>", head) == ["measure", "cross", "isolated", "portfolio"]
    assert "fees and funding: + = paid by the account" in part


def test_no_raw_milliseconds_and_a_legend_for_undefined_values_16(runs: dict[str, Path]) -> None:
    doc = (runs["week"] / "report.html").read_text(encoding="utf-8")
    orders = section(doc, "orders")
    assert re.search(r"\d{1,3}(,\d{3}){4}", orders) is None  # not "1,740,790,800,000"
    assert "<th>closed</th>" in orders
    assert "closed_ms" not in orders
    assert re.search(r">2025-03-0\d \d\d:\d\d<", orders)
    comparison = section(doc, "comparison")
    assert display.UNDEFINED in comparison
    assert display.LEGEND in comparison
    assert display.COST_SIGNS in section(doc, "summary")  # under fees_paid / funding_paid


def _run_data(**frames: Any) -> RunData:
    empty = pd.DataFrame()
    fields = {"path": Path("."), "equity": empty, "fills": empty, "orders": empty,
              "journal": empty, "positions": empty, "records": empty, "rejections": empty,
              "events": [], "metrics": {}, "config": {}, "warnings": [], "comparison": None,
              "alternatives": {}}
    return RunData(**{**fields, **frames})


def test_greeks_charts_state_their_units_16() -> None:
    idx = pd.date_range("2025-01-01 01:00", periods=4, freq="1h", tz="UTC")
    eq = pd.DataFrame({"equity": 1.0, "delta": 1.0, "gamma": 2.0, "vega": 3.0, "theta": -4.0},
                      index=idx)
    doc = greeks(_run_data(equity=eq))
    for k, axis in (("delta", "USD"), ("gamma", "USD per 1 %"), ("vega", "USD per vol point"),
                    ("theta", "USD per day")):
        fig = figure(doc, f"fig-greek-{k}")
        assert fig["layout"]["yaxis"]["title"]["text"] == f"{k} ({axis})"
    recorded = greeks(_run_data(equity=eq[["equity"]], records=eq[["vega"]]))
    assert figure(recorded, "fig-greek-vega")["layout"]["yaxis"]["title"]["text"] == \
        "vega (as recorded)"


def test_funding_chart_uses_the_paid_sign_convention_16(tmp_path: Path) -> None:
    # tests/integration/test_funding.py: a long of 2 pays 0.021 at 02:00 (journal -0.021) and
    # receives 0.044 at 05:00 (journal +0.044). Funding *paid*, cumulated: 0.021, then
    # 0.021 - 0.044 = -0.023, as metrics.funding_paid (+ = paid) counts it.
    from tests.builders import BTC, Scripted, run
    from tests.integration.test_funding import _market

    strat = Scripted({1: lambda ctx: ctx.order(BTC, "buy", 2), 6: lambda ctx: ctx.close(BTC)})
    result = run(strat, {BTC: _market()}, funding="history")
    doc = write_report(result.write(tmp_path / "run"), tearsheet_enabled=False).read_text()
    fig = figure(doc, "fig-funding")
    assert fig["data"][0]["y"] == pytest.approx([0.021, -0.023], abs=1e-12)
    assert result.metrics["funding_paid"] == pytest.approx(-0.023, abs=1e-12)
    assert "+ = paid by the account, − = received" in json.dumps(fig["layout"]["title"],
                                                                 ensure_ascii=False)
