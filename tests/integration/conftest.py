"""Fixtures for the integration tests: the loopback fake exchange, a fetch helper, and the real
Binance BTC/USDT:USDT brackets (2024-10-24, ../shared/data/exchange/binance_leverage_tiers.json)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backtester.data.fetch import FetchReport, fetch
from backtester.data.paging import RetryPolicy
from backtester.data.store import Store
from backtester.timeutil import parse_utc_ms
from tests.integration.fake_exchange import FakeExchange

#: A fixed "now" for every fetch in the tests (no wall clock).
NOW_MS = parse_utc_ms("2026-01-01")


@pytest.fixture
def fake_exchange(shared_data: Path) -> Iterator[FakeExchange]:
    with FakeExchange(shared_data) as server:
        yield server


@pytest.fixture
def btc_tiers(shared_data: Path) -> dict[str, Any]:
    """The real Binance USDⓈ-M BTC/USDT:USDT leverage brackets, as ``tiers=`` takes them."""
    data = json.loads((shared_data / "exchange" / "binance_leverage_tiers.json").read_text())
    return {"BTC/USDT:USDT": data["BTC/USDT:USDT"]}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "datasets")


class Sleeps(list[float]):
    """Records the backoff waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def run_fetch(fake_exchange: FakeExchange, store: Store,
              sleeps: Sleeps) -> Callable[..., FetchReport]:
    """``run_fetch(exchange, symbols, kinds=..., timeframe=..., since=..., until=..., **kw)``."""

    def run(exchange: str = "binanceusdm", symbols: tuple[str, ...] = ("XRP/USDT:USDT",), *,
            kinds: tuple[str, ...] = ("ohlcv",), timeframe: str = "5m",
            since: str = "2021-11-15", until: str | None = "2021-11-21T22:35",
            **kw: Any) -> FetchReport:
        kw.setdefault("store", store)
        kw.setdefault("page_limit", 100)
        return fetch(exchange, list(symbols), kinds=list(kinds), timeframe=timeframe,
                     since_ms=parse_utc_ms(since),
                     until_ms=parse_utc_ms(until) if until else None,
                     base_url=fake_exchange.base, exchange_options={"rateLimit": 1},
                     clock=lambda: NOW_MS, sleep=sleeps,
                     policy=RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.1), **kw)

    return run
