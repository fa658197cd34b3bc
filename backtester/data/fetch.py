"""Download market data with ccxt into the Parquet store (the only module that imports ccxt).

What each exchange gives through ccxt 4.5 (public endpoints, no keys):

=============  =====  ==========  =======  =======  ============  ======================
exchange       ohlcv  mark/index  premium  funding  option_marks  vol_index
=============  =====  ==========  =======  =======  ============  ======================
binanceusdm    yes    yes         yes      yes      no            no
binancecoinm   yes    yes         yes      yes      no            no
bybit          yes    yes         yes      yes      no            no
okx            yes    yes         no       yes      no            no
deribit        yes    no          no       yes      from candles  DVOL (implicit API)
=============  =====  ==========  =======  =======  ============  ======================

Deribit keeps **no historical mark price or mark IV series** for options: the public API has
``get_tradingview_chart_data`` (trade candles, prices in the base coin) and ``ticker`` (a
snapshot of now). ``option_marks`` is therefore built from option trade candles (close →
``mark_price``, IV and underlying left empty) and says so in the file's metadata
(``price_source``); a backtest that needs IV should derive it from the DVOL ``vol_index``.

Leverage tiers: Bybit and OKX publish them on public endpoints; Binance serves brackets only to
signed requests (keys from ``BACKTESTER_<EXCHANGE>_API_KEY`` / ``_SECRET``), otherwise pass a
tiers file (``--tiers-file``, ccxt's unified ``{symbol: [tier, ...]}`` layout); Deribit margins by
formula and has no tiers.

Pagination is our own loop (:mod:`backtester.data.paging`), never ccxt's ``paginate=True``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt
import pandas as pd

from backtester.data.paging import (
    OnRetry,
    Page,
    RetryPolicy,
    RetryWait,
    Row,
    SeriesReport,
    TransientError,
    download_series,
    wait_before_retry,
)
from backtester.data.schema import Kind
from backtester.data.snapshots import import_tiers_file, write_markets_snapshot
from backtester.data.store import Store
from backtester.errors import ConfigError, DataError, closest
from backtester.progress import Progress, ProgressTask
from backtester.progress import task as progress_task
from backtester.timeutil import MS_PER_HOUR, ms_to_iso, timeframe_ms

__all__ = [
    "SUPPORTED_EXCHANGES",
    "FetchReport",
    "ccxt_version",
    "fetch",
    "import_tiers_file",
    "make_exchange",
    "parse_exchange_options",
    "rewrite_base_url",
]

logger = logging.getLogger(__name__)

SUPPORTED_EXCHANGES = ("binanceusdm", "binancecoinm", "bybit", "okx", "deribit")
_PRICE_PARAM = {Kind.MARK: "mark", Kind.INDEX: "index", Kind.PREMIUM: "premiumIndex"}
_HAS_PRICE_KIND = {
    Kind.MARK: {"binanceusdm", "binancecoinm", "bybit", "okx"},
    Kind.INDEX: {"binanceusdm", "binancecoinm", "bybit", "okx"},
    Kind.PREMIUM: {"binanceusdm", "binancecoinm", "bybit"},
}
_PUBLIC_TIERS = {"bybit", "okx"}
_SIGNED_TIERS = {"binanceusdm", "binancecoinm"}
#: Rows per request (each exchange's documented maximum or a safe value below it).
_CANDLE_LIMIT = {"binanceusdm": 1000, "binancecoinm": 1000, "bybit": 1000, "okx": 100,
                 "deribit": 1000}
_FUNDING_LIMIT = {"binanceusdm": 1000, "binancecoinm": 1000, "bybit": 200, "okx": 100,
                  "deribit": 744}
_DVOL_RESOLUTION = {"1s": "1", "1m": "60", "1h": "3600", "12h": "43200", "1d": "1D"}
_DVOL_LIMIT = 1000


def ccxt_version() -> str:
    """Return the installed ccxt version."""
    return str(ccxt.__version__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchReport:
    """Outcome of :func:`fetch`: one :class:`SeriesReport` per series, plus warnings.

    ``warnings`` are one-line messages for the user (kinds an exchange cannot give, end of the
    available data, missing leverage tiers); the fetch still succeeded.
    """

    exchange: str
    ccxt_version: str
    series: tuple[SeriesReport, ...] = ()
    warnings: tuple[str, ...] = ()
    markets_path: Path | None = None
    tiers_path: Path | None = None
    quarantined: tuple[str, ...] = field(default=())


def parse_exchange_options(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings into a ccxt constructor config.

    Values are JSON when they parse (``true``, ``5``, ``{"a": 1}``), else strings; dotted keys
    nest (``options.defaultType=swap`` → ``{"options": {"defaultType": "swap"}}``).

    >>> parse_exchange_options(["rateLimit=100", "options.defaultType=swap"])
    {'rateLimit': 100, 'options': {'defaultType': 'swap'}}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            msg = f"--exchange-option {item!r}: expected key=value"
            raise ConfigError(msg)
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def rewrite_base_url(urls: Any, base_url: str) -> Any:
    """Replace scheme and host of every URL string in a (nested) ccxt ``urls['api']``.

    Paths are kept and appended to ``base_url`` (which may carry its own path prefix).

    >>> rewrite_base_url({"fapiPublic": "https://fapi.binance.com/fapi/v1"}, "http://127.0.0.1:8")
    {'fapiPublic': 'http://127.0.0.1:8/fapi/v1'}
    """
    base = urlsplit(base_url)
    if base.scheme not in ("http", "https") or not base.netloc:
        msg = f"--base-url {base_url!r}: expected http(s)://host[:port][/prefix]"
        raise ConfigError(msg)
    prefix = base.path.rstrip("/")
    if isinstance(urls, dict):
        return {k: rewrite_base_url(v, base_url) for k, v in urls.items()}
    if isinstance(urls, list):
        return [rewrite_base_url(v, base_url) for v in urls]
    if isinstance(urls, str) and urls.startswith(("http://", "https://")):
        old = urlsplit(urls)
        return urlunsplit((base.scheme, base.netloc, prefix + old.path, old.query, old.fragment))
    return urls


def _credentials(exchange_id: str) -> dict[str, str]:
    prefix = f"BACKTESTER_{exchange_id.upper()}_"
    creds = {}
    for env, key in (("API_KEY", "apiKey"), ("SECRET", "secret"), ("PASSWORD", "password")):
        value = os.environ.get(prefix + env)
        if value:
            creds[key] = value
    return creds


class _Redact(logging.Filter):
    """Replace secrets in ccxt's own log records (its debug log prints request headers)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(secret in text for secret in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, "***")
            record.msg, record.args = text, None
        return True


