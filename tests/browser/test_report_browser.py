"""Open report.html in headless Chromium (DESIGN §9): sections, no console errors, no network.

Chromium is driven through its DevTools pipe (tests/browser/cdp.py; standard library only).
Without ``/usr/bin/chromium`` the tests skip, unless ``BACKTESTER_REQUIRE_BROWSER=1`` (CI),
where they fail.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backtester.report.sections import SECTION_IDS
from tests.browser.cdp import Browser
from tests.report_runs import built_runs

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"


def _chromium() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found is None:
        reason = f"{CHROMIUM} not found (apt-get install chromium)"
        if os.environ.get("BACKTESTER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; BACKTESTER_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return built_runs(tmp_path_factory.getbasetemp() / "report-runs")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(_chromium(), tmp_path / "profile")
    try:
        b.open_page()
        yield b
    finally:
        b.close()


def _open(browser: Browser, report: Path) -> None:
    browser.send("Page.navigate", {"url": report.resolve().as_uri()})
    browser.wait_event("Page.loadEventFired", timeout=60)


@pytest.mark.parametrize("kind", ["week", "wipeout"])
def test_report_renders_in_chromium(runs: dict[str, Path], browser: Browser, tmp_path: Path,
                                    kind: str) -> None:
    report = runs[kind] / "report.html"
    _open(browser, report)

    ids = browser.evaluate(
        "Array.from(document.querySelectorAll('section[id]')).map(s => s.id)")
    assert ids == [sid for sid, _ in SECTION_IDS]
    # plotly drew its SVG charts (no WebGL needed)
    assert browser.evaluate("document.querySelectorAll('.plotly-graph-div .main-svg').length") > 5
    if kind == "week":  # the quantstats tearsheet rendered inside its iframe
        svgs = browser.evaluate("document.querySelector('#tearsheet iframe')"
                                ".contentDocument.querySelectorAll('svg').length")
        assert svgs > 5
    assert browser.console_errors() == []
    assert [u for u in browser.requested_urls() if not u.startswith(("file:", "data:"))] == []

    shot = browser.send("Page.captureScreenshot", {"format": "png",
                                                   "captureBeyondViewport": True})
    png = tmp_path / f"report-{kind}.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables_sort_on_click(runs: dict[str, Path], browser: Browser) -> None:
    _open(browser, runs["week"] / "report.html")
    # the qty column: after ts, step_ts, order_id and symbol
    col = "Array.from(document.querySelectorAll('#trades-table tbody td:nth-child(5)'))" \
          ".map(td => parseFloat(td.dataset.v))"
    browser.evaluate("document.querySelector('#trades-table th:nth-child(5)').click()")
    ascending = browser.evaluate(col)
    browser.evaluate("document.querySelector('#trades-table th:nth-child(5)').click()")
    descending = browser.evaluate(col)
    assert ascending == sorted(ascending)
    assert descending == sorted(ascending, reverse=True)
    assert len(ascending) == 2


def test_tables_fit_the_page_and_the_tearsheet_reads_well_16(runs: dict[str, Path],
                                                             browser: Browser) -> None:
    # issue 16 item 13: at the default 1280-pixel window no table needs a horizontal
    # scrollbar, no section is wider than the page, and quantstats' "CAGR﹪" reads "CAGR%"
    _open(browser, runs["week"] / "report.html")
    wide = browser.evaluate(
        "Array.from(document.querySelectorAll('section .scroll'))"
        ".filter(d => d.scrollWidth > d.clientWidth + 1)"
        ".map(d => d.closest('section').id + ':' + d.scrollWidth + '>' + d.clientWidth)")
    assert wide == []
    assert browser.evaluate("document.documentElement.scrollWidth <= "
                            "document.documentElement.clientWidth")
    text = browser.evaluate("document.querySelector('#tearsheet iframe')"
                            ".contentDocument.body.innerText")
    assert "CAGR%" in text
    assert "\ufe6a" not in text
    # the three margin modes' equity curves are all drawn (two of them coincide)
    assert browser.evaluate("document.querySelectorAll('#fig-compare .scatterlayer .trace')"
                            ".length") == 3


def test_shared_plotly_report_renders_offline_16(runs: dict[str, Path], browser: Browser,
                                                tmp_path: Path) -> None:
    # issue 16 item 12: --plotly shared, one plotly-<version>.min.js beside the run folders,
    # loaded from disk by a relative path: the charts draw without any network
    import shutil

    from backtester.report import write_report

    folder = Path(shutil.copytree(runs["week"], tmp_path / "reports" / "week"))
    write_report(folder, tearsheet_enabled=False, plotly="shared")
    _open(browser, folder / "report.html")
    assert browser.evaluate("document.querySelectorAll('.plotly-graph-div .main-svg').length") > 5
    assert browser.console_errors() == []
    urls = browser.requested_urls()
    assert [u for u in urls if not u.startswith(("file:", "data:"))] == []
    assert any(u.endswith(".min.js") and "/reports/plotly-" in u for u in urls)
