"""Mark candles on another timeframe than the trade candles, without looking ahead.

Margin is evaluated on mark prices at every trade bar (its close, and in the ``intrabar`` check
its low and high). When the mark candles have another timeframe, each trade bar closing at
``t`` may use only mark bars that have **closed by** ``t`` (a mark bar is usable after it
closes):

* **finer marks** (``1m`` marks, ``5m`` trades; :attr:`MarkRule.AGGREGATED`): the mark bars
  lying inside the trade bar (open at or after its open, close at or before its close) make its
  mark candle: the first one's open, the highest high, the lowest low, the last one's close;
* **coarser marks** (``1h`` marks, ``5m`` trades; :attr:`MarkRule.SCALED`): the basis of the
  last closed mark bar — its close over the trade price at that close, ``ratio`` — carries the
  trade candle over to the mark: ``mark open/high/low/close = trade open/high/low/close x
  ratio``. At the trade bar with which a mark bar closes, the mark close is that bar's close and
  the mark low and high also take that mark bar's own low and high (which have just become
  known), so the check is never milder than one on the mark candles alone. A trade bar that
  closes when the next mark bar should also have closed, but is missing, has no usable mark:
  the trade candle stands in and is counted, as are the bars before the first mark close.

Funding keeps its exact stamp rule (DESIGN §2) on the mark candles as given: the open of the
mark candle opening at the stamp, else the close of the mark bar that closed last before it
(within one mark timeframe), else the trade candle, as for missing marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

__all__ = ["MarkRule", "OtherTimeframeMarks", "marks_on_trade_bars", "rule_note"]

_F64 = NDArray[np.float64]
_I64 = NDArray[np.int64]


class MarkRule(StrEnum):
    """How a trade bar's mark candle is made from the mark candles."""

    SAME = "same"
    AGGREGATED = "aggregated"
    SCALED = "scaled"


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherTimeframeMarks:
    """The mark candle of every trade bar (NaN where no mark is usable) and the rule used."""

    rule: MarkRule
    open: _F64
    high: _F64
    low: _F64
    close: _F64
    missing: NDArray[np.bool_]


def marks_on_trade_bars(ts: _I64, tf_ms: int, trade: dict[str, _F64], mark_ts: _I64,
                        mark_tf_ms: int, mark: dict[str, _F64]) -> OtherTimeframeMarks:
    """Return the mark candle of each trade bar from mark candles of another timeframe.

    Parameters
    ----------
    ts, tf_ms
        Trade bar open times (sorted, unique; epoch ms) and their timeframe (ms).
    trade
        Trade candles ``open high low close`` (quote per unit), aligned with ``ts``.
    mark_ts, mark_tf_ms, mark
        The mark candles' open times, timeframe and ``open high low close``.

    Examples
    --------
    Two 5-minute trade bars inside one hourly mark bar that closes at the second's close:

    >>> ts = np.array([3_000_000, 3_300_000], dtype="int64")  # 00:50 and 00:55
    >>> trade = {k: np.array([10.0, 10.0]) for k in ("open", "high", "low", "close")}
    >>> mark = {"open": np.array([9.9]), "high": np.array([10.5]), "low": np.array([9.0]),
    ...         "close": np.array([9.95])}
    >>> out = marks_on_trade_bars(ts, 300_000, trade, np.array([0]), 3_600_000, mark)
    >>> out.rule.value, out.missing.tolist(), out.close.tolist(), out.low.tolist()
    ('scaled', [True, False], [nan, 9.95], [nan, 9.0])
    """
    if mark_tf_ms < tf_ms:
        return _aggregated(ts, tf_ms, mark_ts, mark_tf_ms, mark)
    return _scaled(ts, tf_ms, trade, mark_ts, mark_tf_ms, mark)