_REDACT = _Redact()


def _redact_in_ccxt_logs(secrets: Iterable[str]) -> None:
    _REDACT.secrets.update(s for s in secrets if s)
    for name in ("ccxt.base.exchange", "ccxt"):
        log = logging.getLogger(name)
        if _REDACT not in log.filters:
            log.addFilter(_REDACT)


def make_exchange(exchange_id: str, *, base_url: str | None = None,
                  exchange_options: dict[str, Any] | None = None) -> Any:
    """Create a ccxt exchange: rate limit on, keys from the environment, optional mirror URL.

    API keys are read only from ``BACKTESTER_<EXCHANGE>_API_KEY`` / ``_SECRET`` / ``_PASSWORD``
    and never logged.
    """
    if exchange_id not in ccxt.exchanges:
        msg = (f"unknown exchange {exchange_id!r}; supported: {', '.join(SUPPORTED_EXCHANGES)} "
               "(any ccxt exchange id with derivatives may work)")
        raise ConfigError(msg)
    # the last JSON answer tells a well-formed empty page from an empty or non-JSON body;
    # currencies are not needed (and Binance serves them only to signed requests)
    config: dict[str, Any] = {"enableRateLimit": True, "enableLastJsonResponse": True,
                              "has": {"fetchCurrencies": False}}
    creds = _credentials(exchange_id)
    config.update(creds)
    if creds:
        _redact_in_ccxt_logs([v for k, v in creds.items() if k != "uid"])
    for key, value in (exchange_options or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    exchange = getattr(ccxt, exchange_id)(config)
    if base_url:
        exchange.urls["api"] = rewrite_base_url(exchange.urls["api"], base_url)
    return exchange


def _retry_after(exchange: Any) -> float | None:
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:240] + ("…" if len(text) > 240 else "")


