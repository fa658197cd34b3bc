"""Align many instruments with different timeframes and missing bars onto one clock.

A bar stamped with its open time ``t`` is visible at ``t + timeframe`` (its close). The clock is
the sorted union of every instrument's bar close times; at each clock step the instruments whose
bar closes then advance, the others keep their last closed bar. Mark and index candles are
aligned to the trade bars of the same instrument; where they are missing the trade candle is
used and counted (``mark_fallback_bars``) so the results can say so.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from backtester.data.marks import MarkRule, marks_on_trade_bars, rule_note
from backtester.data.schema import (
    Kind,
    find_gaps,
    normalize_ts,
    validate_arrays,
    with_ts_column,
)
from backtester.errors import DataError
from backtester.instruments import Instrument
from backtester.instruments.assets import is_stablecoin
from backtester.timeutil import timeframe_ms

__all__ = ["Feed", "MarketFrames", "SymbolFeed", "VolIndex"]

#: The lowest vol the IV solver tries (its ``vol_min``): marks at or below the price it gives
#: are options valued at intrinsic, IV 0.
_IV_FLOOR = 1e-4
_TFS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w")
#: the funding interval assumed around a history of a single stamp (the usual 8 hours)
_FUNDING_INTERVAL_MS = 8 * 3_600_000
#: the advice for tz-naive times in frames handed to the Python API
NAIVE_HINT = ("localize them first (df.index = df.index.tz_localize('UTC'), or "
              "df['ts'] = df['ts'].dt.tz_localize('UTC'))")


@dataclass(slots=True, kw_only=True)
class MarketFrames:
    """The data of one instrument as DataFrames (bar open times, tz-aware UTC).

    ``ohlcv`` is required; ``mark``, ``index`` (candles on the same timeframe; mark candles may
    have another, ``mark_timeframe``, inferred from their stamps when not given — see
    :mod:`backtester.data.marks`), ``funding`` (``ts``, ``rate``) and ``option_marks`` are
    optional. Times are a ``ts`` column, any
    tz-aware DatetimeIndex, a ``date``/``timestamp`` column, or integer epoch milliseconds
    (ccxt's ``fetch_ohlcv`` rows): see :func:`~backtester.data.schema.with_ts_column`.
    """

    ohlcv: pd.DataFrame
    timeframe: str | None = None
    mark: pd.DataFrame | None = None
    index: pd.DataFrame | None = None
    funding: pd.DataFrame | None = None
    option_marks: pd.DataFrame | None = None
    mark_timeframe: str | None = None


def _infer_timeframe(ts_ms: np.ndarray, symbol: str) -> str:
    # the smallest spacing between distinct stamps (sorting only when the input is unsorted)
    d = np.diff(ts_ms)
    if (d < 0).any():
        d = np.diff(np.sort(ts_ms))
    d = d[d > 0]
    if not len(d):
        msg = f"{symbol}: cannot infer the timeframe from fewer than 2 bars; give timeframe"
        raise DataError(msg)
    step = int(d.min())
    for tf in _TFS:
        if timeframe_ms(tf) == step:
            return tf
    msg = f"{symbol}: bar spacing {step} ms is not a known timeframe; give timeframe"
    raise DataError(msg)


def _timeframe_of(raw: pd.DataFrame, what: str, symbol: str, *,
                  default: str | None = None) -> str:
    # the timeframe of candles given without one: the smallest spacing of their stamps
    # (``default``, when given, for fewer than two bars)
    pre = with_ts_column(raw, what=what)
    ts0 = normalize_ts(pre["ts"], what=what, naive_hint=NAIVE_HINT,
                       is_user_data=True).astype("int64").to_numpy()
    if default is not None and len(np.unique(ts0)) < 2:
        return default
    return _infer_timeframe(ts0, symbol)


@dataclass(frozen=True, slots=True, kw_only=True)
class VolIndex:
    """A currency's volatility index (DVOL-like annualised ATM vol, percent) as runs read it.

    ``close_ms`` are the candles' close times (open + timeframe, sorted), ``level`` their
    closes. The level at a time ``T`` is the close of the last candle closed by ``T``: a
    candle is used only once it has closed (a daily DVOL candle's close is not known during
    its day, and on hourly bars it would be up to 23 hours in the future); NaN before the
    first close.
    """

    currency: str
    timeframe: str
    close_ms: np.ndarray
    level: np.ndarray

    @classmethod
    def build(cls, data: pd.DataFrame | MarketFrames, currency: str) -> VolIndex:
        """Validate vol index candles (a DataFrame as ``ohlcv`` takes them, timeframe inferred
        from the stamps, or :class:`MarketFrames` whose ``ohlcv`` are the candles and whose
        ``timeframe`` says theirs)."""
        frame, tf = (data.ohlcv, data.timeframe) if isinstance(data, MarketFrames) else (
            data, None)
        what = f"{currency} vol index"
        if tf is None:
            tf = _timeframe_of(frame, f"vol_index {what}", what)
        clean = validate_arrays(frame, Kind.VOL_INDEX, symbol=what, timeframe=tf)
        if not len(clean.ts_ms):
            msg = f"vol_index {what}: no candles"
            raise DataError(msg)
        return cls(currency=currency, timeframe=tf, close_ms=clean.ts_ms + timeframe_ms(tf),
                   level=clean.columns["close"])

    def level_at(self, ts_ms: np.ndarray) -> np.ndarray:
        """The level (percent) at each time of ``ts_ms`` (epoch ms): the close of the last
        candle closed by then, NaN before the first close."""
        j = np.searchsorted(self.close_ms, ts_ms, side="right") - 1
        return np.where(j >= 0, self.level[np.maximum(j, 0)], np.nan)

    def age_ms(self, ts_ms: np.ndarray) -> np.ndarray:
        """How old the level used at each time is (ms since that candle closed; -1 before the
        first close)."""
        j = np.searchsorted(self.close_ms, ts_ms, side="right") - 1
        return np.where(j >= 0, ts_ms - self.close_ms[np.maximum(j, 0)], -1)


def _ints(a: np.ndarray) -> array[int]:
    out: array[int] = array("q", bytes(0))
    if len(a):
        out = array("q", [0]) * len(a)
        np.frombuffer(out, dtype="int64")[:] = a
    return out


def _seqs(arrays: dict[str, np.ndarray], keys: tuple[str, ...]) -> list[array[float]]:
    # fast scalar access to each series without copying it: a memoryview of its float64
    # array, made contiguous and read-only; keys sharing an array (mark or index candles that
    # fall back to the trade candles) share the view. Typed as the array('d') it replaced: it
    # reads the same (f.c[i] is a float, len(f.c), np.frombuffer(f.c) is a view)
    done: dict[int, tuple[array[float], np.ndarray]] = {}
    out = []
    for k in keys:
        a = arrays[k]
        hit = done.get(id(a))
        if hit is None:
            view = np.ascontiguousarray(a, dtype="float64").view()
            view.flags.writeable = False
            hit = done[id(a)] = (cast("array[float]", view.data), view)
        out.append(hit[0])
        arrays[k] = hit[1]
    return out


def _lookup(src_ts: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # positions of the stamps ``ts`` in the sorted unique ``src_ts`` (clipped) and whether each
    # is present: the arrays of a reindex on ``ts``
    pos = np.searchsorted(src_ts, ts)
    np.minimum(pos, max(len(src_ts) - 1, 0), out=pos)
    ok = src_ts[pos] == ts if len(src_ts) else np.zeros(len(ts), dtype=bool)
    return pos, ok


def _reindexed(values: np.ndarray, pos: np.ndarray, ok: np.ndarray) -> np.ndarray:
    # ``values`` at the looked-up positions, NaN where the stamp is absent
    if not len(values):
        return np.full(len(pos), np.nan)
    return np.where(ok, values[pos], np.nan)


class SymbolFeed:
    """One instrument's bars and its cursor ``idx``.

    ``arrays`` holds each series as a read-only float64 array; ``o``, ``h``, ``l``, ``c``,
    ``v`` (trade candles), ``mo``... (mark), ``io``... (index) and ``fl``, ``fh``, ``fc``
    (the forward an option is priced on, see :meth:`use_underlying_index`) are memoryviews of
    them (fast scalar access: ``f.c[i]`` is a float). Clean input (float64, sorted, unique) is
    not copied: the arrays view the caller's columns, whose pandas objects the feed keeps so
    that pandas copies on a later write instead of changing the feed. Mark and index candles
    that fall back to the trade candles share their storage.
    """

    __slots__ = (
        "_owners",
        "arrays",
        "c",
        "fc",
        "fh",
        "fl",
        "forward_fallback_bars",
        "forward_missing",
        "forward_source",
        "funding_covered",
        "funding_rate",
        "funding_ts",
        "gaps",
        "h",
        "has_index",
        "has_mark",
        "ic",
        "idx",
        "ih",
        "il",
        "instrument",
        "io",
        "l",
        "mark_fallback_bars",
        "mark_missing",
        "mark_raw",
        "mark_rule",
        "mark_source",
        "mark_timeframe",
        "mc",
        "mh",
        "ml",
        "mo",
        "n",
        "next_funding",
        "o",
        "option_iv",
        "symbol",
        "tf_ms",
        "timeframe",
        "ts",
        "ts_np",
        "v",
    )

    def __init__(self, instrument: Instrument, frames: MarketFrames) -> None:
        sym = instrument.symbol
        raw = frames.ohlcv
        tf = frames.timeframe
        if tf is None:
            tf = _timeframe_of(raw, f"ohlcv {sym}", sym)
        ohlcv = validate_arrays(raw, Kind.OHLCV, symbol=sym, timeframe=tf,
                                is_option=instrument.is_option, naive_hint=NAIVE_HINT,
                                is_user_data=True)
        if not len(ohlcv.ts_ms):
            msg = f"{sym}: no bars"
            raise DataError(msg)
        self.instrument = instrument
        self.symbol = sym
        self.timeframe = tf
        self.tf_ms = timeframe_ms(tf)
        self.ts: array[int] = _ints(ohlcv.ts_ms)
        ts = np.frombuffer(self.ts, dtype="int64")
        ts.flags.writeable = False
        self.ts_np = ts
        self.n = len(ts)
        arrays = dict(ohlcv.columns)
        self._owners = ohlcv.owners
        vol = arrays["volume"]
        if not np.isfinite(vol).all():
            arrays["volume"] = np.nan_to_num(vol, nan=0.0)
        self.gaps = find_gaps(ts, self.tf_ms)
        self.mark_fallback_bars = 0
        self.mark_rule = MarkRule.SAME
        self.mark_timeframe = tf
        #: mark candles of another timeframe as given (open times, opens, closes, timeframe
        #: ms), for the mark at a funding stamp; None when they are on the trade bars
        self.mark_raw: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = None
        # one byte a bar (truthy where the trade candle stands in for the mark candle)
        self.mark_missing: bytes = (b"\x01" if frames.mark is None else b"\x00") * len(ts)
        self.has_mark = frames.mark is not None
        self.has_index = frames.index is not None
        for prefix, frame, kind in (("mark", frames.mark, Kind.MARK),
                                    ("index", frames.index, Kind.INDEX)):
            aligned = self._align(frame, kind, ts, tf, arrays,
                                  other_tf=frames.mark_timeframe if kind is Kind.MARK else None)
            for k, v in aligned.items():
                arrays[f"{prefix}_{k}"] = v
        self.arrays = arrays
        (self.o, self.h, self.l, self.c, self.v, self.mo, self.mh, self.ml, self.mc,
         self.io, self.ih, self.il, self.ic) = _seqs(arrays, (
             "open", "high", "low", "close", "volume", "mark_open", "mark_high", "mark_low",
             "mark_close", "index_open", "index_high", "index_low", "index_close"))
        self.funding_ts: list[int] = []
        self.funding_rate: list[float] = []
        #: the span of the funding history (first, last stamp; ms); the stamps its schedule
        #: would have had outside it, within the bars, are in ``funding_ts`` with a NaN rate
        self.funding_covered: tuple[int, int] | None = None
        if frames.funding is not None and len(frames.funding):
            fund = validate_arrays(frames.funding, Kind.FUNDING, symbol=sym, timeframe=None,
                                   naive_hint=NAIVE_HINT, is_user_data=True)
            self._set_funding(fund.ts_ms, fund.columns["rate"])
        self.next_funding = 0
        self.option_iv: list[float] | None = None
        self.mark_source = "mark" if frames.mark is not None else "trade"
        if frames.option_marks is not None and len(frames.option_marks):
            self.mark_source = "option_marks"
            om = validate_arrays(frames.option_marks, Kind.OPTION_MARKS, symbol=sym,
                                 timeframe=None, naive_hint=NAIVE_HINT, is_user_data=True)
            pos, present = _lookup(om.ts_ms, ts)
            self.option_iv = _reindexed(om.columns["mark_iv"], pos, present).tolist()
            own = _reindexed(om.columns["underlying_price"], pos, present)
            if (np.isfinite(own) & (own > 0)).any():
                arrays["underlying_price"] = own
            if frames.mark is None:
                mp = _reindexed(om.columns["mark_price"], pos, present)
                ok = np.isfinite(mp)
                mc = np.where(ok, mp, arrays["close"])
                arrays["mark_close"] = mc
                arrays["mark_high"] = np.maximum(arrays["mark_high"], mc)
                arrays["mark_low"] = np.minimum(arrays["mark_low"], mc)
                self.mc, self.mh, self.ml = _seqs(arrays, ("mark_close", "mark_high",
                                                            "mark_low"))
                self.mark_fallback_bars = int((~ok).sum())
                self.mark_missing = (~ok).astype(np.uint8).tobytes()
                self.has_mark = True
        self.forward_source = "index"
        self.forward_fallback_bars = 0
        self.forward_missing = b""
        self._link_forward()
        self.idx = -1

    def _set_funding(self, stamps: np.ndarray, rates: np.ndarray) -> None:
        # the history, plus the stamps its schedule would have had before it starts and after
        # it ends within the bars (rate NaN: uncovered; the engine decides what they cost).
        # The schedule there is the history's nearest spacing: its first one before it, its
        # last one after it (8h with a single stamp)
        head = tail = _FUNDING_INTERVAL_MS
        if len(stamps) > 1:
            head, tail = int(stamps[1] - stamps[0]), int(stamps[-1] - stamps[-2])
        first, last = int(stamps[0]), int(stamps[-1])
        self.funding_covered = (first, last)
        lo, hi = int(self.ts_np[0]), int(self.ts_np[-1]) + self.tf_ms
        before = np.arange(first - head, lo - 1, -head, dtype="int64")[::-1]
        after = np.arange(last + tail, hi, tail, dtype="int64")
        self.funding_ts = np.concatenate([before, stamps, after]).tolist()
        self.funding_rate = np.concatenate([np.full(len(before), np.nan), rates,
                                            np.full(len(after), np.nan)]).tolist()

    def mark_at_stamp(self, stamp: int) -> float | None:
        """The mark at a funding stamp from mark candles of another timeframe than the trade
        bars: the open of the mark candle opening at ``stamp``, else the close of the mark bar
        that closed last, within one mark timeframe before it; None when they are on the trade
        bars or no such mark bar exists (a gap, before the first, after the last)."""
        if self.mark_raw is None:
            return None
        mts, mopen, mclose, mtf = self.mark_raw
        j = int(np.searchsorted(mts, stamp))
        if j < len(mts) and mts[j] == stamp:
            return float(mopen[j])
        k = int(np.searchsorted(mts + mtf, stamp, side="right")) - 1
        return float(mclose[k]) if k >= 0 and stamp < mts[k] + 2 * mtf else None

    def bar_at(self, ts_ms: Any) -> np.ndarray:
        """Index of the last bar closed at or before each time of ``ts_ms`` (epoch ms; -1
        before the first close)."""
        return np.searchsorted(self.ts_np + self.tf_ms, ts_ms, side="right") - 1

    def price_option(self, vol: VolIndex | None) -> None:
        """Give an option its implied vol per bar (and theoretical marks when it has none).

        IV comes from ``option_marks.mark_iv`` where given, else it is solved from the mark
        price; a mark at or below what the smallest vol the solver tries (1e-4) gives — a
        worthless option marked 0, or one at its intrinsic value — has IV 0 (Black-76 then
        values it at intrinsic, delta 0 or ±1). An option with neither option marks nor mark
        candles is priced with Black-76 from the vol index of its underlying and the default
        smile (:class:`VolIndex`: the last candle closed by each bar's close), and its
        ``mark_source`` says ``theoretical``; bars before the first closed vol candle keep
        the trade candles as marks (``mark_fallback_bars``). The forward is the option's own
        (``fc``, see :meth:`use_underlying_index`); time to expiry runs from each bar's close
        (365-day year).
        """
        from backtester.pricing import implied_vol, inverse_price, price
        from backtester.pricing.surface import smile_vol

        inst = self.instrument
        a = self.arrays
        fwd = a["forward_close"]
        t = np.maximum((inst.expiry_ms or 0) - (self.ts_np + self.tf_ms), 0) / (365.0 * 86_400_000)
        is_call = inst.option_type is not None and inst.option_type.value == "call"
        strike = float(inst.strike or 0.0)
        pricer = price if inst.is_linear else inverse_price
        if self.mark_source == "trade" and vol is not None:
            level = vol.level_at(self.ts_np + self.tf_ms)
            have = np.isfinite(level)
            if have.any():
                iv = np.full(self.n, np.nan)
                iv[have] = smile_vol(level[have], strike, fwd[have], t[have])
                # a call is worth most at the forward's high, a put at its low
                up, down = ((a["forward_high"], a["forward_low"]) if is_call
                            else (a["forward_low"], a["forward_high"]))
                for k, und in (("close", fwd), ("high", up), ("low", down)):
                    theo = np.zeros(self.n)
                    theo[have] = pricer(und[have], strike, t[have], iv[have], is_call)
                    a[f"mark_{k}"] = np.where(have, theo, a[k])
                mc = a["mark_close"]
                a["mark_open"] = np.where(have, np.concatenate([mc[:1], mc[:-1]]), a["open"])
                self.mo, self.mh, self.ml, self.mc = _seqs(a, ("mark_open", "mark_high",
                                                                "mark_low", "mark_close"))
                self.mark_source = "theoretical"
                self.mark_fallback_bars = int((~have).sum())
                self.mark_missing = (~have).astype(np.uint8).tobytes()
                self.has_mark = True
                given = iv  # NaN before the first closed vol candle: solved below
        if self.mark_source != "theoretical":
            given = np.asarray(self.option_iv if self.option_iv is not None else
                               [np.nan] * self.n, dtype="float64") / 100.0
        missing = ~np.isfinite(given)
        if missing.any():
            marks = a["mark_close"][missing]
            solved = np.asarray(implied_vol(marks, fwd[missing], strike, t[missing], is_call,
                                            is_inverse=not inst.is_linear, vol_min=_IV_FLOOR),
                                dtype="float64")
            # a mark at (or under) the value at the solver's lowest vol is an option priced at
            # intrinsic (a worthless one at 0): IV 0, not the bracket's edge or NaN; marks no
            # vol reproduces above that (over the no-arbitrage bound) stay NaN, without greeks
            floor = np.asarray(pricer(fwd[missing], strike, t[missing], _IV_FLOOR, is_call),
                               dtype="float64")
            at_intrinsic = marks <= floor
            solved[at_intrinsic] = 0.0
            given[missing] = solved
        self.option_iv = given.tolist()

    def use_underlying_index(self, under: SymbolFeed) -> None:
        """Take index candles from the underlying's feed (options quote a premium, not the
        underlying), aligned on this feed's bar times; the last earlier index close fills gaps.

        The option's forward (``fl``, ``fh``, ``fc``; ``forward_source``) is its own
        ``underlying_price`` (Deribit: the future or synthetic future of its expiry) where the
        option marks give it, else this index; the own forward's low and high are the index's
        low and high scaled by forward/index at the close (``forward_fallback_bars`` counts the
        bars without an own forward, where the index stands in).
        """
        pos = np.searchsorted(under.ts_np, self.ts_np, side="right") - 1
        pos = np.clip(pos, 0, under.n - 1)
        for k in ("open", "high", "low", "close"):
            self.arrays[f"index_{k}"] = under.arrays[f"index_{k}"][pos]
        self.io, self.ih, self.il, self.ic = _seqs(self.arrays, (
            "index_open", "index_high", "index_low", "index_close"))
        self.has_index = True
        self._link_forward()

    def _link_forward(self) -> None:
        # The forward an option is priced on (greeks, IV, intrabar repricing, Deribit's option
        # margin): its own ``underlying_price`` from the option marks where given, else the
        # index (an option's index is its underlying's, see use_underlying_index). Intrabar,
        # the own forward moves with the index: low = index low × forward/index close (high
        # alike). Without an own forward (and for every other instrument) the arrays are the
        # index's own, shared.
        a = self.arrays
        own = a.get("underlying_price")
        if own is None:
            for k in ("low", "high", "close"):
                a[f"forward_{k}"] = a[f"index_{k}"]
            self.forward_source = "index"
            self.forward_fallback_bars = 0
            self.forward_missing = b""
        else:
            ok = np.isfinite(own) & (own > 0)
            fc = np.where(ok, own, a["index_close"])
            a["forward_close"] = fc
            if self.has_index:
                ratio = fc / a["index_close"]
                a["forward_low"] = a["index_low"] * ratio
                a["forward_high"] = a["index_high"] * ratio
            else:  # no index candles to move it within the bar
                a["forward_low"] = a["forward_high"] = fc
            self.forward_source = "underlying_price"
            self.forward_fallback_bars = int((~ok).sum())
            # one byte a bar, truthy where the index stands in (empty: never)
            self.forward_missing = (~ok).astype(np.uint8).tobytes() \
                if self.forward_fallback_bars else b""
        self.fl, self.fh, self.fc = _seqs(a, ("forward_low", "forward_high", "forward_close"))

    def _align(self, frame: pd.DataFrame | None, kind: Kind, ts: np.ndarray, tf: str,
               arrays: dict[str, np.ndarray], *, other_tf: str | None) -> dict[str, np.ndarray]:
        cols = ("open", "high", "low", "close")
        if frame is None:
            if kind is Kind.MARK:
                self.mark_fallback_bars = len(ts)
            # shared, not copied: nothing writes into these arrays in place
            return {k: (arrays[k] if kind is Kind.MARK or not self.has_mark
                        else arrays[f"mark_{k}"]) for k in cols}
        if kind is Kind.MARK:
            sym = self.instrument.symbol
            mark_tf = other_tf or _timeframe_of(frame, f"mark {sym}", f"mark {sym}", default=tf)
            if timeframe_ms(mark_tf) != self.tf_ms:
                return self._align_other_timeframe(frame, mark_tf, ts, arrays)
        clean = validate_arrays(frame, kind, symbol=self.instrument.symbol, timeframe=tf,
                                is_option=self.instrument.is_option, naive_hint=NAIVE_HINT,
                                is_user_data=True)
        pos, present = _lookup(clean.ts_ms, ts)
        out: dict[str, np.ndarray] = {}
        missing = None
        for k in cols:
            v = _reindexed(clean.columns[k], pos, present)
            if missing is None:
                missing = ~np.isfinite(v)
            fallback = arrays[k] if kind is Kind.MARK or not self.has_mark else arrays[f"mark_{k}"]
            out[k] = np.where(np.isfinite(v), v, fallback)
        if kind is Kind.MARK and missing is not None:
            self.mark_fallback_bars = int(missing.sum())
            self.mark_missing = missing.astype(np.uint8).tobytes()
        return out

    def _align_other_timeframe(self, frame: pd.DataFrame, mark_tf: str, ts: np.ndarray,
                               arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # mark candles of another timeframe (data/marks.py); the trade candle stands in where
        # no mark bar is usable, counted as for missing mark candles
        clean = validate_arrays(frame, Kind.MARK, symbol=self.instrument.symbol,
                                timeframe=mark_tf, naive_hint=NAIVE_HINT, is_user_data=True)
        cols = ("open", "high", "low", "close")
        got = marks_on_trade_bars(ts, self.tf_ms, {k: arrays[k] for k in cols}, clean.ts_ms,
                                  timeframe_ms(mark_tf), clean.columns)
        out = {k: np.where(got.missing, arrays[k], getattr(got, k)) for k in cols}
        self.mark_fallback_bars = int(got.missing.sum())
        self.mark_missing = got.missing.astype(np.uint8).tobytes()
        self.mark_rule = got.rule
        self.mark_timeframe = mark_tf
        self.mark_raw = (clean.ts_ms, clean.columns["open"], clean.columns["close"],
                         timeframe_ms(mark_tf))
        return out


class Clock:
    """The clock steps as a compact sequence of ``(close_ms, advancing feeds)``.

    Stored as an int64 array of step times and a group id per step; steps that advance the
    same feeds share one tuple (a single-timeframe run has one group).
    """

    __slots__ = ("groups", "ids", "times")

    def __init__(self, times: array[int], ids: array[int],
                 groups: list[tuple[SymbolFeed, ...]]) -> None:
        self.times = times
        self.ids = ids
        self.groups = groups

    @classmethod
    def build(cls, feeds: list[SymbolFeed]) -> Clock:
        """Steps at every bar close of ``feeds``; the feeds of a step keep the order given."""
        if not feeds:
            return cls(array("q"), array("B"), [])
        f = feeds[0]
        if all(g.tf_ms == f.tf_ms and np.array_equal(g.ts_np, f.ts_np) for g in feeds[1:]):
            # one feed, or feeds on the same bars: a step per bar close (sorted, unique), every
            # step advancing all of them
            return cls(_ints(f.ts_np + f.tf_ms), array("B", bytes(f.n)), [tuple(feeds)])
        closes = np.concatenate([f.ts_np + f.tf_ms for f in feeds])
        owner = np.concatenate([np.full(f.n, k, dtype="int64") for k, f in enumerate(feeds)])
        order = np.argsort(closes, kind="stable")  # ties keep the feeds' order
        closes, owner = closes[order], owner[order]
        del order
        new = np.empty(len(closes), dtype=bool)
        new[0] = True
        np.not_equal(closes[1:], closes[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        times = closes[starts]
        del closes, new
        if len(feeds) <= 63:
            # membership bit mask per step (exact), then one id per distinct mask
            masks = np.bitwise_or.reduceat(np.left_shift(np.int64(1), owner), starts)
            ends = np.append(starts[1:], len(owner))
            if (masks == masks[0]).all():
                groups = [tuple(feeds[k] for k in owner[starts[0]:ends[0]])]
                ids = np.zeros(len(masks), dtype="int64")
            else:
                _, first, inv = np.unique(masks, return_index=True, return_inverse=True)
                groups = [tuple(feeds[k] for k in owner[starts[j]:ends[j]]) for j in first]
                ids = inv.reshape(-1)
        else:
            ends = np.append(starts[1:], len(owner))
            memo: dict[tuple[int, ...], int] = {}
            id_list = []
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                key = tuple(owner[a:b].tolist())
                id_list.append(memo.setdefault(key, len(memo)))
            groups = [tuple(feeds[k] for k in key) for key in memo]
            ids = np.asarray(id_list, dtype="int64")
        t_arr = _ints(times)
        code = "B" if len(groups) <= 256 else "q"
        i_arr: array[int] = array(code)
        i_arr.frombytes(ids.astype("uint8" if code == "B" else "int64").tobytes())
        return cls(t_arr, i_arr, groups)

    def __len__(self) -> int:
        return len(self.times)

    def __bool__(self) -> bool:
        return len(self.times) > 0

    def __getitem__(self, k: int) -> tuple[int, tuple[SymbolFeed, ...]]:
        return self.times[k], self.groups[self.ids[k]]

    def __iter__(self) -> Iterator[tuple[int, tuple[SymbolFeed, ...]]]:
        return zip(self.times, map(self.groups.__getitem__, self.ids), strict=True)


@dataclass(slots=True)
class Feed:
    """Every instrument's :class:`SymbolFeed` and the clock that drives them.

    ``steps`` is a :class:`Clock` (a sequence of ``(close_ms, advancing feeds)``);
    ``index_feeds`` maps a coin to the feed whose index prices value it as collateral
    (stablecoins are worth 1 USD).
    """

    symbols: dict[str, SymbolFeed]
    steps: Clock = field(default_factory=lambda: Clock(array("q"), array("B"), []))
    index_feeds: dict[str, SymbolFeed] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, instruments: Mapping[str, Instrument], frames: Mapping[str, MarketFrames], *,
              start_ms: int | None = None, end_ms: int | None = None,
              vol_index: Mapping[str, pd.DataFrame | MarketFrames] | None = None) -> Feed:
        """Validate and align the data of every instrument and build the clock.

        ``start_ms``/``end_ms`` keep bars that open at or after start and before end.
        ``vol_index`` maps a currency (``BTC``) to its vol index candles (see
        :class:`VolIndex`), read only to price options that have neither option marks nor mark
        candles (theoretical marks).
        """
        symbols: dict[str, SymbolFeed] = {}
        notes: list[str] = []
        for sym in sorted(frames):
            if sym not in instruments:
                msg = f"data given for {sym} but no instrument is known for it"
                raise DataError(msg)
            fr = frames[sym]
            if start_ms is not None or end_ms is not None:
                fr = _clip(fr, start_ms, end_ms, sym)
            feed = SymbolFeed(instruments[sym], fr)
            symbols[sym] = feed
            if feed.mark_rule is not MarkRule.SAME:
                notes.append(rule_note(sym, feed.mark_rule, mark_tf=feed.mark_timeframe,
                                       trade_tf=feed.timeframe))
                if feed.mark_fallback_bars:
                    notes.append(f"no closed {feed.mark_timeframe} mark bar usable for "
                                 f"{feed.mark_fallback_bars} of {feed.n} {feed.timeframe} bars "
                                 f"of {sym} (before the first mark bar closes, in gaps of the "
                                 "marks or after they end): margin uses trade candles there")
            elif feed.mark_fallback_bars and not feed.instrument.is_option:
                notes.append(f"mark candles missing for {feed.mark_fallback_bars} of {feed.n} "
                             f"bars of {sym}: margin uses trade candles there")
            if feed.gaps.count:
                notes.append(f"{sym}: {feed.gaps.count} gaps, {feed.gaps.missing_bars} missing "
                             f"bars ({feed.gaps.pct_missing:.2%})")
        if not symbols:
            msg = "no market data: give at least one instrument's candles"
            raise DataError(msg)
        steps = Clock.build(list(symbols.values()))
        index_feeds: dict[str, SymbolFeed] = {}
        vols: dict[str, VolIndex] = {}
        # prefer perpetuals, then futures, for a coin's index price
        rank = {"perpetual": 0, "future": 1, "spot": 2, "option": 3}
        for feed in sorted(symbols.values(),
                           key=lambda f: (rank[f.instrument.kind.value], f.symbol)):
            index_feeds.setdefault(feed.instrument.base, feed)
        for feed in symbols.values():
            under = index_feeds.get(feed.instrument.base)
            took = (feed.instrument.is_option and not feed.has_index and under is not None
                    and under is not feed)
            if took and under is not None:
                feed.use_underlying_index(under)
            if feed.instrument.is_option:
                base = feed.instrument.base
                vi = None
                if feed.mark_source == "trade" and base in (vol_index or {}):
                    if base not in vols:
                        vols[base] = VolIndex.build((vol_index or {})[base], base)
                    vi = vols[base]
                feed.price_option(vi)
                notes.extend(_option_notes(feed, vi))
                notes.extend(_forward_notes(feed, under if took else None))
        notes.extend(_vol_notes(vols, [f for f in symbols.values()
                                       if f.mark_source == "theoretical"]))
        return cls(symbols=symbols, steps=steps, index_feeds=index_feeds, warnings=notes)

    def reset(self) -> None:
        """Rewind every cursor (a feed can be replayed)."""
        for f in self.symbols.values():
            f.idx = -1
            f.next_funding = 0

    @staticmethod
    def is_stable(asset: str) -> bool:
        """True for USD stablecoins valued at 1 USD (``backtester.instruments.assets``)."""
        return is_stablecoin(asset)


def _option_notes(feed: SymbolFeed, vol: VolIndex | None) -> list[str]:
    # where an option's marks come from, when not (all) from the data
    sym, n = feed.symbol, feed.n
    if feed.mark_source == "theoretical":
        out = [f"{sym}: no option marks; marks are theoretical (Black-76 on its forward at the "
               f"{feed.instrument.base} vol index level with the default smile)"]
        if feed.mark_fallback_bars and vol is not None:
            out.append(f"{sym}: no {vol.currency} vol index candle had closed by the close of "
                       f"{feed.mark_fallback_bars} of its {n} bars: its trade candles are the "
                       "marks there")
        return out
    if feed.mark_fallback_bars:
        return [f"mark candles missing for {feed.mark_fallback_bars} of {n} bars of {sym}: "
                "margin uses trade candles there"]
    return []


def _vol_notes(vols: Mapping[str, VolIndex], theoretical: list[SymbolFeed]) -> list[str]:
    # the rules theoretical marks follow, once per vol index that priced some
    out = []
    for cur, vol in sorted(vols.items()):
        used = [f for f in theoretical if f.instrument.base == cur]
        if not used:
            continue
        ages = np.concatenate([vol.age_ms(f.ts_np + f.tf_ms) for f in used])
        oldest = float(ages.max()) / 3_600_000 if len(ages) else 0.0
        out.append(f"{cur} vol index ({vol.timeframe} candles): a bar's level is the close of "
                   f"the last vol candle closed by the bar's close (up to {oldest:.1f} hours "
                   "old here); the default smile is flat at that level for every strike and "
                   "expiry (SmileParams(): an assumption, not the exchange's surface)")
    return out


def _forward_notes(feed: SymbolFeed, under: SymbolFeed | None) -> list[str]:
    # what an option's forward is, when it is not its own on every bar
    if under is None:
        index = "its own index candles"
    elif under.has_index:
        index = f"the {under.symbol} index"
    else:
        index = f"the {under.symbol} {'mark' if under.has_mark else 'trade'} candles (no index)"
    if feed.forward_source == "index":
        return [f"{feed.symbol}: no underlying_price in its data; its forward (greeks, IV, "
                f"intrabar repricing, option margin) is {index}"]
    if feed.forward_fallback_bars:
        return [f"{feed.symbol}: underlying_price missing on {feed.forward_fallback_bars} of "
                f"{feed.n} bars; {index} stands in for its forward there"]
    return []


def _clip(fr: MarketFrames, start_ms: int | None, end_ms: int | None,
          symbol: str) -> MarketFrames:
    def cut(df: pd.DataFrame | None, kind: str, *, is_bar: bool) -> pd.DataFrame | None:
        if df is None:
            return None
        what = f"{kind} {symbol}"
        d = with_ts_column(df, what=what)
        ts = normalize_ts(d["ts"], what=what, naive_hint=NAIVE_HINT,
                          is_user_data=True).astype("int64")
        keep = pd.Series(True, index=d.index)
        if start_ms is not None:
            keep &= ts >= start_ms
        if end_ms is not None:
            keep &= ts < end_ms if is_bar else ts <= end_ms
        return d[keep.to_numpy()]

    return MarketFrames(ohlcv=cut(fr.ohlcv, "ohlcv", is_bar=True),  # type: ignore[arg-type]
                        timeframe=fr.timeframe, mark=cut(fr.mark, "mark", is_bar=True),
                        mark_timeframe=fr.mark_timeframe,
                        index=cut(fr.index, "index", is_bar=True),
                        funding=cut(fr.funding, "funding", is_bar=False),
                        option_marks=cut(fr.option_marks, "option_marks", is_bar=False))
