"""Two real ``backtester fetch`` processes on one series, and a scan during a fetch (issue 15).

The loopback fake exchange serves nautilus_trader's recorded BTC perpetual 1m candles as Binance
BTCUSDT (45,031 gap-free bars, 2021-12-31 23:01 → 2022-02-01 05:31; shared/data PROVENANCE.md).
The interleaving is made deterministic with the store's test hook
(``BACKTESTER_TEST_PAUSE_BEFORE_RENAME``): the first writer stops between writing its temp file
and renaming it over the series, and goes on only when the test says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from backtester.cli import _register, cli
from backtester.data.store import PAUSE_ENV, Store
from tests.integration.fake_exchange import FakeExchange

BTC = "BTC/USDT:USDT"
SINCE = "2021-12-31T23:01"
FIRST_PAGE_END = "2022-01-01T15:41"  # 23:01 + 1,000 minutes: exactly one page of 1,000 bars
UNTIL = "2022-02-01T05:32"           # one minute after the last recorded bar opens
ALL_BARS = 45_031
WAIT_S = 120.0


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _stop_leftovers() -> Iterator[None]:
    yield
    while _STARTED:  # a failed test leaves no fetch running (e.g. one still paused)
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)


def _start(exchange: FakeExchange, datasets: Path, until: str, log: Path,
           pause: Path | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
    if pause is not None:
        env[PAUSE_ENV] = str(pause)
    cmd = [sys.executable, "-c", "from backtester.cli import main; main()", "fetch",
           "binanceusdm", BTC, "--kinds", "ohlcv", "--timeframe", "1m", "--since", SINCE,
           "--until", until, "--base-url", exchange.base, "--exchange-option", "rateLimit=1",
           "--datasets", str(datasets)]
    with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
    _STARTED.append(proc)
    return proc


def _wait_for(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen[bytes], log: Path) -> str:
    proc.wait(timeout=WAIT_S)
    out = log.with_suffix(".out").read_text() + log.with_suffix(".err").read_text()
    assert proc.returncode == 0, out
    return out


def _rows_added(output: str) -> int:
    m = re.search(r"ohlcv BTC/USDT:USDT 1m: \+(\d+) rows", output)
    assert m is not None, output
    return int(m.group(1))


def test_two_fetches_of_one_series_keep_every_row_15(fake_exchange: FakeExchange,
                                                     tmp_path: Path) -> None:
    datasets, hold = tmp_path / "datasets", tmp_path / "hold"
    hold.mkdir()
    log_a, log_b = tmp_path / "a", tmp_path / "b"
    # A fetches the first 1,000 bars and stops between reading the store and its rename
    a = _start(fake_exchange, datasets, FIRST_PAGE_END, log_a, pause=hold)
    _wait_for("fetch A to pause", lambda: (hold / "paused").exists() or a.poll() is not None)
    assert a.poll() is None, log_a.with_suffix(".err").read_text()
    # B fetches the whole range meanwhile: it must wait for A (before the fix it ran to the
    # end, and A's late rename then replaced B's 45,031 rows by A's 1,000)
    b = _start(fake_exchange, datasets, UNTIL, log_b)
    _wait_for("fetch B to finish or wait for A's lock",
              lambda: b.poll() is not None
              or "waiting for another process" in log_b.with_suffix(".err").read_text())
    (hold / "release").touch()
    out_a, out_b = _finish(a, log_a), _finish(b, log_b)

    frame = Store(datasets).read("binanceusdm", "ohlcv", BTC, "1m")
    assert len(frame) == ALL_BARS
    assert frame["ts"].is_unique
    assert str(frame["ts"].iloc[-1]) == "2022-02-01 05:31:00+00:00"
    # each reports what it really added: A its page, B the rest after waiting for A
    assert (_rows_added(out_a), _rows_added(out_b)) == (1_000, ALL_BARS - 1_000)
    assert "waiting for another process writing" in out_b


def test_validate_during_a_fetch_leaves_its_temp_file_15(fake_exchange: FakeExchange,
                                                         tmp_path: Path) -> None:
    datasets, hold = tmp_path / "datasets", tmp_path / "hold"
    hold.mkdir()
    log = tmp_path / "a"
    a = _start(fake_exchange, datasets, FIRST_PAGE_END, log, pause=hold)
    _wait_for("the fetch to pause", lambda: (hold / "paused").exists() or a.poll() is not None)
    folder = Store(datasets).path("binanceusdm", "ohlcv", BTC, "1m").parent
    temps = sorted(folder.glob(".1m.parquet.tmp-*"))
    assert len(temps) == 1

    _register()
    res = CliRunner().invoke(cli, ["data", "validate", "--datasets", str(datasets)])

    assert temps[0].exists()  # another process is writing it: not the scan's to delete
    (hold / "release").touch()
    out = _finish(a, log)
    assert _rows_added(out) == 1_000
    assert len(Store(datasets).read("binanceusdm", "ohlcv", BTC, "1m")) == 1_000
    assert "error" not in res.output


def test_scan_deletes_the_temp_file_of_a_dead_writer_15(tmp_path: Path) -> None:
    store = Store(tmp_path)
    folder = store.path("binanceusdm", "ohlcv", BTC, "1m").parent
    folder.mkdir(parents=True)
    stale = folder / ".1m.parquet.tmp-0123456789abcdef0123456789abcdef"
    stale.write_bytes(b"half a parquet file")  # a killed writer's leftover: no lock is held

    store.scan()

    assert not stale.exists()