def _guard(exchange: Any, what: str, call: Callable[[], Any]) -> Any:
    """Run one ccxt call, mapping its errors: transient faults retryable, the rest final."""
    try:
        return call()
    except ccxt.OperationFailed as exc:  # rate limits, 5xx, timeouts, network, bad responses
        msg = f"{exchange.id} {what}: {type(exc).__name__}: {_short(exc)}"
        raise TransientError(msg, retry_after_s=_retry_after(exchange)) from exc
    except ccxt.BaseError as exc:  # ExchangeError family: bad symbol/params/auth; never retried
        msg = f"{exchange.id} {what}: {type(exc).__name__}: {_short(exc)}"
        raise DataError(msg) from exc


def _retrying(exchange: Any, what: str, call: Callable[[], Any], *, policy: RetryPolicy,
              sleep: Callable[[float], None], rng: random.Random,
              on_retry: OnRetry | None = None) -> Any:
    for n in range(policy.attempts):
        try:
            return _guard(exchange, what, call)
        except TransientError as exc:
            if n + 1 >= policy.attempts:
                msg = f"giving up after {policy.attempts} attempts: {exc}"
                raise DataError(msg) from exc
            wait_before_retry(n, exc, what=what, policy=policy, sleep=sleep, rng=rng,
                              on_retry=on_retry)
    return None


def _advance(step: ProgressTask, start_ms: int, label: str, cursor_ms: int) -> None:
    # the downloaded span so far, and the plain label again after a retry note
    step.update(cursor_ms - start_ms, description=label)


def _shown(step: ProgressTask, label: str) -> OnRetry:
    def show(wait: RetryWait) -> None:
        step.update(description=f"{label}: {wait.describe()}")
        logger.info("%s: %s", label, wait.describe())

    return show


# -- page functions -----------------------------------------------------------------------------
def _well_formed(exchange: Any) -> bool:
    answer = exchange.last_json_response
    if isinstance(answer, dict) and "jsonrpc" in answer:  # Deribit: the result must be there
        return isinstance(answer.get("result"), dict | list)
    return isinstance(answer, dict | list)


def _candle_page(exchange: Any, symbol: str, timeframe: str, kind: Kind,
                 limit: int) -> Callable[[int, int], Page]:
    tf = timeframe_ms(timeframe)
    params: dict[str, Any] = {}
    if kind in _PRICE_PARAM:
        params["price"] = _PRICE_PARAM[kind]

    def page(cursor: int, end: int) -> Page:
        window_end = min(end - 1, cursor + limit * tf - 1)
        exchange.last_json_response = None
        rows = _guard(exchange, f"{kind} {symbol} from {ms_to_iso(cursor)}",
                      lambda: exchange.fetch_ohlcv(symbol, timeframe, cursor, limit,
                                                   {**params, "until": window_end}))
        return Page(list(rows or []), window_end, _well_formed(exchange))

    return page


def _option_marks_page(exchange: Any, symbol: str, timeframe: str,
                       limit: int) -> Callable[[int, int], Page]:
    candles = _candle_page(exchange, symbol, timeframe, Kind.OHLCV, limit)

    def page(cursor: int, end: int) -> Page:
        got = candles(cursor, end)
        return Page([[r[0], r[4]] for r in got.rows], got.window_end_ms, got.is_well_formed)

    return page


def _funding_page(exchange: Any, symbol: str, limit: int) -> Callable[[int, int], Page]:
    # Bybit and OKX answer the *newest* rows of a range first, so a request must never span more
    # rows than it may return: windows of `limit` hours (no venue settles funding more often).
    def page(cursor: int, end: int) -> Page:
        window_end = min(end - 1, cursor + limit * MS_PER_HOUR - 1)
        params: dict[str, Any] = {"until": window_end}
        if exchange.id == "okx":  # ccxt's okx ignores `until`: OKX's `after` is exclusive
            params = {"after": str(window_end + 1)}
        exchange.last_json_response = None
        rows = _guard(exchange, f"funding {symbol} from {ms_to_iso(cursor)}",
                      lambda: exchange.fetch_funding_rate_history(symbol, cursor, limit, params))
        return Page([[r["timestamp"], r["fundingRate"]] for r in rows or []
                     if r.get("timestamp") is not None], window_end, _well_formed(exchange))

    return page


