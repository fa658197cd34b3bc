"""Flag implausible market data: funding beyond the exchange's cap, price jumps beyond the norm.

Schema validation (:mod:`backtester.data.schema`) refuses data that cannot be right (NaN, high
below low); this module flags data that is *legal but implausible*, so a user sees it before a
run books it: a funding rate of 10 (1000 % per interval) or a bar at 100× the price.

Two rules, each returning :class:`Outlier` records with the bar's timestamp:

* **funding cap** — ``|rate| > cap``, where ``cap`` is the largest funding rate per interval the
  exchange allows (the profile's ``funding_rate_cap``, with its source or assumption in the
  profile JSON);
* **return multiple** — for trade, mark and index candles of non-option instruments: the log
  return of the close, high and low against the previous close, ``r``, is flagged when
  ``|r − median| > multiple × scale``. ``scale`` is the series' own robust scale, 1.4826 × the
  median absolute deviation of its close-to-close log returns (a standard-deviation estimate
  that a few wild bars cannot inflate). ``multiple`` defaults to :data:`DEFAULT_RETURN_MULTIPLE`;
  a series whose returns are mostly zero has no scale and is not checked.

Calibration of the default: on the recorded real data in ``shared/data`` (BTC perpetual 1m over
a month, XRP 5m/1h/8h, spot ETH/BTC and XRP/ETH) the largest move is 42 scales (a 1m wick of the
BTC perpetual); on the synthetic sample year (with its deliberate crash) 22 scales. A price
spike of 100× is ``ln 100 = 4.6`` in log return, thousands of scales on intraday data. Options
are skipped: an out-of-the-money option legitimately moves by multiples of its price.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtester.config import OUTLIER_RETURN_MULTIPLE
from backtester.data.schema import Kind
from backtester.timeutil import ms_to_iso

__all__ = ["DEFAULT_RETURN_MULTIPLE", "Outlier", "find_outliers", "summarize"]

#: Default multiple of a series' robust scale beyond which a return is flagged (see above;
#: the run key ``outlier_return_multiple`` has the same default).
DEFAULT_RETURN_MULTIPLE = OUTLIER_RETURN_MULTIPLE
#: 1.4826 × MAD estimates the standard deviation of normally distributed data.
_MAD_TO_SIGMA = 1.4826
_PRICE_KINDS = frozenset({Kind.OHLCV, Kind.MARK, Kind.INDEX})
_OPTION = re.compile(r"-[CP]$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Outlier:
    """One flagged value: ``column`` of ``kind`` ``symbol`` at ``ts_ms`` (bar open / event time).

    ``reason`` says which rule and by how much, e.g. ``funding rate 10 beyond the cap ±0.03``.
    """

    kind: Kind
    symbol: str
    ts_ms: int
    column: str
    value: float
    reason: str

    @property
    def message(self) -> str:
        """One line for the user."""
        return f"{self.kind} {self.symbol} at {ms_to_iso(self.ts_ms)}: {self.reason}"


def find_outliers(frame: pd.DataFrame, kind: Kind | str, *, symbol: str,
                  funding_cap: float | None, return_multiple: float = DEFAULT_RETURN_MULTIPLE,
                  cap_source: str = "") -> list[Outlier]:
    """Return the implausible values of one validated series, in time order.

    Parameters
    ----------
    frame
        A validated series (``ts`` column, the kind's columns).
    funding_cap
        Largest ``|rate|`` per funding interval (a fraction); None skips the funding rule.
    return_multiple
        Multiple of the robust scale beyond which a log return is flagged (> 0).
    cap_source
        Where the cap comes from, quoted in the reason (e.g. ``binance-usdm profile [B10]``).
    """
    kind = Kind(kind)
    if frame.empty:
        return []
    ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    if kind is Kind.FUNDING:
        if funding_cap is None:
            return []
        rate = frame["rate"].to_numpy(dtype="float64")
        where = f" ({cap_source})" if cap_source else ""
        return [Outlier(kind=kind, symbol=symbol, ts_ms=int(ts[i]), column="rate",
                        value=float(rate[i]),
                        reason=f"funding rate {rate[i]:g} ({rate[i]:.2%}) is beyond the "
                               f"exchange's cap ±{funding_cap:g}{where}")
                for i in np.nonzero(np.abs(rate) > funding_cap)[0]]
    if kind not in _PRICE_KINDS or _OPTION.search(symbol) or len(frame) < 3:
        return []
    close = frame["close"].to_numpy(dtype="float64")
    r_close = np.diff(np.log(close))
    center = float(np.median(r_close))
    scale = _MAD_TO_SIGMA * float(np.median(np.abs(r_close - center)))
    if scale <= 0.0:
        return []
    limit = return_multiple * scale
    prev = close[:-1]
    found: dict[int, Outlier] = {}
    for column in ("close", "high", "low"):
        value = frame[column].to_numpy(dtype="float64")[1:]
        r = np.log(value / prev) - center
        for i in np.nonzero(np.abs(r) > limit)[0].tolist():
            if i + 1 in found:
                continue  # one record per bar: the first column that breaks the rule
            found[i + 1] = Outlier(
                kind=kind, symbol=symbol, ts_ms=int(ts[i + 1]), column=column,
                value=float(value[i]),
                reason=(f"{column} {value[i]:g} is {math.exp(r[i] + center):.4g}× the previous "
                        f"close {prev[i]:g}: a log return of {r[i] + center:+.3g}, "
                        f"{abs(r[i]) / scale:,.0f} times the series' robust scale {scale:.3g} "
                        f"(limit {return_multiple:g})"))
    return [found[k] for k in sorted(found)]


def summarize(outliers: list[Outlier], *, limit: int = 5) -> list[str]:
    """Return one line per outlier, at most ``limit``, then a count of the rest."""
    lines = [o.message for o in outliers[:limit]]
    if len(outliers) > limit:
        lines.append(f"... and {len(outliers) - limit} more flagged value(s)")
    return lines
