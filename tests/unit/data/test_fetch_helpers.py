"""Pure pieces of the downloader: URL rewriting, options, backoff, the paging loop."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from backtester.data.fetch import make_exchange, parse_exchange_options, rewrite_base_url
from backtester.data.paging import Page, RetryPolicy, TransientError, download_series
from backtester.data.schema import Kind
from backtester.data.store import Store
from backtester.errors import ConfigError, DataError

H = 3_600_000


def test_base_url_keeps_paths_and_replaces_every_host() -> None:
    ex = make_exchange("binanceusdm", base_url="http://127.0.0.1:9/mirror/")

    api = ex.urls["api"]
    assert api["fapiPublic"] == "http://127.0.0.1:9/mirror/fapi/v1"
    assert api["dapiPublic"] == "http://127.0.0.1:9/mirror/dapi/v1"
    assert all(v.startswith("http://127.0.0.1:9/mirror/") for v in api.values())


def test_base_url_nested_and_templated() -> None:
    urls = {"rest": {"public": "https://api.{hostname}/v5"}, "n": 3}
    assert rewrite_base_url(urls, "https://proxy.example") == {
        "rest": {"public": "https://proxy.example/v5"}, "n": 3}
    with pytest.raises(ConfigError, match=r"--base-url"):
        rewrite_base_url(urls, "proxy.example")


def test_exchange_options_and_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKTESTER_BYBIT_API_KEY", "k-123")
    monkeypatch.setenv("BACKTESTER_BYBIT_SECRET", "s-456")
    opts = parse_exchange_options(["timeout=5000", "options.defaultType=swap", "x=a=b"])

    ex = make_exchange("bybit", exchange_options=opts)

    assert opts == {"timeout": 5000, "options": {"defaultType": "swap"}, "x": "a=b"}
    assert ex.timeout == 5000
    assert ex.options["defaultType"] == "swap"
    assert ex.apiKey == "k-123"
    assert ex.secret == "s-456"
    with pytest.raises(ConfigError, match=r"key=value"):
        parse_exchange_options(["novalue"])
    with pytest.raises(ConfigError, match=r"unknown exchange 'nope'"):
        make_exchange("nope")


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=5, base_delay_s=1.0, max_delay_s=8.0)
    rng = random.Random(1)

    waits = [policy.delay(n, rng) for n in range(6)]

    for n, w in enumerate(waits):
        base = min(8.0, 2.0**n)
        assert base <= w <= 2 * base
    assert policy.delay(0, rng, retry_after_s=30.0) == 30.0


def _frame(rows: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])


def _run(page, store: Store, end: int = 10 * H, attempts: int = 3):  # type: ignore[no-untyped-def]
    return download_series(page, store=store, exchange="x", kind=Kind.OHLCV,
                           symbol="BTC/USDT:USDT", timeframe="1h", since_ms=0, end_ms=end,
                           to_frame=_frame, metadata={}, sleep=lambda s: None,
                           rng=random.Random(0),
                           policy=RetryPolicy(attempts=attempts, base_delay_s=0.0))


def _bars(a: int, b: int) -> list[list[float]]:
    return [[i * H, 1.0, 2.0, 0.5, 1.5, 3.0] for i in range(a, b)]


def test_cursor_paging_resumes_and_stops(tmp_path: Path) -> None:
    store = Store(tmp_path)
    asked: list[int] = []

    def page(cursor: int, end: int) -> Page:
        asked.append(cursor)
        first = -(-cursor // H)
        return Page(_bars(first, min(first + 3, 10)))

    report = _run(page, store)

    assert report.rows_added == 10
    assert report.pages == 4
    assert asked == [0, 2 * H + 1, 5 * H + 1, 8 * H + 1]  # last stored + 1 ms
    assert report.end_of_data_ms is None  # bar 9 is the last one before end: nothing asked


def test_garbage_then_data_is_not_the_end_but_three_empties_are(tmp_path: Path) -> None:
    answers = [Page([], None, False), Page(_bars(0, 4)), Page([]), Page([]), Page([])]

    report = _run(lambda c, e: answers.pop(0), Store(tmp_path))

    assert report.rows_added == 4
    assert report.end_of_data_ms == 3 * H + 1
    assert answers == []


def test_transient_errors_exhausted_give_a_resumable_error(tmp_path: Path) -> None:
    def page(cursor: int, end: int) -> Page:
        raise TransientError("binanceusdm: RequestTimeout")

    with pytest.raises(DataError, match=r"giving up .* after 3 attempts.*run the same command"):
        _run(page, Store(tmp_path))


def _exchange_with(bars: list[list[float]], asked: list[int]):  # type: ignore[no-untyped-def]
    # Binance-like: the first 3 bars at or after the cursor
    def page(cursor: int, end: int) -> Page:
        asked.append(cursor)
        return Page([b for b in bars if b[0] >= cursor][:3])

    return page


def test_a_stored_hole_the_exchange_has_data_for_is_filled_15(tmp_path: Path) -> None:
    store = Store(tmp_path)
    # a hole at bars 4-5 left by something else (an older or interrupted writer)
    store.write("x", Kind.OHLCV, "BTC/USDT:USDT", "1h", _frame(_bars(0, 4) + _bars(6, 10)))
    asked: list[int] = []

    report = _run(_exchange_with(_bars(0, 10), asked), store)

    assert report.rows_added == 2
    assert asked == [4 * H]  # only the hole is asked for
    assert len(store.read("x", Kind.OHLCV, "BTC/USDT:USDT", "1h")) == 10
    assert "exchange_gaps" not in store.metadata("x", Kind.OHLCV, "BTC/USDT:USDT", "1h")


def test_a_hole_the_exchange_never_had_is_recorded_and_not_asked_again_15(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    exchange = _bars(0, 4) + _bars(6, 10)  # the exchange itself has no bars 4 and 5
    asked: list[int] = []
    _run(_exchange_with(exchange, asked), store)
    meta = store.metadata("x", Kind.OHLCV, "BTC/USDT:USDT", "1h")
    assert meta["exchange_gaps"] == [[4 * H, 6 * H]]
    asked.clear()

    again = _run(_exchange_with(exchange, asked), store)

    assert again.rows_added == 0
    assert asked == []
