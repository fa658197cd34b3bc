"""The resumable forward download loop, independent of ccxt.

:mod:`backtester.data.fetch` turns each ccxt call into a *page function*
``page(cursor_ms, end_ms) -> rows`` that raises :class:`TransientError` for faults worth retrying
(rate limits, 5xx, timeouts) and :class:`~backtester.errors.DataError` for the rest. This module
owns the policy (DESIGN §5):

* start at ``max(since, last stored ts + 1 ms)`` (resume);
* retry transient faults with exponential backoff and jitter (``Retry-After`` honoured);
* an empty or unreadable page is re-requested; after 3 empty answers in a row at the same point,
  that point is the end of the available data: it is recorded in the file's metadata with the gap
  up to ``end``, and the caller warns. Exception: an endpoint asked for a time *window* that
  answers a well-formed "nothing here" 3 times for a window ending before ``end`` has a gap
  there (or the instrument was not listed yet): the loop moves to the next window, and the
  missing bars show in the gap report;
* every page is appended to the store atomically, so a kill between pages leaves readable files
  and a rerun continues to the same content as an uninterrupted download;
* the whole download holds the series' lock (:meth:`Store.series_lock`): a second process
  fetching the same series waits, then resumes from what the first one stored;
* bars missing *between* stored candles inside the asked range are asked for again, unless an
  earlier download already walked through them and the exchange had nothing there: those holes
  are recorded in the file's metadata (``exchange_gaps``, ``[start_ms, end_ms)`` pairs) once a
  download finishes, so a hole left by anything else (an interrupted or older writer) is filled
  by the next fetch instead of passing for an exchange outage.
* every wait is announced before it starts (``on_retry`` gets a :class:`RetryWait`: what, the
  attempt count, the wait and the fault), so a caller can show it instead of going silent.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backtester.data.schema import CANDLE_KINDS, Kind
from backtester.data.store import Store
from backtester.errors import DataError
from backtester.timeutil import MS_PER_HOUR, ms_to_iso, timeframe_ms

__all__ = [
    "EMPTY_PAGES_AT_END",
    "Page",
    "RetryPolicy",
    "RetryWait",
    "SeriesReport",
    "TransientError",
    "download_series",
]

#: Empty answers in a row at the same cursor that mean "no more data".
EMPTY_PAGES_AT_END = 3

Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Page:
    """One answer: raw ``rows`` (first element the int ms stamp).

    ``window_end_ms`` is the last ms the request covered when the endpoint answers a time window
    (None when it follows a cursor to the end); ``is_well_formed`` is False when the body was
    empty or not the exchange's JSON (such a page is re-requested, never taken as "no data").
    """

    rows: Sequence[Row]
    window_end_ms: int | None = None
    is_well_formed: bool = True


PageFn = Callable[[int, int], Page]


class TransientError(Exception):
    """A fault worth retrying (rate limit, 5xx, timeout); ``retry_after_s`` from the server."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Backoff for transient faults and empty pages.

    The n-th retry (n = 0, 1, ...) waits ``min(max_delay_s, base_delay_s * 2**n)`` plus a uniform
    jitter of up to the same amount (or the server's ``Retry-After`` when it is longer);
    ``attempts`` tries in all before giving up with a resumable error.
    """

    attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, n: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Return the wait in seconds before retry ``n``."""
        wait = min(self.max_delay_s, self.base_delay_s * 2**n)
        wait += rng.uniform(0.0, wait)
        return max(wait, retry_after_s or 0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryWait:
    """A wait about to start: attempt ``attempt`` of ``attempts`` at ``what`` failed with
    ``reason`` (or answered nothing), and the next try comes after ``wait_s`` seconds."""

    what: str
    attempt: int
    attempts: int
    wait_s: float
    reason: str

    def describe(self) -> str:
        """One line, the reason last: ``attempt 2/6 failed, retrying in 4.1 s: 429 ...``."""
        return (f"attempt {self.attempt}/{self.attempts} failed, retrying in "
                f"{self.wait_s:.1f} s: {self.reason}")


OnRetry = Callable[[RetryWait], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesReport:
    """What one download of one series did.

    ``rows_added`` new rows in ``pages`` non-empty pages; the stored range after it
    (``first_ms``/``last_ms``); ``end_of_data_ms`` when the exchange ran out of data before
    ``end_ms`` (3 empty answers), with the gap ``[end_of_data_ms, end_ms)`` recorded.
    """

    exchange: str
    kind: Kind
    symbol: str
    timeframe: str | None
    rows_added: int
    pages: int
    retries: int
    first_ms: int | None
    last_ms: int | None
    end_ms: int
    end_of_data_ms: int | None = None

    @property
    def label(self) -> str:
        """Short name, e.g. ``ohlcv XRP/USDT:USDT 5m``."""
        return f"{self.kind} {self.symbol}" + (f" {self.timeframe}" if self.timeframe else "")


def download_series(page: PageFn, *, store: Store, exchange: str, kind: Kind, symbol: str,
                    timeframe: str | None, since_ms: int, end_ms: int,
                    to_frame: Callable[[list[Row]], pd.DataFrame],
                    metadata: dict[str, Any], policy: RetryPolicy | None = None,
                    sleep: Callable[[float], None], rng: random.Random,
                    on_progress: Callable[[int], None] | None = None,
                    on_wait: Callable[[str], None] | None = None,
                    on_retry: OnRetry | None = None) -> SeriesReport:
    """Download ``[since_ms, end_ms)`` of one series page by page into ``store``.

    With data already stored, only what is missing is asked for: the stretch before the first
    stored row when ``since_ms`` is earlier (backfill), then forward from the last stored row.

    Parameters
    ----------
    page
        ``page(cursor_ms, end_ms)`` returns a :class:`Page` of raw rows whose first element is
        the int ms stamp.
    to_frame
        Turns raw rows into a frame the store validates (``ts`` in int ms + the kind's columns).
    metadata
        Merged into the file's footer on every append (source, ccxt version, download time).
    sleep, rng
        Injected so tests run without waiting; ``rng`` only draws the jitter.
    on_progress
        Called with the cursor (int ms) after each page.
    on_wait
        Called with a message when another process holds the series (this one then waits).
    on_retry
        Called before each wait (a transient fault or an empty answer asked again).
    """
    with store.series_lock(exchange, kind, symbol, timeframe, on_wait=on_wait):
        return _download(page, store=store, exchange=exchange, kind=kind, symbol=symbol,
                         timeframe=timeframe, since_ms=since_ms, end_ms=end_ms,
                         to_frame=to_frame, metadata=metadata, policy=policy, sleep=sleep,
                         rng=rng, on_progress=on_progress, on_retry=on_retry)


def _download(page: PageFn, *, store: Store, exchange: str, kind: Kind, symbol: str,
              timeframe: str | None, since_ms: int, end_ms: int,
              to_frame: Callable[[list[Row]], pd.DataFrame], metadata: dict[str, Any],
              policy: RetryPolicy | None, sleep: Callable[[float], None], rng: random.Random,
              on_progress: Callable[[int], None] | None,
              on_retry: OnRetry | None) -> SeriesReport:
    walk = _Walk(page=page, store=store, exchange=exchange, kind=kind, symbol=symbol,
                 timeframe=timeframe, to_frame=to_frame, policy=policy or RetryPolicy(),
                 sleep=sleep, rng=rng, on_progress=on_progress, on_retry=on_retry,
                 # new rows disprove an "end of data" recorded by an earlier fetch
                 metadata={**metadata, "end_of_data": None})
    first_stored, last_stored, stored_step = _stored_range(store, exchange, kind, symbol,
                                                           timeframe)
    if kind is Kind.FUNDING and stored_step:
        walk.step = stored_step
    if first_stored is not None and since_ms < first_stored - _resolution(kind, walk.step) + 1:
        walk.run(since_ms, min(first_stored, end_ms), last=None)  # backfill; its end is no news
    if kind in CANDLE_KINDS and first_stored is not None:
        known = _exchange_gaps(store, exchange, kind, symbol, timeframe)
        for a, b in _holes(store, exchange, kind, symbol, timeframe, walk.step, since_ms,
                           end_ms, known):
            walk.run(a, b, last=None)  # a hole inside the stored range: ask again
    start = since_ms if last_stored is None else max(since_ms, last_stored + 1)
    end_of_data = walk.run(start, end_ms, last=last_stored)
    if end_of_data is not None and store.exists(exchange, kind, symbol, timeframe):
        gap = {"end_of_data_ms": end_of_data, "end_of_data": ms_to_iso(end_of_data),
               "missing_until": ms_to_iso(end_ms),
               "note": f"no data from {ms_to_iso(end_of_data)} to {ms_to_iso(end_ms)} "
                       f"({EMPTY_PAGES_AT_END} empty answers in a row)"}
        store.update_metadata(exchange, kind, symbol, timeframe, {"end_of_data": gap})
    if kind in CANDLE_KINDS and store.exists(exchange, kind, symbol, timeframe):
        # every hole left in the asked range was just walked (or known): the exchange has none
        known = _exchange_gaps(store, exchange, kind, symbol, timeframe)
        left = _holes(store, exchange, kind, symbol, timeframe, walk.step, since_ms, end_ms,
                      known)
        if left:
            merged = _merge([*known, *left])
            store.update_metadata(exchange, kind, symbol, timeframe,
                                  {"exchange_gaps": [list(g) for g in merged]})
    first = last = None
    if store.exists(exchange, kind, symbol, timeframe):
        meta = store.metadata(exchange, kind, symbol, timeframe)
        first, last = meta.get("first_ms"), meta.get("last_ms")
    return SeriesReport(exchange=exchange, kind=kind, symbol=symbol, timeframe=timeframe,
                        rows_added=walk.rows_added, pages=walk.pages, retries=walk.retries,
                        first_ms=first, last_ms=last, end_ms=end_ms, end_of_data_ms=end_of_data)


def _exchange_gaps(store: Store, exchange: str, kind: Kind, symbol: str,
                   timeframe: str | None) -> list[tuple[int, int]]:
    raw = store.metadata(exchange, kind, symbol, timeframe).get("exchange_gaps") or []
    return [(int(a), int(b)) for a, b in raw]


def _holes(store: Store, exchange: str, kind: Kind, symbol: str, timeframe: str | None,
           step: int, since_ms: int, end_ms: int,
           known: list[tuple[int, int]]) -> list[tuple[int, int]]:
    # [first missing bar, next stored bar) between stored candles, clipped to [since, end),
    # minus the stretches the exchange already answered "nothing" for
    if not store.exists(exchange, kind, symbol, timeframe):
        return []
    frame = store.read(exchange, kind, symbol, timeframe)
    ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    out: list[tuple[int, int]] = []
    for i in np.nonzero(np.diff(ts) > step)[0].tolist():
        a, b = max(int(ts[i]) + step, since_ms), min(int(ts[i + 1]), end_ms)
        if a < b and not any(ka <= a and b <= kb for ka, kb in known):
            out.append((a, b))
    return out


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _resolution(kind: Kind, step: int) -> int:
    # stamps are floored to this: the timeframe for candles, the second otherwise
    return step if kind in CANDLE_KINDS else 1000


@dataclass(kw_only=True)
class _Walk:
    """The page loop over one range, with counters shared by the backfill and forward runs."""

    page: PageFn
    store: Store
    exchange: str
    kind: Kind
    symbol: str
    timeframe: str | None
    to_frame: Callable[[list[Row]], pd.DataFrame]
    metadata: dict[str, Any]
    policy: RetryPolicy
    sleep: Callable[[float], None]
    rng: random.Random
    on_progress: Callable[[int], None] | None
    on_retry: OnRetry | None = None
    step: int = MS_PER_HOUR
    rows_added: int = 0
    pages: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        if self.kind in CANDLE_KINDS and self.timeframe:
            self.step = timeframe_ms(self.timeframe)

    def run(self, cursor: int, end_ms: int, *, last: int | None) -> int | None:
        """Fetch ``[cursor, end_ms)``; return where the data ended early, if it did."""
        empties = 0
        empty_since: int | None = None  # start of a run of well-formed empty windows
        while cursor < end_ms and not _nothing_left(self.kind, last, self.step, end_ms):
            answer, n_retries = _call(self.page, cursor, end_ms, policy=self.policy,
                                      sleep=self.sleep, rng=self.rng, on_retry=self.on_retry)
            self.retries += n_retries
            rows = answer.rows
            fresh = [r for r in rows if cursor <= int(r[0]) < end_ms]
            if not fresh:
                if rows and all(int(r[0]) >= end_ms for r in rows):
                    return None  # the exchange has data, just none left before end_ms
                empties += 1
                if empties < EMPTY_PAGES_AT_END:  # never trust one empty answer: ask again
                    wait = self.policy.delay(empties - 1, self.rng)
                    if self.on_retry is not None:
                        self.on_retry(RetryWait(what=f"page at {ms_to_iso(cursor)}",
                                                attempt=empties, attempts=EMPTY_PAGES_AT_END,
                                                wait_s=wait, reason="empty answer"))
                    self.sleep(wait)
                    continue
                window_end = answer.window_end_ms
                if answer.is_well_formed and window_end is not None and window_end + 1 < end_ms:
                    # "nothing in this window", confirmed, before the end: a gap, move on
                    empty_since = cursor if empty_since is None else empty_since
                    cursor, empties = max(cursor, window_end + 1), 0
                    continue
                return cursor if empty_since is None else empty_since
            empties, empty_since = 0, None
            self.pages += 1
            self.store.append(self.exchange, self.kind, self.symbol, self.timeframe,
                              self.to_frame(fresh), metadata=self.metadata)
            self.rows_added += len(fresh)
            newest = max(int(r[0]) for r in fresh)
            if self.kind is Kind.FUNDING and len(fresh) >= 2:
                stamps = sorted(int(r[0]) // 1000 * 1000 for r in fresh)
                self.step = int(statistics.median(
                    b - a for a, b in itertools.pairwise(stamps))) or self.step
            last = newest - newest % _resolution(self.kind, self.step)
            cursor = newest + 1
            if self.on_progress is not None:
                self.on_progress(cursor)
        return empty_since  # only empty windows after the last data, up to the end


def _stored_range(store: Store, exchange: str, kind: Kind, symbol: str,
                  timeframe: str | None) -> tuple[int | None, int | None, int | None]:
    # (first, last stored stamp, median spacing of the stored stamps) in int ms
    if not store.exists(exchange, kind, symbol, timeframe):
        return None, None, None
    frame = store.read(exchange, kind, symbol, timeframe)
    if frame.empty:
        return None, None, None
    ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    step = int(statistics.median((ts[1:] - ts[:-1]).tolist())) if len(ts) >= 2 else None
    return int(ts[0]), int(ts[-1]), step


def _nothing_left(kind: Kind, last_stored: int | None, step: int, end_ms: int) -> bool:
    # The next stamp we can expect is one step after the last stored one (candles: the next bar
    # open; funding: the observed interval, floored to the second). Asking for it is pointless
    # when it falls at or after the end: this keeps "up to now" fetches from ending in 3 empties.
    if last_stored is None:
        return False
    return last_stored + step - (0 if kind in CANDLE_KINDS else 1000) >= end_ms


def wait_before_retry(n: int, exc: TransientError, *, what: str, policy: RetryPolicy,
                      sleep: Callable[[float], None], rng: random.Random,
                      on_retry: OnRetry | None) -> None:
    """Announce (``on_retry``) and sleep the backoff after failed attempt ``n`` (0-based)."""
    wait = policy.delay(n, rng, exc.retry_after_s)
    if on_retry is not None:
        on_retry(RetryWait(what=what, attempt=n + 1, attempts=policy.attempts, wait_s=wait,
                           reason=str(exc)))
    sleep(wait)


def _call(page: PageFn, cursor: int, end_ms: int, *, policy: RetryPolicy,
          sleep: Callable[[float], None], rng: random.Random,
          on_retry: OnRetry | None = None) -> tuple[Page, int]:
    for n in range(policy.attempts):
        try:
            return page(cursor, end_ms), n
        except TransientError as exc:
            if n + 1 >= policy.attempts:
                msg = (f"giving up at {ms_to_iso(cursor)} after {policy.attempts} attempts: {exc}; "
                       "run the same command again to resume")
                raise DataError(msg) from exc
            wait_before_retry(n, exc, what=f"page at {ms_to_iso(cursor)}", policy=policy,
                              sleep=sleep, rng=rng, on_retry=on_retry)
    msg = "retry policy needs at least one attempt"
    raise DataError(msg)
