"""The quantstats tearsheet, made safe: daily UTC closes, a 365-day year, no network.

quantstats is imported here only, lazily (it takes over a second and pulls matplotlib,
seaborn, scipy and yfinance). Its quirks on pandas 3 (docs/ecosystem.md §1): a string
benchmark downloads from the network, so only a Series is ever passed; tz-aware indexes crash
the benchmark alignment, so both are made tz-naive UTC; intraday returns are mislabelled as
daily, so equity is resampled to daily closes first; a curve that reaches zero turns into
NaN returns it silently fills, so a wiped-out curve is refused here and reported by us.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["Tearsheet", "daily_returns", "sanitize_html", "tearsheet"]

#: Fewer daily returns than this and no tearsheet is drawn.
MIN_DAILY_RETURNS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Tearsheet:
    """A rendered tearsheet (``html`` is a full document) or the reason there is none."""

    html: str | None
    note: str


def daily_returns(equity: pd.Series) -> pd.Series:
    """Return daily simple returns of UTC-midnight closes, on a tz-naive (UTC) index.

    ``equity`` is indexed by tz-aware UTC step times, which are bar *close* times: the close of
    day D is the last value stamped in (D 00:00, D+1 00:00] UTC
    (:func:`backtester.runs.results.daily_closes`, the same days as the run's metrics). A run whose
    last step is stamped at a year's first midnight adds no day, and no calendar year, of
    that year.
    """
    from backtester.runs.results import daily_closes

    eq = equity.replace([np.inf, -np.inf], np.nan).dropna()
    if eq.empty:
        return pd.Series(dtype="float64")
    daily = daily_closes(eq)
    rets = daily.pct_change().dropna()
    idx = pd.DatetimeIndex(rets.index)
    rets.index = idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx
    return rets


_SMALL_PERCENT = "\ufe6a"  # "﹪", quantstats' label of CAGR
_LINK_TAG = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_ANCHOR = re.compile(r"<a\b[^>]*\bhref\s*=\s*[\"']?https?://[^>]*>(.*?)</a>",
                     re.IGNORECASE | re.DOTALL)
_METADATA = re.compile(r"<metadata\b.*?</metadata>", re.IGNORECASE | re.DOTALL)
_DOCTYPE_SVG = re.compile(r"<!DOCTYPE\s+svg[^>]*>|<\?xml[^>]*\?>", re.IGNORECASE)
_BODY_ONLOAD = re.compile(r"(<body\b[^>]*?)\s+onload\s*=\s*(\"[^\"]*\"|'[^']*')", re.IGNORECASE)
_EXTERNAL_ATTR = re.compile(r"\b(src|href)\s*=\s*([\"']?)https?://[^\"'\s>]*\2", re.IGNORECASE)


def sanitize_html(html: str) -> str:
    """Remove every reference to an external URL from a quantstats document.

    Drops ``<link>`` tags (a favicon on the quantstats author's site), unwraps links to the
    quantstats website, strips matplotlib's SVG ``<metadata>`` and XML/DOCTYPE headers, and
    neutralises any remaining ``src``/``href`` to ``http(s)://`` into ``#``. Also drops the
    ``<body onload="save()">`` handler quantstats 0.0.86 writes but never defines (it throws a
    ReferenceError in the browser). Writes the "small percent sign" U+FE6A that quantstats puts
    in "CAGR﹪" as a plain ``%`` (no font of the page has the small one: it showed as a box).

    >>> sanitize_html('<link rel="icon" href="https://x.io/f.ico"><a href="http://q.io">QS</a>')
    'QS'
    >>> sanitize_html("<td>CAGR\ufe6a</td>")
    '<td>CAGR%</td>'
    """
    out = html.replace(_SMALL_PERCENT, "%")
    out = _LINK_TAG.sub("", out)
    out = _ANCHOR.sub(r"\1", out)
    out = _METADATA.sub("", out)
    out = _DOCTYPE_SVG.sub("", out)
    out = _BODY_ONLOAD.sub(r"\1", out)
    return _EXTERNAL_ATTR.sub(r'\1="#"', out)


def tearsheet(equity: pd.Series, *, title: str, benchmark: pd.Series | None = None,
              is_wiped_out: bool = False) -> Tearsheet:
    """Render the quantstats HTML tearsheet of an equity curve, or explain why not.

    Parameters
    ----------
    equity
        Account equity (valuation currency), tz-aware UTC index, any bar size.
    title
        Document title.
    benchmark
        Optional price (or value) series of a buy-and-hold benchmark on a tz-aware UTC index;
        it is turned into daily returns the same way and aligned to the strategy's days.
    is_wiped_out
        True when the equity reached zero or below: no tearsheet is drawn.
    """
    eq = equity.replace([np.inf, -np.inf], np.nan).dropna()
    if is_wiped_out or (len(eq) and float(eq.min()) <= 0.0):
        return Tearsheet(html=None, note="quantstats tearsheet skipped: the equity curve was "
                         "wiped out (reached zero), so daily returns are undefined after that; "
                         "see the summary and the liquidation timeline.")
    rets = daily_returns(eq)
    if len(rets) < MIN_DAILY_RETURNS:
        return Tearsheet(html=None, note=f"quantstats tearsheet skipped: {len(rets)} daily "
                         f"return(s); at least {MIN_DAILY_RETURNS} are needed (run longer "
                         "than two UTC days).")
    rets.name = "Strategy"
    bench: pd.Series | None = None
    note = "daily UTC closes, 365-day year, compounded"
    if benchmark is not None:
        b = daily_returns(benchmark).reindex(rets.index).fillna(0.0)
        b.name = str(benchmark.name or "benchmark")
        bench = b
        note += f"; benchmark: {b.name} (buy and hold from the run's dataset)"
    html = _render(rets, bench, title)
    return Tearsheet(html=sanitize_html(html), note=note)


def _render(rets: pd.Series, bench: pd.Series | None, title: str) -> str:
    mpl_log = logging.getLogger("matplotlib")
    old_level = mpl_log.level
    mpl_log.setLevel(logging.ERROR)  # "findfont: Font family 'Arial' not found" on every chart
    try:
        with warnings.catch_warnings():
            # quantstats/seaborn/matplotlib emit Pandas4Warning, MatplotlibDeprecationWarning
            # and set_ticklabels UserWarnings on pandas 3 (ecosystem.md §1.1); none matter.
            warnings.simplefilter("ignore")
            import matplotlib

            matplotlib.use("Agg", force=True)
            import quantstats as qs

            with tempfile.TemporaryDirectory(prefix="bt-qs-") as tmp:
                out = Path(tmp) / "tearsheet.html"
                qs.reports.html(rets, benchmark=bench, output=str(out), title=title,
                                periods_per_year=365, compounded=True)
                html = out.read_text(encoding="utf-8")
            import matplotlib.pyplot as plt

            plt.close("all")
    finally:
        mpl_log.setLevel(old_level)
    return html
