"""Assemble ``report.html``: one self-contained page per run (DESIGN §8).

The page inlines plotly.js once (between the ``PLOTLYJS BEGIN``/``END`` comments) and embeds
the quantstats tearsheet in an ``<iframe srcdoc>``; it references no external URL, so it opens
offline. Every section is a ``<section id=...>`` listed in
:data:`~backtester.report.sections.SECTION_IDS`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from backtester.data.store import atomic_write_bytes
from backtester.errors import DataError
from backtester.report import sections as sec
from backtester.report._html import CSS, RESIZE_JS, SORT_JS, esc, note
from backtester.report._load import benchmark_prices, load_run
from backtester.report.attribution import attribution_from_frames
from backtester.report.capital import capital as capital_section
from backtester.report.tearsheet import tearsheet

__all__ = ["PLOTLYJS_BEGIN", "PLOTLYJS_END", "write_report"]

log = logging.getLogger(__name__)

#: Comments around the inlined plotly.js bundle (a vendored library: its source text holds
#: URLs of map tile servers and of plotly's site that this page never uses).
PLOTLYJS_BEGIN = "<!-- PLOTLYJS BEGIN -->"
PLOTLYJS_END = "<!-- PLOTLYJS END -->"


def write_report(run_dir: str | Path, *, benchmark: str | None = None,
                 datasets_root: str | Path | None = None, tearsheet_enabled: bool = True
                 ) -> Path:
    """Write ``run_dir/report.html`` from the files of a run folder and return its path.

    Parameters
    ----------
    run_dir
        A folder written by ``backtester run`` (``equity.parquet``, ``journal.parquet``, ...).
    benchmark
        Symbol whose buy-and-hold, read from the run's stored dataset, is the tearsheet's
        benchmark; None picks the most traded non-option instrument. Never a ticker download.
    datasets_root
        Datasets folder holding the run's dataset (default ``$BACKTESTER_DATASETS`` or
        ``./datasets``); without it there is no benchmark, and the report says so.
    tearsheet_enabled
        False skips quantstats (about 5 s) and leaves a note in its section.
    """
    path = Path(run_dir)
    run = load_run(path)
    attribution = attribution_from_frames(run.journal, run.fills, run.positions, end=run.end)
    title = (f"{run.config.get('strategy', 'run')} on {run.config.get('dataset', '?')} "
             f"({run.config.get('profile', '?')}, {run.config.get('margin_mode', '?')})")
    if tearsheet_enabled:
        bench, bench_note = benchmark_prices(run, benchmark, datasets_root=datasets_root)
        sheet = tearsheet(sec._col(run, "equity"), title=title, benchmark=bench,
                          is_wiped_out=bool(run.metrics.get("is_wiped_out")))
        ts_html, ts_note = sheet.html, sheet.note + ("" if bench is not None or sheet.html is None
                                                     else f"; {bench_note}")
    else:
        ts_html, ts_note = None, "quantstats tearsheet not requested for this report"
    bodies = {
        "summary": sec.summary(run, attribution),
        "tearsheet": sec.tearsheet_section(ts_html, ts_note),
        "margin": sec.margin(run),
        "capital": capital_section(run),
        "liquidations": sec.liquidations(run),
        "attribution": sec.attribution_section(run, attribution),
        "exposure": sec.exposure(run),
        "greeks": sec.greeks(run),
        "trades": sec.trades(run),
        "orders": sec.orders(run),
        "rejections": sec.rejections(run),
        "comparison": sec.comparison(run),
        "warnings": _warnings_html(sec.warnings_panel(run)),
    }
    sections = list(sec.SECTION_IDS)
    for sid, head, file in sec.OPTIONAL_SECTION_IDS:
        if (path / file).exists():
            bodies[sid] = {"stress": sec.stress}[sid](_read_json(path / file))
            sections.insert(len(sections) - 1, (sid, head))  # before "warnings"
    html = _page(title, run.config, bodies, sections)
    out = path / "report.html"
    atomic_write_bytes(out, html.encode("utf-8"))
    log.info("report written to %s", out)
    return out


def _warnings_html(items: list[str]) -> str:
    if not items:
        return note("no warnings")
    return '<ul class="warn">' + "".join(f"<li>{esc(w)}</li>" for w in items) + "</ul>"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"unreadable run file {path}: {exc}"
        raise DataError(msg) from exc
    return data if isinstance(data, dict) else {}


def _page(title: str, config: dict[str, object], bodies: dict[str, str],
          sections: list[tuple[str, str]]) -> str:
    from plotly.offline import get_plotlyjs

    synthetic = " — SYNTHETIC DATA" if config.get("is_synthetic") else ""
    nav = "".join(f'<a href="#{sid}">{esc(head)}</a>' for sid, head in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(head)}</h2>{bodies[sid]}</section>'
                   for sid, head in sections)
    meta = (f"config {esc(config.get('config_hash', '?'))} · data "
            f"{esc(config.get('data_fingerprint', '?'))} · backtester "
            f"{esc(config.get('package_version', '?'))}")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{esc(title)}</title><style>{CSS}</style>"
            f"{PLOTLYJS_BEGIN}<script>{get_plotlyjs()}</script>{PLOTLYJS_END}"
            f"<script>{RESIZE_JS}</script></head><body>"
            f"<header><h1>{esc(title)}{esc(synthetic)}</h1><p>{meta}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main><script>{SORT_JS}</script></body></html>")
