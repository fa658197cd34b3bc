"""Small run folders for the report tests: wipe-out, no trades, one day, a normal week.

Each run is a real ``backtester.run`` on a tiny stored dataset (hourly candles written with
:class:`~backtester.data.store.Store`), so the report sees exactly what the CLI would write.
"""

from __future__ import annotations

import math
import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

import backtester
from backtester import Strategy
from backtester.data.schema import Kind
from backtester.data.store import Store
from backtester.errors import BacktesterWarning

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


class Idle(Strategy):
    """Never trades."""

    def on_bar(self, ctx):  # type: ignore[no-untyped-def]
        ctx.record(idle=1.0)


class BuyAndHold(Strategy):
    """Buy ``qty`` BTC at the first bar at ``leverage``, sell 0.1 ETH too, then hold."""

    qty: float = 1.0
    leverage: float = 10.0

    def on_bar(self, ctx):  # type: ignore[no-untyped-def]
        if getattr(self, "_done", False):
            return
        self._done = True
        ctx.set_leverage(BTC, self.leverage)
        ctx.set_leverage(ETH, self.leverage)
        ctx.buy(BTC, Decimal(str(self.qty)), tag="entry")
        ctx.sell(ETH, Decimal("0.1"), tag="hedge")
        ctx.sell(BTC, Decimal("0.0000001"), tag="too small")  # rejected: below the lot


def _bars(prices: np.ndarray, start: str) -> pd.DataFrame:
    ts = pd.date_range(start, periods=len(prices), freq="1h", tz="UTC")
    hi = prices * 1.001
    lo = prices * 0.999
    return pd.DataFrame({"ts": ts, "open": prices, "high": hi, "low": lo, "close": prices,
                         "volume": np.full(len(prices), 1e6)})


def make_dataset(root: Path, name: str, *, hours: int, crash: bool = False) -> None:
    """Write BTC and ETH hourly candles (a seeded random walk; ``crash`` drops BTC 30 %)."""
    rng = np.random.default_rng(7)
    steps = rng.normal(0.0, 0.004, size=hours)
    btc = 50_000.0 * np.exp(np.cumsum(steps))
    if crash:
        btc[hours // 2:] *= 0.7
    eth = 2_500.0 * np.exp(np.cumsum(rng.normal(0.0, 0.005, size=hours)))
    store = Store(root)
    store.write(name, Kind.OHLCV, BTC, "1h", _bars(np.round(btc, 1), "2025-03-01"))
    store.write(name, Kind.OHLCV, ETH, "1h", _bars(np.round(eth, 2), "2025-03-01"))


def write_run(kind: str, base: Path) -> Path:
    """Run one scenario (``wipeout``, ``notrade``, ``oneday``, ``week``) and write its folder."""
    root = base / "datasets"
    hours = {"wipeout": 72, "notrade": 72, "oneday": 20, "week": 24 * 7}[kind]
    make_dataset(root, kind, hours=hours, crash=kind == "wipeout")
    strategy: type[Strategy] = Idle if kind == "notrade" else BuyAndHold
    params = {"qty": 1.0, "leverage": 20.0} if kind == "wipeout" else {}
    with warnings.catch_warnings():
        # "no market spec in markets.json": expected, the report lists it among the warnings
        warnings.simplefilter("ignore", BacktesterWarning)
        # a dataset named after its scenario: the profile is given (it cannot be inferred)
        result = backtester.run(strategy, dataset=kind, datasets_root=root, funding="zero",
                                profile="bybit",
                                collateral={"USDT": 3_000 if kind == "wipeout" else 100_000},
                                params=params, compare_margin_modes=kind == "week")
    path = result.write(base / "runs" / kind)
    for mode, alt in result.meta.get("alternatives", {}).items():
        alt.write(path / f"alternative-{mode}")
    assert math.isfinite(float(result.equity["equity"].iloc[-1]))
    return path


_BUILT: dict[str, Path] = {}
SCENARIOS = ("wipeout", "notrade", "oneday", "week")


def built_runs(base: Path) -> dict[str, Path]:
    """Build every scenario once per test session and write its report.

    quantstats' and yfinance's download functions are replaced by ones that raise while the
    reports are written, to prove that no code path downloads a benchmark.
    """
    if _BUILT:
        return _BUILT
    import pytest

    from backtester.report import write_report

    def _no_download(*args: object, **kwargs: object) -> None:
        msg = "a report tried to download market data"
        raise AssertionError(msg)

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import quantstats
        import yfinance

        mp.setattr(quantstats.utils, "safe_yfinance_download", _no_download)
        mp.setattr(quantstats._compat, "safe_yfinance_download", _no_download)
        mp.setattr(quantstats.utils, "download_returns", _no_download)
        mp.setattr(yfinance, "download", _no_download)
        for kind in SCENARIOS:
            path = write_run(kind, base)
            write_report(path, datasets_root=base / "datasets")
            _BUILT[kind] = path
    return _BUILT
