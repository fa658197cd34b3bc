"""Plotly figures of a run, as HTML fragments (plotly.js is inlined once by the page).

Only ``go.Scatter`` (SVG) traces: ``Scattergl`` needs WebGL, which headless Chromium without
a GPU does not provide (docs/ecosystem.md §4.3). A chart about 1,300 pixels wide cannot show
more than about one point per pixel, so long series are downsampled to at most
:data:`MAX_POINTS` points per trace, by bucket, keeping the bucket's last value (levels), its
maximum (margin ratio) or minimum (distance to liquidation) so that peaks are not hidden. The
page says so once (:func:`downsampling_note`), not in every chart title. Times are written as
epoch milliseconds on date axes (binary-encoded arrays, about half the size of date strings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["MAX_POINTS", "Downsampled", "downsample", "downsampling_note", "figure_html",
           "histogram_figure", "line_figure"]

#: Largest number of points drawn per trace (about one per pixel of a full-width chart).
MAX_POINTS = 1500

_CONFIG = {"displaylogo": False, "responsive": True,
           "plotlyServerURL": "", "toImageButtonOptions": {"format": "svg"}}

Reduce = Literal["last", "max", "min"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Downsampled:
    """A series reduced to at most ``max_points``; ``label`` says how (empty when intact)."""

    series: pd.Series
    label: str


def downsample(series: pd.Series, *, max_points: int = MAX_POINTS,
               how: Reduce = "last") -> Downsampled:
    """Reduce ``series`` to at most ``max_points`` points by equal-count buckets.

    Each bucket is represented by its last timestamp and its last, max or min value.

    >>> s = pd.Series(range(10), index=pd.RangeIndex(10), dtype="float64")
    >>> d = downsample(s, max_points=5, how="max")
    >>> d.series.tolist(), d.label
    ([1.0, 3.0, 5.0, 7.0, 9.0], 'downsampled 10→5 points, bucket max')
    """
    n = len(series)
    if n <= max_points:
        return Downsampled(series=series, label="")
    size = math.ceil(n / max_points)
    bucket = np.arange(n) // size
    grouped = series.groupby(bucket)
    values = getattr(grouped, how)()
    index = series.index.to_series().groupby(bucket).last()
    out = pd.Series(values.to_numpy(), index=pd.Index(index.to_numpy()), name=series.name)
    return Downsampled(series=out, label=f"downsampled {n}→{len(out)} points, bucket {how}")


def downsampling_note(n_points: int) -> str:
    """The page's one note on downsampling, for series of ``n_points`` (empty when intact)."""
    if n_points <= MAX_POINTS:
        return ""
    size = math.ceil(n_points / MAX_POINTS)
    return (f"Charts draw at most {MAX_POINTS:,} points per line: the {n_points:,} steps are "
            f"grouped in buckets of {size} and each bucket is drawn by its last value (levels), "
            "its maximum (margin ratio) or its minimum (drawdown, distance to liquidation), so "
            "peaks stay visible. Tables and the Parquet files of the run folder hold every step.")


def _ms(index: pd.Index) -> np.ndarray:
    # epoch milliseconds of a datetime index, as floats (plotly writes them as a binary array
    # and a date axis reads numbers as milliseconds since the epoch)
    if isinstance(index, pd.DatetimeIndex):
        return np.asarray(index.as_unit("ms").asi8, dtype="float64")
    return np.asarray(index)


def line_figure(series: Mapping[str, pd.Series], *, title: str, yaxis: str,
                how: Reduce | Mapping[str, Reduce] = "last", percent: bool = False,
                stacked: bool = False, hlines: Sequence[tuple[float, str, str]] = (),
                markers: Sequence[tuple[str, Sequence[object], Sequence[float], str, str]] = (),
                styles: Mapping[str, Mapping[str, object]] | None = None) -> go.Figure:
    """A time-series figure of several lines, downsampled, with levels and event markers.

    ``hlines`` are ``(y, label, colour)``; ``markers`` are ``(name, xs, ys, symbol, colour)``;
    ``styles`` maps a line's name to its plotly ``line`` style (width, dash, colour).
    """
    fig = go.Figure()
    is_dates = False
    for name, s in series.items():
        mode: Reduce = how if isinstance(how, str) else how.get(name, "last")
        ds = downsample(s.astype("float64"), how=mode)
        is_dates = is_dates or isinstance(ds.series.index, pd.DatetimeIndex)
        style = dict((styles or {}).get(name, {"width": 1.4}))
        fig.add_trace(go.Scatter(x=_ms(ds.series.index), y=ds.series.to_numpy(), name=name,
                                 mode="lines", stackgroup="one" if stacked else None,
                                 line=style))
    for y, label, colour in hlines:
        fig.add_hline(y=y, line={"dash": "dash", "color": colour, "width": 1},
                      annotation_text=label, annotation_position="top left")
    for name, xs, ys, symbol, colour in markers:
        if len(xs):
            fig.add_trace(go.Scatter(x=list(xs), y=list(ys), name=name, mode="markers",
                                     marker={"symbol": symbol, "size": 11, "color": colour,
                                             "line": {"width": 1, "color": "black"}}))
    fig.update_layout(title=title, template="plotly_white", height=380,
                      margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.15}, hovermode="x unified")
    if is_dates:
        fig.update_xaxes(type="date")
    fig.update_yaxes(title_text=yaxis, tickformat=".1%" if percent else None)
    return fig


def histogram_figure(values: pd.Series, *, title: str, xaxis: str, bins: int = 40,
                     percent: bool = False) -> go.Figure:
    """Distribution of the finite ``values``, binned here (``bins`` equal-width bars, count =
    number of steps), so that the page holds ``bins`` bars whatever the run length."""
    v = values.astype("float64").to_numpy()
    v = v[np.isfinite(v)]
    fig = go.Figure()
    if len(v):
        counts, edges = np.histogram(v, bins=bins)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2.0, y=counts,
                             width=np.diff(edges), name=xaxis, marker={"color": "#2b59c3"}))
    fig.update_layout(title=f"{title} ({len(v):,} steps)", template="plotly_white", height=340,
                      margin={"l": 60, "r": 20, "t": 50, "b": 40}, bargap=0.02,
                      showlegend=False)
    fig.update_xaxes(title_text=xaxis, tickformat=".0%" if percent else None)
    fig.update_yaxes(title_text="steps")
    return fig


def figure_html(fig: go.Figure, div_id: str) -> str:
    """Return the figure as a ``<div>`` + script fragment (no plotly.js, stable div id)."""
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                           config=_CONFIG))
