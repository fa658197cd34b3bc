"""The reference runs frozen as golden results (issue 17 item 6).

Each case is a function of the sample dataset's root folder that returns one or more
:class:`~backtester.BacktestResult` by label. The cases are:

* ``demo`` — the flagship ``HedgedPair`` on the whole sample year, in cross margin, with its
  isolated and portfolio alternatives (what ``backtester demo`` runs);
* ``strategy-<name>`` — every example strategy in ``strategies/`` on the whole sample year;
* ``random-*`` — the random books of the former fast-path and quiet-stretch tests: random
  targets, limits and cancels on linear and inverse perps with random leverage, USDT / USDC /
  BTC collateral, price paths with one-bar crashes that cause margin calls, liquidations and
  bankruptcies, on every pooling rule, intrabar and close checks, a clock with missing bars, and
  (``random-tiers-*``, shared data) Binance's real tier table.

``python -m tests.golden.record`` writes the files under ``tests/golden/data/``;
``tests/golden/test_golden.py`` compares a fresh run with them. Golden files change only in a
commit that names the behaviour that changed and why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

import backtester
from backtester import BacktestResult, Strategy
from backtester.instruments import instrument_from_symbol

SYMS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USD:BTC")
LINEAR = ("BTC/USDT:USDT", "ETH/USDT:USDT")
STRATEGIES = ("calendar_basis", "covered_call", "delta_hedged_strangle", "funding_carry",
              "hedged_pair", "protective_put", "vol_target_trend")
REPO = Path(__file__).resolve().parents[2]


def bars(rng: np.random.Generator, n: int, start: float, crash_at: int, crash: float,
         mark: bool) -> pd.DataFrame:
    """Hourly candles of a random walk with a one-bar crash (or spike) at ``crash_at``."""
    r = rng.normal(0.0, 0.004, n)
    r[crash_at] += np.log(crash)
    close = start * np.exp(np.cumsum(r))
    open_ = np.concatenate([[start], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.006, (2, n)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    ts = pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")
    df = pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close,
                       "volume": 1e6})
    if mark:
        df[["open", "high", "low", "close"]] *= 1.0 + rng.normal(0.0, 0.0005, (n, 1))
    return df


class RandomTrader(Strategy):
    """Random targets, limits and cancels on random symbols with random leverage (seeded)."""

    seed: int = 0
    p: float = 0.15
    size: float = 1.0

    def on_start(self, ctx):
        self.rng = np.random.default_rng(self.seed)
        for sym in ctx.symbols:
            ctx.set_leverage(sym, float(self.rng.choice([5.0, 20.0, 50.0])))

    def on_bar(self, ctx):
        if ctx.price(SYMS[0]) != ctx.price(SYMS[0]):
            return
        if self.rng.random() > self.p:
            return
        sym = ctx.symbols[int(self.rng.integers(len(ctx.symbols)))]
        scale = {"BTC/USDT:USDT": 0.01, "ETH/USDT:USDT": 0.1, "BTC/USD:BTC": 100}[sym]
        q = Decimal(int(self.rng.integers(-20, 21))) * Decimal(str(scale)) * Decimal(
            str(self.size))
        kind = self.rng.random()
        if kind < 0.7:
            ctx.target(sym, q)
        elif kind < 0.85 and q != 0:
            px = ctx.round_price(sym, ctx.price(sym) * (0.99 if q > 0 else 1.01))
            (ctx.buy if q > 0 else ctx.sell)(sym, abs(q), limit=px)
        else:
            ctx.cancel()
        if self.rng.random() < 0.05:
            ctx.record(score=float(self.rng.random()))


class SlowTrader(Strategy):
    """Random targets, rarely changed (long stretches without trades), sometimes a limit."""

    seed: int = 0
    p: float = 0.03
    size: float = 1.0

    def on_start(self, ctx):
        self.rng = np.random.default_rng(self.seed)
        for sym in ctx.symbols:
            ctx.set_leverage(sym, float(self.rng.choice([5.0, 20.0, 50.0])))

    def on_bar(self, ctx):
        if self.rng.random() > self.p:
            return
        sym = ctx.symbols[int(self.rng.integers(len(ctx.symbols)))]
        scale = {"BTC": 0.01, "ETH": 0.1}[sym[:3]] if sym.endswith("USDT") else 100
        q = Decimal(int(self.rng.integers(-20, 21))) * Decimal(str(scale)) * Decimal(
            str(self.size))
        if self.rng.random() < 0.85:
            ctx.target(sym, q)
        elif q != 0:
            px = ctx.round_price(sym, ctx.price(sym) * (0.995 if q > 0 else 1.005))
            (ctx.buy if q > 0 else ctx.sell)(sym, abs(q), limit=px)
        if self.rng.random() < 0.1:
            ctx.record(score=float(self.rng.random()))


def _random_book(seed: int, *, margin_check: str, collateral: dict[str, float],
                 profile: str | None = None, margin_mode: str = "cross") -> BacktestResult:
    # the former fast-path test's book: 300 hourly bars of three perps
    rng = np.random.default_rng(seed)
    n = 300
    data = {}
    for k, sym in enumerate(SYMS):
        start = {"BTC": 50_000.0, "ETH": 2_500.0}[sym[:3]]
        crash = float(rng.choice([0.7, 0.8, 1.25]))
        data[sym] = bars(np.random.default_rng(seed * 10 + k), n, start,
                         int(rng.integers(50, n - 10)), crash, mark=bool(k % 2))
    insts = {s: instrument_from_symbol(s) for s in SYMS}
    # in-memory data: the profile is named (bybit was the silent default when it was recorded)
    return backtester.run(RandomTrader, data=data, instruments=insts, funding="zero",
                          collateral=collateral, margin_check=margin_check,
                          profile=profile or "bybit", margin_mode=margin_mode, slippage_bps=2,
                          params={"seed": seed, "size": 1.0 + seed % 4})


def _slow_book(seed: int, *, margin_check: str, syms: tuple[str, ...],
               collateral: dict[str, float], gaps: bool = False,
               tiers: dict[str, object] | None = None,
               size: float | None = None) -> BacktestResult:
    # the former quiet-stretch test's book: 600 hourly bars, trades rarely
    rng = np.random.default_rng(seed)
    n = 600
    data = {}
    for k, sym in enumerate(syms):
        start = {"BTC": 50_000.0, "ETH": 2_500.0}[sym[:3]]
        crash = float(rng.choice([0.7, 0.8, 1.25]))
        data[sym] = bars(np.random.default_rng(seed * 10 + k), n, start,
                         int(rng.integers(50, n - 10)), crash, mark=bool(k % 2))
        if gaps and k == 1:
            data[sym] = data[sym][np.arange(n) % 7 != 3]  # missing bars: feeds not in step
    insts = {s: instrument_from_symbol(s) for s in syms}
    return backtester.run(SlowTrader, data=data, instruments=insts, funding="zero",
                          collateral=collateral, margin_check=margin_check, slippage_bps=2,
                          profile="bybit",
                          tiers=tiers, params={"seed": seed, "size": size or 1.0 + seed % 4})


def _demo(root: Path) -> dict[str, BacktestResult]:
    r = backtester.run("strategies.hedged_pair:HedgedPair", dataset="sample",
                       datasets_root=root, compare_margin_modes=True)
    out = {"cross": r}
    out.update(r.meta.get("alternatives", {}))
    return out


def _strategy(name: str) -> Callable[[Path], dict[str, BacktestResult]]:
    def run(root: Path) -> dict[str, BacktestResult]:
        return {"run": backtester.run(str(REPO / "strategies" / f"{name}.py"), dataset="sample",
                                      datasets_root=root)}
    return run


_POOLED = {"binance-usdm": {"USDT": 2_000.0, "USDC": 500.0},
           "binance-coinm": {"USDT": 2_000.0, "BTC": 0.05},
           "deribit": {"USDT": 3_000.0}}


def _cases() -> dict[str, Callable[[Path], dict[str, BacktestResult]]]:
    cases: dict[str, Callable[[Path], dict[str, BacktestResult]]] = {"demo": _demo}
    for name in STRATEGIES:
        cases[f"strategy-{name}"] = _strategy(name)
    for seed in range(8):
        coll = {"USDT": 3_000.0} if seed % 2 else {"USDT": 2_000.0, "BTC": 0.05}
        for check in ("intrabar", "close"):
            cases[f"random-{check}-{seed}"] = (
                lambda root, s=seed, c=check, k=coll: {"run": _random_book(
                    s, margin_check=c, collateral=k)})
    for profile, coll in _POOLED.items():
        for seed in range(2):
            cases[f"random-{profile}-{seed}"] = (
                lambda root, s=seed, p=profile, k=coll: {"run": _random_book(
                    s, margin_check="intrabar", collateral=k, profile=p)})
    for seed in range(6):
        syms = LINEAR + (("BTC/USD:BTC",) if seed % 3 == 2 else ())
        coll = ({"USDT": 1_000.0 + 100 * seed} if seed % 3 != 1
                else {"USDT": 1_100.0, "USDC": 100.0})
        for check in ("intrabar", "close"):
            cases[f"slow-{check}-{seed}"] = (
                lambda root, s=seed, c=check, y=syms, k=coll: {"run": _slow_book(
                    s, margin_check=c, syms=y, collateral=k)})
    for seed in range(3):
        cases[f"slow-gaps-{seed}"] = (
            lambda root, s=seed: {"run": _slow_book(
                s, margin_check="intrabar", syms=LINEAR,
                collateral={"USDT": 1_000.0 + 100 * s}, gaps=True)})
    return cases


CASES = _cases()

#: cases that read the recorded exchange data in ../shared/data
SHARED_CASES = tuple(f"slow-tiers-{seed}" for seed in range(3))


def shared_case(name: str, shared: Path) -> dict[str, BacktestResult]:
    """Run a case of :data:`SHARED_CASES`: the slow book on Binance's real tier table."""
    seed = int(name.rsplit("-", 1)[1])
    table = json.loads((shared / "exchange" / "binance_leverage_tiers.json").read_text())
    return {"run": _slow_book(seed, margin_check="intrabar", syms=LINEAR,
                              collateral={"USDT": 20_000.0 + 5_000 * seed},
                              tiers={s: table[s] for s in LINEAR}, size=20.0)}