def _aggregated(ts: _I64, tf_ms: int, mark_ts: _I64, mark_tf_ms: int,
                mark: dict[str, _F64]) -> OtherTimeframeMarks:
    n = len(ts)
    # the trade bar each mark bar lies in (its open at or after the trade bar's open and its
    # close at or before the trade bar's close); others are in no trade bar
    k = np.searchsorted(ts, mark_ts, side="right") - 1
    inside = (k >= 0) & (mark_ts + mark_tf_ms <= ts[np.maximum(k, 0)] + tf_ms)
    k, sel = k[inside], np.flatnonzero(inside)
    out = {name: np.full(n, np.nan) for name in ("open", "high", "low", "close")}
    if len(k):
        starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
        ends = np.append(starts[1:], len(k)) - 1
        bars = k[starts]
        out["open"][bars] = mark["open"][sel[starts]]
        out["close"][bars] = mark["close"][sel[ends]]
        out["high"][bars] = np.maximum.reduceat(mark["high"][sel], starts)
        out["low"][bars] = np.minimum.reduceat(mark["low"][sel], starts)
    return OtherTimeframeMarks(rule=MarkRule.AGGREGATED, missing=np.isnan(out["close"]), **out)


def _price_at(ts: _I64, tf_ms: int, trade: dict[str, _F64], at: _I64) -> _F64:
    # the trade price at each time of ``at``: the close of the bar closing then, else the open
    # of the bar opening then, else the last close before it (NaN before the first bar)
    closes = ts + tf_ms
    i = np.searchsorted(closes, at, side="right") - 1
    price = np.where(i >= 0, trade["close"][np.maximum(i, 0)], np.nan)
    j = np.minimum(np.searchsorted(ts, at), len(ts) - 1)
    opens_then = (ts[j] == at) & ((i < 0) | (closes[np.maximum(i, 0)] != at))
    return np.where(opens_then, trade["open"][j], price)


def _scaled(ts: _I64, tf_ms: int, trade: dict[str, _F64], mark_ts: _I64, mark_tf_ms: int,
            mark: dict[str, _F64]) -> OtherTimeframeMarks:
    closes = ts + tf_ms
    mark_closes = mark_ts + mark_tf_ms
    # the last mark bar closed by each trade bar's close, usable until the next one is due
    j = np.searchsorted(mark_closes, closes, side="right") - 1
    jj = np.maximum(j, 0)
    ratio = mark["close"] / _price_at(ts, tf_ms, trade, mark_closes)
    usable = (j >= 0) & (closes < mark_closes[jj] + mark_tf_ms) & np.isfinite(ratio[jj])
    r = np.where(usable, ratio[jj], np.nan)
    out = {name: trade[name] * r for name in ("open", "high", "low", "close")}
    # the trade bar a mark bar closes with: that bar's close exactly, and its own extremes
    ends = usable & (closes == mark_closes[jj])
    out["close"] = np.where(ends, mark["close"][jj], out["close"])
    out["high"] = np.where(ends, np.maximum(np.maximum(out["high"], mark["high"][jj]),
                                            out["close"]), out["high"])
    out["low"] = np.where(ends, np.minimum(np.minimum(out["low"], mark["low"][jj]),
                                           out["close"]), out["low"])
    return OtherTimeframeMarks(rule=MarkRule.SCALED, missing=~usable, **out)


def rule_note(symbol: str, rule: MarkRule, *, mark_tf: str, trade_tf: str) -> str:
    """Return the run warning that says which mark rule a symbol's margin used."""
    if rule is MarkRule.AGGREGATED:
        how = (f"each {trade_tf} trade bar's mark candle is made of the {mark_tf} mark bars "
               "inside it (first open, highest high, lowest low, last close)")
    else:
        how = (f"at each {trade_tf} trade bar, the trade candle is scaled by the last closed "
               f"{mark_tf} mark bar's close over the trade price then (mark open/high/low/close "
               f"= trade x that ratio); at the bar a {mark_tf} mark bar closes with, the mark "
               "close is its close and its own low and high are included")
    return (f"{symbol}: mark candles are {mark_tf}, trade candles {trade_tf}: {how}; a mark "
            "bar is used only after it closes (no look-ahead), funding uses the mark candle "
            "at its stamp (docs/data.md, 'Marks on another timeframe')")
