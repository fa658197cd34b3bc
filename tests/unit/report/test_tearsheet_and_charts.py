"""quantstats wrapper input shaping, HTML sanitising and chart downsampling."""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtester.report.charts import MAX_POINTS, downsample
from backtester.report.tearsheet import daily_returns, sanitize_html, tearsheet


def test_daily_returns_are_utc_closes_on_a_naive_index() -> None:
    # Hourly equity over 3 UTC days, stamped at bar closes (01:00 .. next 00:00): closes 100
    # (day 1), 110 (day 2), 99 (day 3).
    idx = pd.date_range("2025-01-01 01:00", periods=72, freq="1h", tz="UTC")
    eq = pd.Series(np.r_[np.full(24, 100.0), np.full(24, 110.0), np.full(24, 99.0)], index=idx)
    r = daily_returns(eq)
    assert r.index.tz is None
    assert list(r.index) == [pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-03")]
    assert r.tolist() == [110.0 / 100.0 - 1.0, 99.0 / 110.0 - 1.0]


def test_tearsheet_refuses_wiped_out_and_too_short_curves() -> None:
    idx = pd.date_range("2025-01-01 01:00", periods=72, freq="1h", tz="UTC")
    wiped = pd.Series(np.r_[np.full(71, 100.0), 0.0], index=idx)
    assert tearsheet(wiped, title="t").html is None
    assert "wiped out" in tearsheet(wiped, title="t").note
    short = pd.Series(100.0, index=idx[:20])
    sheet = tearsheet(short, title="t")
    assert sheet.html is None
    assert "0 daily return" in sheet.note


def test_sanitize_removes_external_references() -> None:
    doc = ('<link rel="shortcut icon" href="https://qtpylib.io/favicon.ico">'
           '<body onload="save()"><h4><a href="http://quantstats.io">QuantStats</a></h4>'
           '<svg><metadata><rdf:RDF><cc:Work rdf:about="http://creativecommons.org/ns#"/>'
           "</rdf:RDF></metadata><img src='https://x.example/a.png'></svg></body>")
    out = sanitize_html(doc)
    assert "http" not in out
    assert "onload" not in out
    assert "QuantStats" in out


def test_downsample_keeps_extremes_and_says_so() -> None:
    n = 3 * MAX_POINTS + 7
    s = pd.Series(np.zeros(n), index=pd.RangeIndex(n))
    s.iloc[n // 2 + 1] = 5.0  # a single spike must survive a max-downsample
    d = downsample(s, how="max")
    assert len(d.series) <= MAX_POINTS
    assert d.series.max() == 5.0
    assert d.label.startswith(f"downsampled {n}→")
    intact = downsample(s.iloc[:100])
    assert intact.label == ""
    assert len(intact.series) == 100


def test_quantstats_is_imported_lazily() -> None:
    # Importing the report package (and the CLI) must not pull quantstats (1-2 s, 290 MB).
    import subprocess
    import sys

    code = ("import sys, backtester.report, backtester.cli.commands_report; "
            "sys.exit('quantstats' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert done.returncode == 0, done.stderr
