"""The real ccxt binanceusdm client fetching recorded XRP/USDT:USDT data over loopback HTTP.

Recorded data (shared/data, see PROVENANCE.md): freqtrade's XRP 5m candles (1,999 rows,
2021-11-15 00:00 → 11-21 22:30, gap-free), 1h mark candles (100 rows), 8h funding (91 rows
2021-11-18 → 12-18 with millisecond jitter).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from backtester.data.fetch import FetchReport
from backtester.data.schema import Kind
from backtester.data.store import Store
from backtester.errors import DataError
from backtester.timeutil import parse_utc_ms
from tests.integration.fake_exchange import FakeExchange

Run = Callable[..., FetchReport]
XRP = "XRP/USDT:USDT"
KLINES = "/fapi/v1/klines"


def _recorded(shared: Path, name: str) -> pd.DataFrame:
    return pd.read_feather(shared / "freqtrade-testdata/futures" / name)


def _file(store: Store, kind: str = "ohlcv", tf: str | None = "5m") -> Path:
    return store.path("binanceusdm", kind, XRP, tf)


def test_pagination_across_many_pages_matches_recording(run_fetch: Run, store: Store,
                                                        fake_exchange: FakeExchange,
                                                        shared_data: Path) -> None:
    report = run_fetch()

    (series,) = report.series
    assert series.rows_added == 1999
    assert series.pages == 20  # 100 candles per request
    frame = store.read("binanceusdm", Kind.OHLCV, XRP, "5m")
    recorded = _recorded(shared_data, "XRP_USDT_USDT-5m-futures.feather")
    assert len(frame) == 1999
    assert frame["ts"].is_unique
    assert frame["ts"].is_monotonic_increasing
    assert (frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
            == recorded["date"].dt.as_unit("ms").astype("int64").to_numpy()).all()
    for col in ("open", "high", "low", "close", "volume"):
        assert frame[col].to_numpy() == pytest.approx(recorded[col].to_numpy())
    starts = [int(q["startTime"]) for q in fake_exchange.requests(KLINES)]
    assert starts[0] == parse_utc_ms("2021-11-15")
    assert all(b > a for a, b in itertools.pairwise(starts))  # forward only, never paginate=True
    meta = store.metadata("binanceusdm", Kind.OHLCV, XRP, "5m")
    assert meta["ccxt_version"] == "4.5.90"
    assert meta["fetched_at"] == "2026-01-01T00:00:00Z"
    assert meta["gaps"]["count"] == 0
    assert meta["end_of_data"] is None
    assert report.warnings == (
        "binanceusdm serves leverage brackets only to signed requests: set "
        "BACKTESTER_BINANCEUSDM_API_KEY/_SECRET or pass --tiers-file (e.g. a saved ccxt "
        "fetch_leverage_tiers JSON)",)
    markets = store.read_json("binanceusdm", "markets")
    assert {"BTC/USDT:USDT", "ETH/USDT:USDT", XRP, "BTC/USDT:USDT-220325"} <= set(
        markets["markets"])
    assert markets["fetched_at"] == "2026-01-01T00:00:00Z"


def test_resume_appends_without_duplicates(run_fetch: Run, store: Store,
                                           fake_exchange: FakeExchange) -> None:
    first = run_fetch(until="2021-11-17")
    second = run_fetch()

    assert first.series[0].rows_added == 576  # 2 days of 5m bars
    assert second.series[0].rows_added == 1999 - 576
    starts = [int(q["startTime"]) for q in fake_exchange.requests(KLINES)]
    assert parse_utc_ms("2021-11-16T23:55") + 1 in starts  # resumed after the last stored bar
    frame = store.read("binanceusdm", Kind.OHLCV, XRP, "5m")
    assert len(frame) == 1999
    assert frame["ts"].is_unique


def test_same_fetch_twice_is_identical_and_asks_nothing(run_fetch: Run, store: Store,
                                                        fake_exchange: FakeExchange) -> None:
    run_fetch()
    before = _file(store).read_bytes()
    n = len(fake_exchange.requests(KLINES))

    again = run_fetch()

    assert again.series[0].rows_added == 0
    assert len(fake_exchange.requests(KLINES)) == n  # nothing left to ask for
    assert _file(store).read_bytes() == before


def test_429_then_success_backs_off_and_honours_retry_after(run_fetch: Run, store: Store,
                                                            fake_exchange: FakeExchange,
                                                            sleeps: list[float]) -> None:
    fake_exchange.inject(KLINES, (429, b'{"code":-1003,"msg":"Too many requests"}',
                                  {"Retry-After": "2"}))

    report = run_fetch()

    assert report.series[0].retries == 1
    assert report.series[0].rows_added == 1999
    assert sleeps
    assert sleeps[0] >= 2.0
    assert len(store.read("binanceusdm", Kind.OHLCV, XRP, "5m")) == 1999


@pytest.mark.parametrize(("status", "body"), [
    (502, b"<html>Bad Gateway</html>"),
    (503, b'{"code":-1001,"msg":"Internal error; unable to process your request."}'),
    (504, b""),
])
def test_5xx_mid_range_is_retried(run_fetch: Run, store: Store, fake_exchange: FakeExchange,
                                  status: int, body: bytes) -> None:
    run_fetch(until="2021-11-16")
    fake_exchange.inject(KLINES, (status, body), (status, body))

    report = run_fetch()

    assert report.series[0].retries == 2
    assert len(store.read("binanceusdm", Kind.OHLCV, XRP, "5m")) == 1999


@pytest.mark.parametrize("body", [b"", b"<html>maintenance</html>"])
def test_200_with_empty_or_non_json_body_is_re_requested_not_end(
        run_fetch: Run, store: Store, fake_exchange: FakeExchange, body: bytes) -> None:
    run_fetch(until="2021-11-16")
    fake_exchange.inject(KLINES, (200, body), (200, body))

    report = run_fetch()

    assert report.series[0].end_of_data_ms is None
    assert len(store.read("binanceusdm", Kind.OHLCV, XRP, "5m")) == 1999
    assert not [w for w in report.warnings if "no data after" in w]


def test_three_empty_answers_mark_the_end_of_data(run_fetch: Run, store: Store) -> None:
    report = run_fetch(until="2021-11-23")  # the recording ends 2021-11-21 22:30

    series = report.series[0]
    assert series.rows_added == 1999
    assert series.end_of_data_ms == parse_utc_ms("2021-11-21T22:30") + 1
    assert any("no data after 2021-11-21T22:30:00.001Z" in w for w in report.warnings)
    meta = store.metadata("binanceusdm", Kind.OHLCV, XRP, "5m")
    assert meta["end_of_data"]["missing_until"] == "2021-11-23T00:00:00Z"


def test_bad_symbol_is_not_retried(run_fetch: Run, fake_exchange: FakeExchange) -> None:
    with pytest.raises(DataError, match=r"BadSymbol"):
        run_fetch(timeframe="15m")  # the recording has no 15m: the server answers -1121
    assert len([1 for status, path, _ in fake_exchange.log if path == KLINES]) == 1


class _Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing may catch it)."""


