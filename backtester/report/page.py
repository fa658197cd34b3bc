"""Assemble ``report.html``: one page per run (DESIGN §8).

By default the page inlines plotly.js once (between the ``PLOTLYJS BEGIN``/``END`` comments)
and embeds the quantstats tearsheet in an ``<iframe srcdoc>``; it references no external URL,
so it opens offline (``plotly=`` offers a shared file or the CDN instead:
:mod:`backtester.report.plotly_js`). Every section is a ``<section id=...>`` listed in
:data:`~backtester.report.sections.SECTION_IDS`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backtester.data.store import atomic_write_bytes
from backtester.errors import ConfigError, DataError
from backtester.progress import Progress
from backtester.progress import task as progress_task
from backtester.report import sections as sec
from backtester.report._html import CSS, RESIZE_JS, SORT_JS, esc, note
from backtester.report._load import benchmark_prices, load_run
from backtester.report.attribution import attribution_from_frames
from backtester.report.capital import capital as capital_section
from backtester.report.charts import downsampling_note
from backtester.report.plotly_js import PLOTLYJS_BEGIN, PLOTLYJS_END, PlotlyMode, plotly_script
from backtester.report.tearsheet import tearsheet

__all__ = ["PLOTLYJS_BEGIN", "PLOTLYJS_END", "PlotlyMode", "write_report"]

log = logging.getLogger(__name__)


def write_report(run_dir: str | Path, *, benchmark: str | None = None,
                 datasets_root: str | Path | None = None, tearsheet_enabled: bool = True,
                 plotly: PlotlyMode | str = PlotlyMode.INLINE, shared_dir: str | Path | None = None,
                 progress: Progress | None = None, label: str | None = None) -> Path:
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
        False skips quantstats (about 3 s) and leaves a note in its section.
    plotly
        How the page loads plotly.js: ``inline`` (default; one self-contained file that opens
        offline), ``shared`` (one ``plotly-<version>.min.js`` in ``shared_dir``, default the
        parent of ``run_dir``, referenced relatively) or ``cdn`` (needs a network to view).
    progress
        Where to report the steps (see :mod:`backtester.progress`); None shows nothing.
    label
        The run's name in the progress (default the folder's name; a run being built in a
        temporary folder passes its final name).
    """
    path = Path(run_dir)
    name = label or path.name
    mode = _plotly_mode(plotly)
    sections = list(sec.SECTION_IDS)
    for sid, head, file in sec.OPTIONAL_SECTION_IDS:
        if (path / file).exists():
            sections.insert(len(sections) - 1, (sid, head))  # before "warnings"
    with progress_task(progress, f"report {name}", total=len(sections) + 2) as step:
        run = load_run(path)
        attribution = attribution_from_frames(run.journal, run.fills, run.positions,
                                              end=run.end)
        title = (f"{run.config.get('strategy', 'run')} on {run.config.get('dataset', '?')} "
                 f"({run.config.get('profile', '?')}, {run.config.get('margin_mode', '?')})")
        done = 1
        step.update(done, description=f"report {name}: quantstats tearsheet")
        if tearsheet_enabled:
            bench, bench_note = benchmark_prices(run, benchmark, datasets_root=datasets_root)
            sheet = tearsheet(sec._col(run, "equity"), title=title, benchmark=bench,
                              is_wiped_out=bool(run.metrics.get("is_wiped_out")))
            ts_html, ts_note = sheet.html, sheet.note + (
                "" if bench is not None or sheet.html is None else f"; {bench_note}")
        else:
            ts_html, ts_note = None, "quantstats tearsheet not requested for this report"
        builders: dict[str, Callable[[], str]] = {
            "summary": lambda: sec.summary(run, attribution),
            "tearsheet": lambda: sec.tearsheet_section(ts_html, ts_note),
            "margin": lambda: sec.margin(run),
            "capital": lambda: capital_section(run),
            "liquidations": lambda: sec.liquidations(run),
            "attribution": lambda: sec.attribution_section(run, attribution),
            "exposure": lambda: sec.exposure(run),
            "greeks": lambda: sec.greeks(run),
            "trades": lambda: sec.trades(run),
            "orders": lambda: sec.orders(run),
            "rejections": lambda: sec.rejections(run),
            "comparison": lambda: sec.comparison(run),
            "warnings": lambda: _warnings_html(sec.warnings_panel(run)),
            "stress": lambda: sec.stress(_read_json(path / "stress.json")),
        }
        bodies = {}
        for sid, head in sections:
            done += 1
            step.update(done, description=f"report {name}: {head.lower()}")
            bodies[sid] = builders[sid]()
        script = plotly_script(mode, report_dir=path,
                               shared_dir=None if shared_dir is None else Path(shared_dir))
        html = _page(title, run.config, bodies, sections, plotly_js=script,
                     chart_note=downsampling_note(len(run.equity)))
        out = path / "report.html"
        atomic_write_bytes(out, html.encode("utf-8"))
    log.info("report written to %s", out)
    return out


def _plotly_mode(value: PlotlyMode | str) -> PlotlyMode:
    try:
        return PlotlyMode(value)
    except ValueError:
        allowed = ", ".join(m.value for m in PlotlyMode)
        msg = f"plotly: expected one of {allowed}, got {value!r}"
        raise ConfigError(msg) from None


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
          sections: list[tuple[str, str]], *, plotly_js: str, chart_note: str) -> str:
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
            f"{plotly_js}<script>{RESIZE_JS}</script></head><body>"
            f"<header><h1>{esc(title)}{esc(synthetic)}</h1><p>{meta}</p></header>"
            f"<nav>{nav}</nav><main>{note(chart_note) if chart_note else ''}{body}</main>"
            f"<script>{SORT_JS}</script></body></html>")
