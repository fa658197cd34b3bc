"""Benchmark workloads shared by our engine and the peer frameworks (issue 2, "Speed").

Data: deterministic geometric-Brownian-motion 1-minute bars from a seeded ``numpy`` Generator
(PCG64), so every framework sees the same prices. Open = previous close (no gaps), so "fill at
the next open" (ours) and "fill at this close" (backtesting.py ``trade_on_close=True``) give
the same prices.

Workloads (name → instruments × bars):

* ``W0`` no-op strategy, 1 × 500,000 bars;
* ``W1`` SMA 20/50 always-in-market reversal (long ``QTY`` when fast > slow, short otherwise),
  0.05 % taker fee, 1 × 500,000 bars;
* ``W2`` the same on 10 instruments × 100,000 bars in one account.

This module needs only numpy and pandas; the strategy classes for our engine are defined only
when ``backtester`` is importable (the peers' virtualenv does not have it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FAST", "QTY", "SLOW", "WORKLOADS", "Workload", "format_table", "gbm_bars",
           "sma", "sma_flips", "symbols_for", "workload_data"]

FAST = 20
SLOW = 50
QTY = 1.0  # contracts (linear perp, contract size 1) per side; price starts at 100
FEE_RATE = 0.0005
START_MS = 1_704_067_200_000  # 2024-01-01T00:00Z
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """One benchmark workload: ``n_instruments`` × ``n_bars`` 1-minute bars."""

    name: str
    strategy: str  # "noop" or "sma"
    n_instruments: int
    n_bars: int

    @property
    def instrument_bars(self) -> int:
        """Total instrument-bars processed."""
        return self.n_instruments * self.n_bars


WORKLOADS = {
    "W0": Workload(name="W0", strategy="noop", n_instruments=1, n_bars=500_000),
    "W1": Workload(name="W1", strategy="sma", n_instruments=1, n_bars=500_000),
    "W2": Workload(name="W2", strategy="sma", n_instruments=10, n_bars=100_000),
}


def symbols_for(n: int) -> list[str]:
    """Symbols of ``n`` synthetic linear perps: ``S00/USDT:USDT`` ..."""
    return [f"S{i:02d}/USDT:USDT" for i in range(n)]


def gbm_bars(n_bars: int, *, seed: int, start_price: float = 100.0,
             sigma: float = 0.0008) -> pd.DataFrame:
    """Deterministic GBM 1-minute candles.

    Parameters
    ----------
    n_bars
        Number of bars.
    seed
        Seed of the ``numpy.random.Generator`` (PCG64).
    start_price
        First open (USDT).
    sigma
        Standard deviation of the 1-minute log return (zero drift).

    Returns
    -------
    DataFrame with ``ts`` (bar open, tz-aware UTC), ``open``, ``high``, ``low``, ``close``,
    ``volume``; open = previous close; high/low extend the body by half-normal wicks.
    """
    # in-place arithmetic (the same operations in the same order as the plain expressions
    # open = previous close, high = max(open, close) * exp(|N|), ...), so that generating the
    # data leaves little freed heap behind in the measured process
    rng = np.random.Generator(np.random.PCG64(seed))
    close = rng.normal(0.0, sigma, n_bars)
    np.cumsum(close, out=close)
    np.exp(close, out=close)
    close *= start_price  # start * exp(cumsum(r))
    open_ = np.empty(n_bars)
    open_[0] = start_price
    open_[1:] = close[:-1]
    high = rng.normal(0.0, sigma / 2, n_bars)
    np.abs(high, out=high)
    np.exp(high, out=high)
    body = np.maximum(open_, close)
    np.multiply(body, high, out=high)
    low = rng.normal(0.0, sigma / 2, n_bars)
    np.abs(low, out=low)
    np.negative(low, out=low)
    np.exp(low, out=low)
    np.minimum(open_, close, out=body)
    np.multiply(body, low, out=low)
    del body
    volume = rng.uniform(10.0, 1000.0, n_bars)
    ms = np.arange(n_bars, dtype="int64")
    ms *= MINUTE_MS
    ms += START_MS
    ts = pd.to_datetime(ms, unit="ms", utc=True)
    del ms
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close,
                         "volume": volume}, copy=False)


def workload_data(w: Workload) -> dict[str, pd.DataFrame]:
    """Symbol → candles of workload ``w`` (instrument ``i`` uses seed ``1000 + i``)."""
    return {sym: gbm_bars(w.n_bars, seed=1000 + i, start_price=100.0 + 10.0 * i)
            for i, sym in enumerate(symbols_for(w.n_instruments))}


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average of ``x`` over ``n`` values (NaN for the first ``n - 1``)."""
    x = np.asarray(x, dtype="float64")
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        c = np.cumsum(np.insert(x, 0, 0.0))
        out[n - 1:] = (c[n:] - c[:-n]) / n
    return out