def test_killed_between_pages_then_rerun_gives_identical_files(
        run_fetch: Run, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = Store(tmp_path / "reference")
    run_fetch(store=reference)
    real_append = Store.append
    calls = {"n": 0}

    def dying_append(self: Store, *args: Any, **kwargs: Any) -> Path:
        calls["n"] += 1
        if calls["n"] == 7:
            raise _Killed
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(Store, "append", dying_append)
    with pytest.raises(_Killed):
        run_fetch()
    monkeypatch.setattr(Store, "append", real_append)
    assert len(store.read("binanceusdm", Kind.OHLCV, XRP, "5m")) == 600  # 6 whole pages

    run_fetch()

    assert _file(store).read_bytes() == _file(reference).read_bytes()


def test_truncated_parquet_is_quarantined_and_refetched(run_fetch: Run, store: Store) -> None:
    run_fetch()
    path = _file(store)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    report = run_fetch()

    assert len(report.quarantined) == 1
    assert "unreadable Parquet file" in report.quarantined[0]
    assert "moved to" in report.quarantined[0]
    assert path.with_name(path.name + ".corrupt").exists()
    assert len(store.read("binanceusdm", Kind.OHLCV, XRP, "5m")) == 1999


def test_mark_candles_and_funding(run_fetch: Run, store: Store, shared_data: Path) -> None:
    run_fetch(kinds=("mark",), timeframe="1h", since="2021-11-15", until="2021-11-19T10:00")
    report = run_fetch(kinds=("funding",), since="2021-11-18", until="2021-12-18T00:00:01",
                       page_limit=10)

    mark = store.read("binanceusdm", Kind.MARK, XRP, "1h")
    recorded_mark = _recorded(shared_data, "XRP_USDT_USDT-1h-mark.feather")
    assert len(mark) == 100
    assert mark["close"].to_numpy() == pytest.approx(recorded_mark["close"].to_numpy())
    funding = store.read("binanceusdm", Kind.FUNDING, XRP, None)
    recorded = _recorded(shared_data, "XRP_USDT_USDT-8h-funding_rate.feather")
    assert report.series[0].rows_added == 91
    assert report.series[0].pages >= 80  # 10-hour windows (page_limit 10 × 1 h): 1–2 events each
    assert len(funding) == 91  # none lost to the millisecond jitter
    assert funding["rate"].to_numpy() == pytest.approx(recorded["open"].to_numpy())
    assert funding["ts"].iloc[0] == pd.Timestamp("2021-11-18T00:00:00Z")  # .017 floored


def test_tiers_file_is_imported(run_fetch: Run, store: Store, shared_data: Path) -> None:
    report = run_fetch(tiers_file=shared_data / "exchange/binance_leverage_tiers.json")

    assert report.tiers_path is not None
    tiers = store.read_json("binanceusdm", "leverage_tiers")
    assert tiers["source"] == "file binance_leverage_tiers.json"
    assert tiers["tiers"]["BTC/USDT:USDT"][0]["maintenanceMarginRate"] > 0
    assert not report.warnings


def test_network_guard_turns_a_real_host_into_an_error(store: Store) -> None:
    from backtester.data.fetch import fetch
    from backtester.data.paging import RetryPolicy

    with pytest.raises(DataError, match=r"giving up after 2 attempts"):
        fetch("binanceusdm", [XRP], kinds=["ohlcv"], timeframe="5m",
              since_ms=parse_utc_ms("2021-11-15"), until_ms=parse_utc_ms("2021-11-16"),
              store=store, clock=lambda: parse_utc_ms("2026-01-01"), sleep=lambda s: None,
              policy=RetryPolicy(attempts=2))  # no base_url: fapi.binance.com


def test_api_keys_come_from_env_and_never_reach_logs_or_messages(
        run_fetch: Run, fake_exchange: FakeExchange, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("BACKTESTER_BINANCEUSDM_API_KEY", "KEY-do-not-print-123")
    monkeypatch.setenv("BACKTESTER_BINANCEUSDM_SECRET", "SECRET-do-not-print-456")
    caplog.set_level("DEBUG")

    report = run_fetch(until="2021-11-15T01:00")  # with keys, tiers come from a signed call

    signed = [q for status, path, q in fake_exchange.log if "leverageBracket" in path]
    assert signed  # the signed endpoint was tried (not recorded: the server answers 404)
    assert "signature" in signed[0]
    text = caplog.text + " ".join(report.warnings)
    assert any(w.startswith("leverage tiers not fetched") for w in report.warnings)
    assert "do-not-print" not in text


def test_earlier_since_backfills_then_resumes(run_fetch: Run, store: Store,
                                              fake_exchange: FakeExchange) -> None:
    run_fetch(since="2021-11-17", until="2021-11-18")
    report = run_fetch(since="2021-11-15")

    frame = store.read("binanceusdm", Kind.OHLCV, XRP, "5m")
    assert report.series[0].rows_added == 1999 - 288
    assert len(frame) == 1999
    assert frame["ts"].is_unique


def test_refetch_fills_a_hole_between_stored_ranges_15(run_fetch: Run, store: Store) -> None:
    run_fetch(until="2021-11-17")
    run_fetch(since="2021-11-18")  # resumes at its own since: 11-17 is never asked for
    meta = store.metadata("binanceusdm", Kind.OHLCV, XRP, "5m")
    assert meta["gaps"]["missing_bars"] == 288
    assert "exchange_gaps" not in meta  # the exchange was never asked about that day

    report = run_fetch()

    assert report.series[0].rows_added == 288  # the hole of 11-17, one day of 5m bars
    frame = store.read("binanceusdm", Kind.OHLCV, XRP, "5m")
    assert len(frame) == 1999
    assert store.metadata("binanceusdm", Kind.OHLCV, XRP, "5m")["gaps"]["count"] == 0


def test_new_data_clears_an_earlier_end_of_data(run_fetch: Run, store: Store,
                                                fake_exchange: FakeExchange) -> None:
    run_fetch(since="2021-11-21", until="2021-11-21T22:00")
    fake_exchange.inject(KLINES, (200, b"[]"), (200, b"[]"), (200, b"[]"))  # a lagging mirror
    first = run_fetch(since="2021-11-21", until="2021-11-21T22:35")
    meta = store.metadata("binanceusdm", Kind.OHLCV, XRP, "5m")
    assert first.series[0].end_of_data_ms == parse_utc_ms("2021-11-21T21:55") + 1
    assert meta["end_of_data"]["missing_until"] == "2021-11-21T22:35:00Z"

    second = run_fetch(since="2021-11-21", until="2021-11-21T22:35")

    assert second.series[0].rows_added == 7  # 22:00 .. 22:30
    assert store.metadata("binanceusdm", Kind.OHLCV, XRP, "5m")["end_of_data"] is None


def test_empty_json_windows_mid_range_are_confirmed_then_skipped(
        run_fetch: Run, store: Store, fake_exchange: FakeExchange) -> None:
    run_fetch(until="2021-11-16")
    fake_exchange.inject(KLINES, (200, b"[]"), (200, b"[]"))  # twice: not yet confirmed

    report = run_fetch()

    assert report.series[0].end_of_data_ms is None
    assert len(store.read("binanceusdm", Kind.OHLCV, XRP, "5m")) == 1999


def test_every_retry_wait_is_reported_with_the_attempt_count_16(
        run_fetch: Run, fake_exchange: FakeExchange, sleeps: list[float]) -> None:
    # issue 16 item 10: a rate-limited fetch waited ~44 s in silence before "giving up after
    # 6 attempts"; each wait is now announced, before it starts, with the attempt count
    from tests.builders import RecordingProgress

    fake_exchange.inject(KLINES, *[(429, b'{"code":-1003,"msg":"Too many requests"}',
                                    {"Retry-After": "2"})] * 2)
    progress = RecordingProgress()
    report = run_fetch(progress=progress)

    assert report.series[0].retries == 2
    waits = [d for d in progress.descriptions() if "retrying in" in d]
    assert len(waits) == 2
    # the tests' retry policy allows 4 attempts (conftest); the wait is the one slept
    assert waits[0].startswith(f"ohlcv XRP/USDT:USDT 5m: attempt 1/4 failed, retrying in "
                               f"{sleeps[0]:.1f} s: ")
    assert waits[1].startswith(f"ohlcv XRP/USDT:USDT 5m: attempt 2/4 failed, retrying in "
                               f"{sleeps[1]:.1f} s: ")
    assert waits[0].endswith('429 Too Many Requests {"code":-1003,"msg":"Too many requests"}')
    assert progress.descriptions()[-1] == "ohlcv XRP/USDT:USDT 5m"  # back to the label


def test_fetch_command_shows_retries_on_a_terminal_16(fake_exchange: FakeExchange,
                                                     tmp_path: Path, shared_data: Path) -> None:
    from click.testing import CliRunner

    from backtester.cli import _register, cli

    _register()
    fake_exchange.inject(KLINES, (429, b'{"code":-1003,"msg":"Too many requests"}',
                                  {"Retry-After": "1"}))
    args = ["fetch", "binanceusdm", XRP, "--kinds", "ohlcv", "-t", "5m", "--since",
            "2021-11-21", "--until", "2021-11-21T06:00", "--base-url", fake_exchange.base,
            "--exchange-option", "rateLimit=1", "--tiers-file",
            str(shared_data / "exchange/binance_leverage_tiers.json"), "--datasets",
            str(tmp_path)]
    res = CliRunner().invoke(cli, args, env={"TTY_COMPATIBLE": "1"})
    assert res.exit_code == 0, res.output
    assert "attempt 1/6 failed, retrying in" in res.stderr
    assert "ohlcv XRP/USDT:USDT 5m: +72 rows" in res.stdout
