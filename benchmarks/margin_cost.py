"""Margin cost per bar: the per-bar margin check timed on a steady book (issue 2, "Speed").

Runs a short W1 (1 instrument) and W2 (10 instruments) SMA book so that one position per
instrument is open, then times at the last bar: the quiet-stretch check the loop makes first
(``QuietStretch.holds``: marks against bands, ``backtester.margin.quiet``), and the exact
evaluation ``MarginEngine.check`` (fused pass, and the general unfused evaluation for
comparison), margin ``intrabar`` (default) and ``close``. "no positions" is the loop's cost when
the account holds nothing (no check). CPU time, microseconds per call.

Usage::

    PYTHONPATH=$PWD python benchmarks/margin_cost.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads


def _engine(n_instruments: int, margin_check: str, *, fast: bool = True) -> Any:
    import backtester
    from backtester.engine import Engine
    from backtester.margin.state import MarginEngine

    w = workloads.Workload(name="M", strategy="sma", n_instruments=n_instruments, n_bars=2_000)
    data = workloads.workload_data(w)
    holder: dict[str, Any] = {}
    orig = Engine.run

    def run(self: Engine) -> None:
        orig(self)
        holder["e"] = self

    Engine.run = run  # type: ignore[method-assign]
    old = MarginEngine._fast_path
    MarginEngine._fast_path = fast
    try:
        backtester.run(workloads.SmaReversal, data=data,
                       instruments=workloads.our_instruments(list(data)), funding="zero",
                       collateral={"USDT": 1_000_000}, slippage_bps=0, margin_check=margin_check)
    finally:
        Engine.run = orig  # type: ignore[method-assign]
        MarginEngine._fast_path = old
    e = holder["e"]
    e.orders.clear()  # as in the loop: market orders have filled before the check
    return e


def per_call(fn: Any, n: int = 50_000) -> float:
    """CPU microseconds per call of ``fn`` (best of 3 rounds of ``n``)."""
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - c0)
    return best / n * 1e6


def main() -> None:
    print("| book | margin_check | path | CPU us/bar |")
    print("|---|---|---|---|")
    from backtester.margin.quiet import QuietStretch

    for k in (1, 10):
        for mc in ("intrabar", "close"):
            e = _engine(k, mc)
            e.margin.quiet = q = QuietStretch(e.margin, enabled=True)
            assert q.holds(), "the steady book should be quiet"
            us = per_call(q.holds)
            print(f"| {k} position{'s' if k > 1 else ''} | {mc} | quiet (bands) | {us:.2f} |")
            for fast in (True, False):
                e = _engine(k, mc, fast=fast)
                us = per_call(lambda e=e: e.margin.check(e.now_ms))
                print(f"| {k} position{'s' if k > 1 else ''} | {mc} | "
                      f"{'exact, fused' if fast else 'exact, general'} | {us:.2f} |")
    print("| no positions | any | - | 0 (not called) |")


if __name__ == "__main__":
    main()