def _vol_index_page(exchange: Any, currency: str, timeframe: str,
                    limit: int) -> Callable[[int, int], Page]:
    tf = timeframe_ms(timeframe)
    resolution = _DVOL_RESOLUTION[timeframe]

    def page(cursor: int, end: int) -> Page:
        window_end = min(end - 1, cursor + limit * tf - 1)
        request = {"currency": currency, "start_timestamp": cursor,
                   "end_timestamp": window_end, "resolution": resolution}
        exchange.last_json_response = None
        resp = _guard(exchange, f"vol_index {currency} from {ms_to_iso(cursor)}",
                      lambda: exchange.public_get_get_volatility_index_data(request))
        result = resp.get("result") if isinstance(resp, dict) else None
        data = result.get("data") if isinstance(result, dict) else None
        rows = sorted(([int(d[0]), *d[1:5]] for d in data or [] if len(d) >= 5),
                      key=lambda r: r[0])
        return Page(rows, window_end, isinstance(data, list))

    return page


def _frame_maker(kind: Kind) -> Callable[[list[Row]], pd.DataFrame]:
    if kind is Kind.FUNDING:
        cols = ["ts", "rate"]
    elif kind is Kind.OPTION_MARKS:
        cols = ["ts", "mark_price"]
    elif kind is Kind.VOL_INDEX:
        cols = ["ts", "open", "high", "low", "close"]
    else:
        cols = ["ts", "open", "high", "low", "close", "volume"]

    def to_frame(rows: list[Row]) -> pd.DataFrame:
        frame = pd.DataFrame([list(r[:len(cols)]) for r in rows], columns=cols)
        frame["ts"] = frame["ts"].astype("int64")
        for c in cols[1:]:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        return frame

    return to_frame


# -- markets and tiers --------------------------------------------------------------------------
def _fetch_tiers(exchange: Any, symbols: Sequence[str], store: Store, now_ms: int, *,
                 policy: RetryPolicy, sleep: Callable[[float], None],
                 rng: random.Random, on_retry: OnRetry | None = None
                 ) -> tuple[Path | None, list[str]]:
    wanted = [s for s in symbols if s in exchange.markets
              and exchange.markets[s].get("contract") and not exchange.markets[s].get("option")]
    if not wanted or exchange.id == "deribit":
        return None, []
    has_keys = bool(getattr(exchange, "apiKey", None))
    if exchange.id in _SIGNED_TIERS and not has_keys:
        if store.has_json(exchange.id, "leverage_tiers"):
            return None, []
        env = f"BACKTESTER_{exchange.id.upper()}_API_KEY/_SECRET"
        return None, [f"{exchange.id} serves leverage brackets only to signed requests: set {env} "
                      "or pass --tiers-file (e.g. a saved ccxt fetch_leverage_tiers JSON)"]
    if exchange.id not in _PUBLIC_TIERS | _SIGNED_TIERS and not exchange.has.get(
            "fetchLeverageTiers"):
        return None, [f"{exchange.id}: no leverage-tier endpoint known; pass --tiers-file"]
    tiers: dict[str, Any] = {}
    try:
        if exchange.has.get("fetchLeverageTiers") is True:
            got = _retrying(exchange, "leverage tiers",
                            partial(exchange.fetch_leverage_tiers, wanted),
                            policy=policy, sleep=sleep, rng=rng, on_retry=on_retry)
            tiers.update({s: t for s, t in (got or {}).items() if s in wanted})
        else:
            for s in wanted:
                tiers[s] = _retrying(exchange, f"leverage tiers {s}",
                                     partial(exchange.fetch_market_leverage_tiers, s),
                                     policy=policy, sleep=sleep, rng=rng, on_retry=on_retry)
    except DataError as exc:
        return None, [f"leverage tiers not fetched: {exc}; pass --tiers-file"]
    old: dict[str, Any] = {}
    if store.has_json(exchange.id, "leverage_tiers"):
        old = dict(store.read_json(exchange.id, "leverage_tiers").get("tiers", {}))
    payload = {"exchange": exchange.id, "source": f"ccxt {ccxt_version()}",
               "fetched_at_ms": now_ms, "fetched_at": ms_to_iso(now_ms),
               "tiers": {**old, **tiers}}
    return store.write_json(exchange.id, "leverage_tiers", payload), []


