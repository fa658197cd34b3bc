"""Run W1 and W2 on backtesting.py (and backtrader where installed) in the peers' virtualenv.

What is timed
-------------
* backtesting.py: ``bt.run()`` only (``Backtest(...)`` construction, data generation and
  imports excluded), ``trade_on_close=True``, ``commission=0.0005``. It has no shared
  account, so W2 is 10 separate single-asset backtests whose ``bt.run()`` times are summed.
* backtrader: ``cerebro.run()`` only; cheat-on-close (fill at the signal bar's close),
  commission 0.0005, ``stdstats=False``; W2 is one Cerebro with 10 data feeds (one account).
* ``cpu_s``: the same step in process CPU time.
* ``process_s``: the whole child process; ``peak_rss_mib``: its ``ru_maxrss``.

Usage (from the repository root; run_all.sh does this)::

    benchmarks/.venv-peers/bin/python benchmarks/run_peers.py --all --json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads

PEER_WORKLOADS = ("W1", "W2")


def _bt_frame(df: Any) -> Any:
    out = df.set_index("ts")[["open", "high", "low", "close", "volume"]]
    out.columns = ["Open", "High", "Low", "Close", "Volume"]
    return out


def run_backtesting(name: str) -> dict[str, Any]:
    """backtesting.py: one ``Backtest`` per instrument, ``bt.run()`` timed and summed."""
    from backtesting import Backtest, Strategy

    class SmaReversal(Strategy):
        def init(self) -> None:
            self.fast = self.I(workloads.sma, self.data.Close, workloads.FAST)
            self.slow = self.I(workloads.sma, self.data.Close, workloads.SLOW)
            self.side = 0

        def next(self) -> None:
            fv = self.fast[-1]
            sv = self.slow[-1]
            if sv != sv:
                return
            want = 1 if fv > sv else -1
            if want != self.side:
                self.position.close()
                if want > 0:
                    self.buy(size=int(workloads.QTY))
                else:
                    self.sell(size=int(workloads.QTY))
                self.side = want

    w = workloads.WORKLOADS[name]
    total = 0.0
    cpu = 0.0
    trades = 0
    import warnings

    for df in workloads.workload_data(w).values():
        bt = Backtest(_bt_frame(df), SmaReversal, cash=10_000_000, commission=workloads.FEE_RATE,
                      trade_on_close=True, finalize_trades=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            c0 = time.process_time()
            stats = bt.run()
            cpu += time.process_time() - c0
            total += time.perf_counter() - t0
        trades += int(stats["# Trades"])
    return {"framework": "backtesting.py", "workload": name, "instrument_bars": w.instrument_bars,
            "step_s": total, "bars_per_s": w.instrument_bars / total, "cpu_s": cpu,
            "cpu_bars_per_s": w.instrument_bars / cpu, "trades": trades}


def run_backtrader(name: str) -> dict[str, Any]:
    """backtrader: one Cerebro with all feeds, ``cerebro.run()`` timed."""
    import backtrader as bt

    class SmaReversal(bt.Strategy):
        def __init__(self) -> None:
            self.legs = []
            for d in self.datas:
                f = bt.indicators.SimpleMovingAverage(d.close, period=workloads.FAST)
                s = bt.indicators.SimpleMovingAverage(d.close, period=workloads.SLOW)
                self.legs.append([d, f, s, 0])

        def next(self) -> None:
            for leg in self.legs:
                d, f, s, side = leg
                want = 1 if f[0] > s[0] else -1
                if want != side:
                    self.order_target_size(data=d, target=want * workloads.QTY)
                    leg[3] = want

    w = workloads.WORKLOADS[name]
    cerebro = bt.Cerebro(stdstats=False)
    for sym, df in workloads.workload_data(w).items():
        feed = bt.feeds.PandasData(dataname=_bt_frame(df).tz_localize(None), name=sym)
        cerebro.adddata(feed)
    cerebro.addstrategy(SmaReversal)
    cerebro.broker.setcash(10_000_000)
    cerebro.broker.setcommission(commission=workloads.FEE_RATE)
    cerebro.broker.set_coc(True)
    t0 = time.perf_counter()
    c0 = time.process_time()
    res = cerebro.run()
    cpu = time.process_time() - c0
    step = time.perf_counter() - t0
    del res
    return {"framework": "backtrader", "workload": name, "instrument_bars": w.instrument_bars,
            "step_s": step, "bars_per_s": w.instrument_bars / step, "cpu_s": cpu,
            "cpu_bars_per_s": w.instrument_bars / cpu, "trades": "-"}


RUNNERS = {"backtesting.py": run_backtesting, "backtrader": run_backtrader}


def main() -> None:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", choices=sorted(RUNNERS), default="backtesting.py")
    ap.add_argument("--workload", choices=PEER_WORKLOADS, default="W1")
    ap.add_argument("--all", action="store_true", help="every framework installed × W1, W2")
    ap.add_argument("--json", action="store_true", help="print JSON lines only")
    a = ap.parse_args()
    rows = []
    if a.all:
        for fw in RUNNERS:
            mod = "backtesting" if fw == "backtesting.py" else fw
            try:
                __import__(mod)
            except ImportError:
                print(f"# {fw} not installed: skipped", file=sys.stderr)
                continue
            for name in PEER_WORKLOADS:
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, __file__, "--framework", fw, "--workload",
                                      name, "--json"], capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["process_s"] = time.perf_counter() - t0
                rows.append(row)
    else:
        row = RUNNERS[a.framework](a.workload)
        row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(row)
    for r in rows:
        print(json.dumps(r) if a.json else
              f"{r['framework']} {r['workload']}: {r['step_s']:.2f} s, "
              f"{r['bars_per_s']:,.0f} instrument-bars/s, peak RSS {r['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
