"""The real ccxt deribit client over loopback: instruments, chart data, DVOL history.

Recorded data: nautilus_trader's get_instruments (BTC-PERPETUAL, BTC-27DEC24, an option, a combo)
and get_tradingview_chart_data (5 × 1m BTC-PERPETUAL from 2025-12-23 09:51); the BTC DVOL daily
history (1,102 rows 2022-11-06 → 2025-11-12, one missing day).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from backtester.data.fetch import FetchReport
from backtester.data.schema import Kind
from backtester.data.store import Store
from backtester.errors import ConfigError
from tests.builders import RecordingProgress
from tests.integration.fake_exchange import FakeExchange

Run = Callable[..., FetchReport]
PERP = "BTC/USD:BTC"
OPTION = "BTC/USD:BTC-241227-100000-C"


def test_instruments_snapshot_drops_combos(run_fetch: Run, store: Store) -> None:
    run_fetch("deribit", (PERP,), timeframe="1m", since="2025-12-23T09:51",
              until="2025-12-23T09:56")

    markets = store.read_json("deribit", "markets")["markets"]
    assert set(markets) == {PERP, "BTC/USD:BTC-241227", OPTION}
    assert markets[OPTION]["option"] is True


def test_chart_data_paged_in_time_windows(run_fetch: Run, store: Store,
                                          fake_exchange: FakeExchange) -> None:
    # starts 51 minutes before the first recorded candle: empty windows are skipped, not "end"
    report = run_fetch("deribit", (PERP,), timeframe="1m", since="2025-12-23T09:00",
                       until="2025-12-23T09:56", page_limit=2)

    frame = store.read("deribit", Kind.OHLCV, PERP, "1m")
    assert list(frame["close"]) == [87456.5, 87456.5, 87456.0, 87456.0, 87456.0]
    assert frame["ts"].iloc[0] == pd.Timestamp("2025-12-23T09:51Z")
    assert report.series[0].end_of_data_ms is None
    windows = fake_exchange.requests("/api/v2/public/get_tradingview_chart_data")
    assert all(int(q["end_timestamp"]) - int(q["start_timestamp"]) <= 120_000 for q in windows)


def test_dvol_history_as_vol_index(run_fetch: Run, store: Store) -> None:
    report = run_fetch("deribit", ("BTC",), kinds=("vol_index",), timeframe="1d",
                       since="2022-01-01", until="2025-11-13", page_limit=300)

    frame = store.read("deribit", Kind.VOL_INDEX, "BTC", "1d")
    assert len(frame) == 1102
    assert frame["close"].iloc[0] == 56.76  # 2022-11-06, first recorded value
    meta = store.metadata("deribit", Kind.VOL_INDEX, "BTC", "1d")
    assert meta["gaps"]["count"] == 1
    assert meta["gaps"]["missing_bars"] == 1
    assert meta["price_source"].startswith("Deribit DVOL")
    assert report.series[0].end_of_data_ms is None


def test_kinds_deribit_cannot_give_are_skipped_with_a_warning(run_fetch: Run) -> None:
    report = run_fetch("deribit", (PERP,), kinds=("mark", "premium"), timeframe="1m",
                       since="2025-12-23T09:51", until="2025-12-23T09:56")

    assert report.series == ()
    assert "deribit has no mark candles for BTC/USD:BTC: skipped" in report.warnings
    assert "deribit has no premium candles for BTC/USD:BTC: skipped" in report.warnings


def test_unknown_symbol_is_a_config_error(run_fetch: Run) -> None:
    # the closest few of the exchange's markets and their count, never the whole list
    with pytest.raises(ConfigError, match=r"unknown symbol 'ETH/USD:ETH' on deribit; (did you "
                                          r"mean .*\? \(\d+ markets\)|\d+ markets, e\.g\.)"):
        run_fetch("deribit", ("ETH/USD:ETH",), timeframe="1m", since="2025-12-23", until=None)


def test_option_marks_from_option_candles(run_fetch: Run, store: Store, shared_data: Path,
                                          fake_exchange: FakeExchange) -> None:
    # Plumbing test: no option chart was recorded, so the recorded BTC-PERPETUAL chart envelope
    # (real wire format) is served for the option; only the path of the data is checked here.
    chart = shared_data / "nautilus-trader/deribit/http_get_tradingview_chart_data.json"
    body = chart.read_bytes()
    fake_exchange.inject("/api/v2/public/get_tradingview_chart_data", (200, body))

    report = run_fetch("deribit", (OPTION,), kinds=("option_marks", "funding"), timeframe="1m",
                       since="2025-12-23T09:51", until="2025-12-23T09:56", page_limit=10)

    frame = store.read("deribit", Kind.OPTION_MARKS, OPTION, "1m")
    assert list(frame["mark_price"]) == [87456.5, 87456.5, 87456.0, 87456.0, 87456.0]
    assert frame["mark_iv"].isna().all()
    meta = store.metadata("deribit", Kind.OPTION_MARKS, OPTION, "1m")
    assert "no historical mark/IV series" in meta["price_source"]
    assert f"{OPTION} is not a perpetual: no funding, skipped" in report.warnings


def test_progress_bars_do_not_disturb_the_fetch(run_fetch: Run, store: Store) -> None:
    progress = RecordingProgress()
    report = run_fetch(progress=progress, until="2021-11-16")

    assert report.series[0].rows_added == 288
    assert "ohlcv XRP/USDT:USDT 5m" in progress.descriptions()
    assert ("close", "ohlcv XRP/USDT:USDT 5m") in progress.log