# -- the fetch ----------------------------------------------------------------------------------
def _plan(exchange: Any, symbols: Sequence[str], kinds: Sequence[Kind]
          ) -> tuple[list[tuple[Kind, str]], list[str]]:
    plan: list[tuple[Kind, str]] = []
    notes: list[str] = []
    currencies: list[str] = []
    for symbol in symbols:
        market = exchange.markets.get(symbol)
        if market is None and "/" not in symbol and Kind.VOL_INDEX in kinds:
            currencies.append(symbol)  # a bare currency code names a volatility index
            others = [k.value for k in kinds if k is not Kind.VOL_INDEX]
            if others:
                notes.append(f"{symbol} is a currency: only vol_index fetched "
                             f"({', '.join(others)} skipped)")
            continue
        if market is None:
            msg = (f"unknown symbol {symbol!r} on {exchange.id}; "
                   f"{closest(symbol, exchange.symbols, what='markets')}")
            raise ConfigError(msg)
        is_option = bool(market.get("option"))
        for kind in kinds:
            if kind is Kind.VOL_INDEX:
                if market.get("base") not in currencies:
                    currencies.append(str(market.get("base")))
            elif kind in _HAS_PRICE_KIND and (exchange.id not in _HAS_PRICE_KIND[kind]
                                              or is_option):
                notes.append(f"{exchange.id} has no {kind} candles for {symbol}: skipped")
            elif kind is Kind.FUNDING and not market.get("swap"):
                notes.append(f"{symbol} is not a perpetual: no funding, skipped")
            elif kind is Kind.OPTION_MARKS and (exchange.id != "deribit" or not is_option):
                notes.append(f"option_marks are fetched for Deribit options only: {symbol} skipped")
            else:
                plan.append((kind, symbol))
    if currencies:
        if exchange.id != "deribit":
            notes.append(f"vol_index (DVOL) is a Deribit series: not on {exchange.id}, skipped")
        else:
            plan.extend((Kind.VOL_INDEX, c) for c in currencies)
    return plan, notes


