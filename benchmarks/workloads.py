"""Benchmark workloads shared by our engine and the peer frameworks (issue 2, "Speed").

Data: deterministic geometric-Brownian-motion 1-minute bars from a seeded ``numpy`` Generator
(PCG64), so every framework sees the same prices. Open = previous close (no gaps), so "fill at
the next open" (ours) and "fill at this close" (backtesting.py ``trade_on_close=True``) give
the same prices.

Workloads (name → instruments × bars):

* ``W0`` no-op strategy, 1 × 500,000 bars;
* ``W1`` SMA 20/50 always-in-market reversal (long ``QTY`` when fast > slow, short otherwise),
  0.05 % taker fee, 1 × 500,000 bars;
* ``W2`` the same on 10 instruments × 100,000 bars in one account;
* ``W1h`` / ``W2h`` W1 / W2 hedged: beside each perp ``S0i/USDT:USDT`` a linear dated future on
  the same underlying, ``S0i/USDT:USDT-241227`` (expiry 2024-12-27 08:00 UTC, after the last bar
  of both), whose candles are the perp's plus a constant basis of 0.5 % of the perp's first
  price; the strategy sells ``HEDGE_RATIO`` × ``QTY`` of each future at the first bar (filled at
  the second bar's open) and never touches it again, so the perps trade exactly as in W1 / W2
  while every bar's margin sees two legs per underlying (our engine only: backtesting.py has no
  multi-instrument account, so W1h / W2h compare with its W1 / W2, counting perp bars);
* ``W4`` the example strategy ``strategies/delta_hedged_strangle.py`` (short strangle on BTC
  options, delta-hedged with the perp) on the sample dataset's whole year, hourly, default
  settings (run by ``run_ours.py`` from ``backtester.data.sample``, not from this module).

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

__all__ = ["BASIS", "FAST", "FUTURE_EXPIRY", "HEDGE_RATIO", "QTY", "SLOW", "W4_STRATEGY",
           "WORKLOADS", "Workload", "first_bar", "format_table", "future_symbol", "gbm_bars",
           "hedge_check", "sma", "sma_flips", "symbols_for", "workload_data"]

FAST = 20
SLOW = 50
QTY = 1.0  # contracts (linear perp, contract size 1) per side; price starts at 100
FEE_RATE = 0.0005
START_MS = 1_704_067_200_000  # 2024-01-01T00:00Z
MINUTE_MS = 60_000
FUTURE_EXPIRY = "241227"  # the hedging futures' expiry (YYMMDD, 08:00 UTC), after every bar
BASIS = 0.005  # the futures' constant basis, as a fraction of the perp's first price
HEDGE_RATIO = 0.5  # the futures' short size, as a fraction of QTY


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """One benchmark workload: ``n_instruments`` × ``n_bars`` 1-minute bars."""

    name: str
    strategy: str  # "noop", "sma" or "sample" (W4: an example strategy on the sample dataset)
    n_instruments: int  # perps (W1h/W2h add one future per perp)
    n_bars: int
    hedged: bool = False  # one short dated future per perp, held from the first bar

    @property
    def perp_bars(self) -> int:
        """Instrument-bars of the perps only (what W1h/W2h's ratio counts)."""
        return self.n_instruments * self.n_bars

    @property
    def instrument_bars(self) -> int:
        """Total instrument-bars processed (perps and hedging futures)."""
        return self.perp_bars * (2 if self.hedged else 1)


WORKLOADS = {
    "W0": Workload(name="W0", strategy="noop", n_instruments=1, n_bars=500_000),
    "W1": Workload(name="W1", strategy="sma", n_instruments=1, n_bars=500_000),
    "W2": Workload(name="W2", strategy="sma", n_instruments=10, n_bars=100_000),
    "W1h": Workload(name="W1h", strategy="sma", n_instruments=1, n_bars=500_000, hedged=True),
    "W2h": Workload(name="W2h", strategy="sma", n_instruments=10, n_bars=100_000, hedged=True),
    # the sample dataset's year of hourly bars; its instruments (a perp, futures, options) come
    # from the dataset
    "W4": Workload(name="W4", strategy="sample", n_instruments=1, n_bars=365 * 24),
}
#: W4's strategy file under strategies/
W4_STRATEGY = "delta_hedged_strangle.py"


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


def future_symbol(perp: str) -> str:
    """The hedging dated future of ``perp``: ``S00/USDT:USDT`` → ``S00/USDT:USDT-241227``."""
    return f"{perp}-{FUTURE_EXPIRY}"


def workload_data(w: Workload, n_bars: int | None = None) -> dict[str, pd.DataFrame]:
    """Symbol → candles of workload ``w`` (perp ``i`` uses seed ``1000 + i`` and starts at
    ``100 + 10 i`` USDT; a hedged workload adds each perp's future: the same candles plus
    ``BASIS`` × the perp's first price). ``n_bars`` overrides the workload's bar count (tests).
    """
    if w.strategy == "sample":
        msg = f"{w.name} runs on the sample dataset (backtester.data.sample), not on GBM bars"
        raise ValueError(msg)
    n = w.n_bars if n_bars is None else n_bars
    out: dict[str, pd.DataFrame] = {}
    for i, sym in enumerate(symbols_for(w.n_instruments)):
        start = 100.0 + 10.0 * i
        perp = gbm_bars(n, seed=1000 + i, start_price=start)
        out[sym] = perp
        if w.hedged:
            fut = perp.copy()
            basis = BASIS * start
            for col in ("open", "high", "low", "close"):
                fut[col] += basis
            out[future_symbol(sym)] = fut
    return out


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


def first_bar(x: np.ndarray) -> np.ndarray:
    """1.0 at the first bar, 0.0 elsewhere (the hedged strategy's wake signal to sell the
    future at the first bar)."""
    out = np.zeros(len(x))
    out[:1] = 1.0
    return out


def hedge_check(w: Workload, fills: pd.DataFrame, positions: pd.DataFrame,
                steps: pd.Index) -> str:
    """``"ok"`` when every hedging future of ``w`` was sold once, ``HEDGE_RATIO`` × ``QTY`` at
    the second step (the first bar's order filled at the next open: ``step_ts`` the second
    step, ``ts`` that bar's open), and its position row is
    present with that quantity at every later step; otherwise what is wrong.

    ``fills`` / ``positions`` are the result's frames, ``steps`` the equity index (every step).
    """
    want = -HEDGE_RATIO * QTY
    problems = []
    for perp in symbols_for(w.n_instruments):
        fut = future_symbol(perp)
        f = fills[fills["symbol"] == fut]
        # the step that processed the fill (older code, e.g. the baseline, stamped fills
        # with it as ts and has no step_ts)
        step_col = "step_ts" if "step_ts" in f else "ts"
        if len(f) != 1 or float(f["qty"].iloc[0]) != want or len(steps) < 2 \
                or f[step_col].iloc[0] != steps[1]:
            problems.append(f"{fut}: fills {f[[step_col, 'qty']].values.tolist()}, expected "
                            f"one of {want} processed at {steps[1] if len(steps) > 1 else '-'}")
            continue
        p = positions[positions["symbol"] == fut]
        held = pd.Index(p["ts"])
        if not held.equals(steps[1:]) or not (p["qty"] == want).all():
            problems.append(f"{fut}: position rows at {len(held)} of {len(steps) - 1} steps "
                            f"after the fill, quantities {sorted(set(p['qty']))}")
    return "; ".join(problems) or "ok"


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
        """Linear perps (and dated futures) with 0.05 % maker/taker, lot 0.001, tick 0.01."""
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
            for sym in self._traded(ctx):
                close = ctx.series(sym, "close")
                f = ctx.indicator(sma, close, self.fast, symbol=sym, name="fast")
                s = ctx.indicator(sma, close, self.slow, symbol=sym, name="slow")
                self.legs.append([sym, f, s, 0])
                if self.wake:
                    ctx.wake_on(ctx.indicator(sma_flips, close, self.fast, self.slow,
                                              symbol=sym, name="flips"))
            self.q = Decimal(str(self.qty))

        def _traded(self, ctx: Any) -> list[str]:
            # the symbols the SMA reversal trades
            return list(ctx.symbols)

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

    class HedgedSmaReversal(SmaReversal):
        """W1h/W2h: :class:`SmaReversal` on the perps, plus a short of ``hedge_ratio`` ×
        ``qty`` in each perp's dated future (:func:`future_symbol`), sent at the first bar
        (filled at the second bar's open) and never touched again.

        With ``wake=True`` the first bar is declared with ``ctx.wake_on`` too, so the hedge is
        sent at the same bar. ``on_bar`` repeats :class:`SmaReversal`'s loop (a call of the
        parent's method would add a Python call per bar to the timed loop).
        """

        hedge_ratio: float = HEDGE_RATIO

        def _traded(self, ctx: Any) -> list[str]:
            return [s for s in ctx.symbols if ctx.instrument(s).is_perpetual]

        def on_start(self, ctx: Any) -> None:
            super().on_start(ctx)
            self.todo = [future_symbol(sym) for sym in self._traded(ctx)]
            self.hedge_q = -self.q * Decimal(str(self.hedge_ratio))
            if self.wake:
                for sym in self.todo:
                    ctx.wake_on(ctx.indicator(first_bar, ctx.series(sym, "close"), symbol=sym,
                                              name="first"))

        def on_bar(self, ctx: Any) -> None:
            if self.todo:
                for sym in self.todo:
                    ctx.target(sym, self.hedge_q)
                self.todo = []
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
