"""The sweep's report page ``index.html``: a sortable results table and a parameter heatmap.

The page is self-contained (plotly is inlined, the sorting script is a few lines of plain
JavaScript), so it opens from disk without a network connection. The page reads a finished
sweep's :class:`~backtester.sweep.results.SweepResult`; the sweep runner
(:mod:`backtester.sweep.runner`) and the walk-forward write it, above it.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from backtester.data.store import atomic_write_bytes
from backtester.sweep.results import SweepResult

__all__ = ["heatmap_params", "write_sweep_page"]


_SORT_JS = """
function sortTable(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const col = Array.from(th.parentNode.children).indexOf(th);
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = td => { const v = td.dataset.v; const x = parseFloat(v);
                      return v === '' ? null : (isNaN(x) ? v : x); };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => { const x = key(a.cells[col]), y = key(b.cells[col]);
    if (x === null) return 1; if (y === null) return -1;
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
  rows.forEach(r => body.appendChild(r));
}
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f4f4f4; cursor: pointer; position: sticky; top: 0; }
td.err { color: #b00; text-align: left; }
.note { color: #666; font-size: 13px; }
"""


def heatmap_params(table: pd.DataFrame, names: list[str]) -> tuple[str, str] | None:
    """Return the two parameters shown in the heatmap: the first two with several values."""
    varied = [n for n in names if table[f"param_{n}"].nunique(dropna=True) > 1]
    return (varied[0], varied[1]) if len(varied) >= 2 else None


def _cell(value: Any) -> tuple[str, str]:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "", "—"
    if isinstance(value, float):
        return repr(value), f"{value:,.4f}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value), str(value)


def _table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th onclick='sortTable(this)'>{html.escape(str(c))}</th>"
                   for c in df.columns)
    body = []
    for rec in df.itertuples(index=False):
        cells = []
        for col, v in zip(df.columns, rec):
            sort_key, text = _cell(v)
            cls = " class='err'" if col == "error" else ""
            cells.append(f"<td{cls} data-v='{html.escape(sort_key, quote=True)}'>"
                         f"{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure_html(fig: Any, *, first: bool) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=bool(first)))


def _heatmap(table: pd.DataFrame, names: list[str], metric: str) -> Any:
    import plotly.graph_objects as go

    pair = heatmap_params(table, names)
    if pair is None:
        return None
    x, y = pair
    ok = table[table["error"].isna()]
    grid = ok.pivot_table(index=f"param_{y}", columns=f"param_{x}", values=metric,
                          aggfunc="mean", dropna=False)
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[str(c) for c in grid.columns],
                               y=[str(i) for i in grid.index], colorscale="RdYlGn",
                               colorbar={"title": metric}))
    others = [n for n in names if n not in pair]
    note = f" (mean over {', '.join(others)})" if others else ""
    fig.update_layout(title=f"{metric} by {x} and {y}{note}", xaxis_title=x, yaxis_title=y,
                      height=450, width=700)
    return fig


def write_sweep_page(result: SweepResult, *, walk_forward: pd.DataFrame | None = None,
                     oos_equity: pd.Series | None = None) -> Path:
    """Write ``index.html`` for a sweep (and its walk-forward, when given); return its path."""
    import plotly.graph_objects as go

    spec = result.spec
    names = list(spec.grid)
    table = result.table
    parts = [f"<h1>Sweep: {html.escape(spec.strategy)} on {html.escape(spec.dataset)}</h1>",
             "<p class='note'>"
             + (f"{len(table)} runs, {int(table['error'].notna().sum())} failed; "
                if walk_forward is None else "walk-forward; ")
             + f"metric {html.escape(spec.metric)} "
             f"({'maximised' if spec.is_maximize else 'minimised'}); window "
             f"{html.escape(str(spec.start or 'start'))} to {html.escape(str(spec.end or 'end'))}"
             f"{'' if result.is_complete else '; INTERRUPTED: partial results'}."
             f" Click a column header to sort.</p>"]
    if spec.dataset == "sample":
        parts.append("<p class='note'><b>Synthetic data</b>: the sample dataset is generated, "
                     "not market history.</p>")
    first = True
    fig = _heatmap(table, names, spec.metric) if len(table) else None
    if fig is not None:
        parts.append(_figure_html(fig, first=first))
        first = False
    if walk_forward is not None and len(walk_forward):
        parts.append("<h2>Walk-forward: in-sample (is_) vs out-of-sample (oos_)</h2>")
        parts.append(_table_html(walk_forward))
        if oos_equity is not None and len(oos_equity):
            eq = go.Figure(go.Scatter(x=oos_equity.index, y=oos_equity.to_numpy(),
                                      mode="lines", name="out-of-sample equity"))
            eq.update_layout(title="Stitched out-of-sample equity (start = 1.0)", height=350)
            parts.append(_figure_html(eq, first=first))
            first = False
    if result.best_paths:
        links = "".join(f"<li><a href='{html.escape(p.relative_to(result.path).as_posix())}/'>"
                        f"{html.escape(p.name)}</a></li>" for p in result.best_paths)
        parts.append(f"<h2>Best runs (full results)</h2><ul>{links}</ul>")
    if len(table):
        parts.append("<h2>All runs</h2>")
        parts.append(_table_html(table))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep "
            f"{html.escape(result.path.name)}</title><style>{_CSS}</style>"
            f"<script>{_SORT_JS}</script></head><body>{''.join(parts)}</body></html>")
    path = result.path / "index.html"
    atomic_write_bytes(path, page.encode())
    return path