def fetch(exchange_id: str, symbols: Sequence[str], *, kinds: Sequence[Kind | str],
          timeframe: str, since_ms: int, until_ms: int | None = None, store: Store,
          base_url: str | None = None, exchange_options: dict[str, Any] | None = None,
          tiers_file: Path | str | None = None, progress: Progress | None = None,
          clock: Callable[[], int] | None = None,
          sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
          policy: RetryPolicy | None = None, page_limit: int | None = None,
          on_wait: Callable[[str], None] | None = None) -> FetchReport:
    """Download ``kinds`` of ``symbols`` from ``exchange_id`` into ``store``, resuming.

    Parameters
    ----------
    kinds
        Any of ``ohlcv``, ``mark``, ``index``, ``premium``, ``funding``, ``option_marks``,
        ``vol_index``; kinds an exchange cannot give are skipped with a warning.
    timeframe
        ccxt timeframe of the candles (``1m``, ``1h``, ...). Funding has no timeframe.
    since_ms, until_ms
        UTC range in int ms, ``until_ms`` exclusive (default: now, complete candles only).
    base_url
        Mirror or proxy: replaces scheme and host of every ccxt API URL, keeping the paths.
    exchange_options
        Passed to the ccxt constructor (see :func:`parse_exchange_options`).
    tiers_file
        Leverage tiers to import when the exchange has no public endpoint.
    progress
        Where to report each series' progress and every retry wait (attempt count, wait,
        fault); see :mod:`backtester.progress`. None shows nothing; the command line shows
        rich bars on a terminal.
    clock, sleep, rng, policy, page_limit
        Injected for tests: ``clock()`` → now in int ms; backoff; rows per request.
    on_wait
        Called with a message when another process is writing a series this fetch wants (the
        fetch then waits for it and resumes from what it stored).

    Returns
    -------
    FetchReport
        Per-series results and warnings (end of data, skipped kinds, missing tiers).

    Raises
    ------
    ConfigError
        Unknown exchange, symbol, kind or timeframe.
    DataError
        An exchange error (never retried) or retries exhausted (rerun to resume).
    """
    now_ms = clock() if clock is not None else int(time.time() * 1000)
    rng = rng or random.Random()
    policy = policy or RetryPolicy()
    try:
        kind_list = [Kind(k) for k in kinds]
        timeframe_ms(timeframe)
    except ValueError as exc:
        msg = f"{exc} (kinds: {', '.join(k.value for k in Kind)})"
        raise ConfigError(msg) from exc
    if Kind.VOL_INDEX in kind_list and timeframe not in _DVOL_RESOLUTION:
        msg = f"vol_index timeframe {timeframe!r}: Deribit DVOL has {', '.join(_DVOL_RESOLUTION)}"
        raise ConfigError(msg)
    end_ms = now_ms if until_ms is None else min(until_ms, now_ms)
    if since_ms >= end_ms:
        msg = f"--since {ms_to_iso(since_ms)} is not before --until/now {ms_to_iso(end_ms)}"
        raise ConfigError(msg)
    quarantined = [q.message for q in store.scan(exchange_id)]
    exchange = make_exchange(exchange_id, base_url=base_url, exchange_options=exchange_options)
    with progress_task(progress, f"{exchange_id}: markets") as step:
        _retrying(exchange, "load_markets", exchange.load_markets, policy=policy, sleep=sleep,
                  rng=rng, on_retry=_shown(step, f"{exchange_id}: markets"))
    plan, warnings = _plan(exchange, list(symbols), kind_list)
    warnings = quarantined + warnings
    markets_path = write_markets_snapshot(store, exchange_id, exchange.markets,
                                          precision_mode=exchange.precisionMode,
                                          source=f"ccxt {ccxt_version()}", now_ms=now_ms)
    if tiers_file is not None:
        tiers_path: Path | None = import_tiers_file(tiers_file, store=store, exchange=exchange_id,
                                                    now_ms=now_ms)
    else:
        with progress_task(progress, f"{exchange_id}: leverage tiers") as step:
            tiers_path, notes = _fetch_tiers(exchange, symbols, store, now_ms, policy=policy,
                                             sleep=sleep, rng=rng,
                                             on_retry=_shown(step, f"{exchange_id}: leverage "
                                                                   "tiers"))
        warnings += notes
    meta_base = {"source": f"ccxt {ccxt_version()} {exchange_id}", "ccxt_version": ccxt_version(),
                 "fetched_at": ms_to_iso(now_ms), "fetched_at_ms": now_ms}
    if base_url:
        meta_base["base_url"] = urlunsplit(urlsplit(base_url)._replace(
            netloc=urlsplit(base_url).hostname or ""))
    reports: list[SeriesReport] = []
    with progress_task(progress, f"{exchange_id}: {len(plan)} series",
                       total=len(plan)) as overall:
        for kind, symbol in plan:
            market = exchange.markets.get(symbol, {})
            start = since_ms
            created = market.get("created")
            if isinstance(created, int | float) and created > start:
                start = int(created)
            tf = None if kind is Kind.FUNDING else timeframe
            series_end = end_ms
            if tf is not None:  # complete candles only: open + timeframe <= now
                series_end = min(end_ms, now_ms - timeframe_ms(tf) + 1)
            meta = dict(meta_base)
            if kind is Kind.FUNDING:
                page = _funding_page(exchange, symbol, page_limit or _FUNDING_LIMIT.get(
                    exchange_id, 100))
            elif kind is Kind.VOL_INDEX:
                page = _vol_index_page(exchange, symbol, timeframe, page_limit or _DVOL_LIMIT)
                meta["price_source"] = "Deribit DVOL (public/get_volatility_index_data)"
            elif kind is Kind.OPTION_MARKS:
                page = _option_marks_page(exchange, symbol, timeframe, page_limit or _CANDLE_LIMIT[
                    "deribit"])
                meta["price_source"] = ("close of option trade candles; Deribit keeps no "
                                        "historical mark/IV series")
            else:
                page = _candle_page(exchange, symbol, timeframe, kind,
                                    page_limit or _CANDLE_LIMIT.get(exchange_id, 500))
            label = f"{kind} {symbol}" + (f" {tf}" if tf else "")
            with progress_task(progress, label, total=max(series_end - start, 1)) as step:
                report = download_series(page, store=store, exchange=exchange_id, kind=kind,
                                         symbol=symbol, timeframe=tf, since_ms=start,
                                         end_ms=series_end, to_frame=_frame_maker(kind),
                                         metadata=meta, policy=policy, sleep=sleep, rng=rng,
                                         on_progress=partial(_advance, step, start, label),
                                         on_retry=_shown(step, label),
                                         on_wait=on_wait)
            if report.end_of_data_ms is not None:
                note = (f"{report.label}: no data after {ms_to_iso(report.end_of_data_ms)} "
                        f"(3 empty answers); gap to {ms_to_iso(series_end)} recorded")
                logger.warning(note)
                warnings.append(note)
            reports.append(report)
            overall.update(len(reports))
    return FetchReport(exchange=exchange_id, ccxt_version=ccxt_version(), series=tuple(reports),
                       warnings=tuple(warnings), markets_path=markets_path, tiers_path=tiers_path,
                       quarantined=tuple(quarantined))
