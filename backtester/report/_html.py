from __future__ import annotations

import html
import math
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

from backtester import display

#: Largest number of table rows written; the rest is summarised (the Parquet files hold all).
MAX_TABLE_ROWS = 5000

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7fb}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9cfdb}nav{position:sticky;top:0;background:#fff;z-index:5;
border-bottom:1px solid #dde1ea;padding:8px 28px}nav a{margin-right:14px;color:#2b59c3;
text-decoration:none;font-size:13px}main{padding:0 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde1ea;border-radius:6px;margin:18px 0;padding:14px 20px}
h2{font-size:18px;margin:4px 0 12px}h3{font-size:15px;margin:16px 0 8px}
.note{color:#5a6478;font-size:13px}.bad{color:#b3261e}.good{color:#1e7b34}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #dde1ea;border-radius:6px;
padding:8px 12px;min-width:150px}.card b{display:block;font-size:18px}.card span{color:#5a6478;
font-size:12px}table{border-collapse:collapse;font-size:12.5px;margin:6px 0 10px}
th,td{border-bottom:1px solid #e8ebf1;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f0f2f7;position:sticky;top:0;white-space:normal;vertical-align:bottom}
 th:first-child,td:first-child{text-align:left}
table.sortable th{cursor:pointer}table.sortable th:after{content:" \\2195";color:#9aa3b5}
.scroll{max-height:480px;overflow:auto;border:1px solid #e8ebf1}
.warn li{margin:3px 0}.liq{border-left:4px solid #b3261e;padding-left:12px;margin:12px 0}
iframe{width:100%;height:1400px;border:1px solid #dde1ea}
"""

SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,i){
    th.addEventListener("click",function(){
      var body=t.tBodies[0],rows=Array.from(body.rows),asc=th.dataset.dir!=="asc";
      t.querySelectorAll("th").forEach(function(h){delete h.dataset.dir;});
      th.dataset.dir=asc?"asc":"desc";
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;
        var nx=parseFloat(x),ny=parseFloat(y),c;
        if(!isNaN(nx)&&!isNaN(ny)){c=nx-ny;}else{c=String(x).localeCompare(String(y));}
        return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""

RESIZE_JS = """
function btFitFrame(f){try{var d=f.contentDocument;if(d&&d.body){
f.style.height=(d.documentElement.scrollHeight+30)+"px";}}catch(e){}}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: object, *, percent: bool = False, digits: int = 2) -> str:
    # percentages, dates and "not defined" as on the console (backtester.display); other
    # numbers of the tables (prices, quantities) keep their precision: 2 decimals from 1 up,
    # 6 significant digits below
    if value is None or value is pd.NaT:
        return display.UNDEFINED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return display.count(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or percent:
            return display.percent(value) if percent else display.number(value)
        return f"{value:,.{digits}f}" if abs(value) >= 1 or value == 0 else f"{value:.6g}"
    if isinstance(value, pd.Timestamp):
        return display.date(value)
    return str(value)


def heading(column: object) -> str:
    """A column name as a table heading: words instead of underscores (so it can wrap),
    ``*_ms`` times as ``… (UTC)``."""
    text = str(column)
    if text.endswith("_ms"):
        text = text.removesuffix("_ms") + " (UTC)"
    return text.replace("_", " ")


def _sort_key(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return str(value.value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float | Decimal):
        f = float(value)
        return "" if math.isnan(f) else repr(f)
    return str(value)


def table(frame: pd.DataFrame, *, sortable: bool = True, percent: Sequence[str] = (),
          table_id: str = "") -> str:
    if frame.empty:
        return '<p class="note">none</p>'
    shown = frame.head(MAX_TABLE_ROWS).copy()
    for col in shown.columns:
        # int milliseconds are times: shown as UTC dates (sorted by the same instant)
        if str(col).endswith("_ms") and pd.api.types.is_numeric_dtype(shown[col]):
            ms = pd.to_numeric(shown[col], errors="coerce")
            shown[col] = pd.to_datetime(ms.where(ms > 0), unit="ms", utc=True)
    cls = ' class="sortable"' if sortable else ""
    tid = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f"<th>{esc(heading(c))}</th>" for c in shown.columns)
    rows = []
    undefined = False
    for rec in shown.itertuples(index=False):
        cells = []
        for col, raw in zip(shown.columns, rec, strict=True):
            v = raw.item() if isinstance(raw, np.generic) else raw
            value: object = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
            text = fmt(value, percent=col in percent)
            undefined = undefined or text == display.UNDEFINED
            cells.append(f'<td data-v="{esc(_sort_key(v))}">{esc(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(frame) > len(shown):
        more = (f'<p class="note">showing the first {len(shown):,} of {len(frame):,} rows; '
                "the Parquet file in the run folder holds all of them.</p>")
    if undefined:
        more += note(display.LEGEND)
    return (f'<div class="scroll"><table{cls}{tid}><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>" + more)


def cards(items: Sequence[tuple[str, str, str]]) -> str:
    """``(label, value, css class)`` cards."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><b class="{esc(c)}">{esc(v)}</b><span>{esc(k)}</span></div>'
        for k, v, c in items) + "</div>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'