def sma_flips(x: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """1.0 at the bars where the SMA reversal's side changes (and at its first side), else 0.

    The side at a bar is long when SMA ``fast`` > SMA ``slow``, short otherwise, once the slow
    SMA exists; computed from closes up to each bar only.
    """
    f = sma(x, fast)
    s = sma(x, slow)
    valid = ~np.isnan(s)
    want = np.where(f > s, 1.0, -1.0)
    prev_want = np.concatenate([[0.0], want[:-1]])
    prev_valid = np.concatenate([[False], valid[:-1]])
    return (valid & (~prev_valid | (want != prev_want))).astype("float64")


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: framework, workload, instrument-bars/s, ratio vs backtesting.py, ..."""
    ref = {r["workload"]: r["bars_per_s"] for r in rows
           if r["framework"] == "backtesting.py" and r.get("bars_per_s")}
    ref_cpu = {r["workload"]: r["cpu_bars_per_s"] for r in rows
               if r["framework"] == "backtesting.py" and r.get("cpu_bars_per_s")}
    head = ("| framework | workload | instrument-bars | timed step (s) | instrument-bars/s "
            "| ratio vs backtesting.py | CPU instrument-bars/s | CPU ratio | loop only (bars/s) "
            "| whole process (s) | peak RSS (MiB) | trades |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        bps = r.get("bars_per_s")
        ratio = f"{bps / ref[r['workload']]:.2f}x" if bps and r["workload"] in ref else "-"
        loop = f"{r['loop_bars_per_s']:,.0f}" if r.get("loop_bars_per_s") else "-"
        cbps = r.get("cpu_bars_per_s")
        cratio = (f"{cbps / ref_cpu[r['workload']]:.2f}x" if cbps and r["workload"] in ref_cpu
                  else "-")
        lines.append(f"| {r['framework']} | {r['workload']} | {r['instrument_bars']:,} "
                     f"| {r.get('step_s', float('nan')):.2f} | {bps:,.0f} | {ratio} "
                     f"| {cbps or float('nan'):,.0f} | {cratio} | {loop} "
                     f"| {r.get('process_s', float('nan')):.2f} "
                     f"| {r.get('peak_rss_mib', float('nan')):.0f} | {r.get('trades', '-')} |")
    return "\n".join(lines)


def read_rows(paths: list[str]) -> list[dict[str, Any]]:
    """Rows of JSON-lines result files (lines not starting with ``{`` are skipped)."""
    rows = []
    for p in paths:
        with open(p, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.startswith("{"))
    return rows


# -- our engine's strategies (only where backtester is importable) ---------------------------
try:
    from backtester import Strategy as _Strategy
except ImportError:  # the peers' virtualenv
    _Strategy = None  # type: ignore[assignment,misc]

if _Strategy is not None:
    from backtester.instruments import Instrument, instrument_from_symbol

    def our_instruments(symbols: list[str]) -> dict[str, Instrument]:
        """Linear perps with 0.05 % maker/taker, lot 0.001, tick 0.01."""
        return {s: instrument_from_symbol(s, taker_rate=Decimal("0.0005"),
                                          maker_rate=Decimal("0.0005"),
                                          lot_size=Decimal("0.001"), tick_size=Decimal("0.01"))
                for s in symbols}

    class NoOp(_Strategy):
        """W0: does nothing on every bar."""

        def on_bar(self, ctx: Any) -> None:
            pass

    class SmaReversal(_Strategy):
        """W1/W2: always in market, long ``qty`` when SMA fast > SMA slow, short otherwise.

        The side held is remembered in the strategy, so an order is sent only on a cross
        (the same as the peers' strategies). With ``wake=True`` the strategy also declares its
        crossovers (:func:`sma_flips`) with ``ctx.wake_on``, so ``on_bar`` runs only at them;
        the decisions, orders and fills are the same.
        """

        fast: int = FAST
        slow: int = SLOW
        qty: float = QTY
        wake: bool = False

        def on_start(self, ctx: Any) -> None:
            self.legs = []
            for sym in ctx.symbols:
                close = ctx.series(sym, "close")
                f = ctx.indicator(sma, close, self.fast, symbol=sym, name="fast")
                s = ctx.indicator(sma, close, self.slow, symbol=sym, name="slow")
                self.legs.append([sym, f, s, 0])
                if self.wake:
                    ctx.wake_on(ctx.indicator(sma_flips, close, self.fast, self.slow,
                                              symbol=sym, name="flips"))
            self.q = Decimal(str(self.qty))

        def on_bar(self, ctx: Any) -> None:
            for leg in self.legs:
                sym, f, s, side = leg
                fv = f.now
                sv = s.now
                if sv != sv:  # NaN warm-up
                    continue
                want = 1 if fv > sv else -1
                if want != side:
                    ctx.target(sym, self.q if want > 0 else -self.q)
                    leg[3] = want
