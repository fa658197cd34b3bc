"""Time our engine on the benchmark workloads (issue 2, "Speed").

What is timed
-------------
* ``step_s`` — one call of ``backtester.run(...)``: building the feed from the DataFrames
  (validation, alignment), the bar loop (``Engine.run``: fills at next open, fees, journal,
  margin when positions exist, recording) and collecting the results (DataFrames, metrics).
  Data generation and imports are excluded. ``cpu_s`` is the same step in process CPU time
  (robust when other processes share the machine). This is the counterpart of backtesting.py's
  ``bt.run()`` (which also prepares its data and computes its stats).
* ``loop_s`` — ``Engine.run`` alone (the bar loop), measured by wrapping it.
* ``process_s`` — the whole child process (interpreter start, imports, data generation, run),
  measured by the parent with ``--all``.
* ``peak_rss_mib`` — ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the process;
  ``--tracemalloc`` adds the tracemalloc peak of the timed step (slower; not for timing).

Usage::

    PYTHONPATH=$PWD python benchmarks/run_ours.py --workload W1 [--margin-check close]
    PYTHONPATH=$PWD python benchmarks/run_ours.py --all --json    # one child process each
    PYTHONPATH=$PWD python benchmarks/run_ours.py --workload W1 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads


def run_one(name: str, *, margin_check: str, use_tracemalloc: bool = False,
            profile: bool = False, wake: bool = False,
            exact_margin: bool = False) -> dict[str, Any]:
    """Run workload ``name`` once on our engine and return the measurements."""
    import backtester
    from backtester.engine import Engine
    from backtester.margin.state import MarginEngine

    # --exact-margin: evaluate the margin one step per kernel call (blocks of one), for
    # comparison with the adaptive blocks
    if exact_margin:
        MarginEngine.block_min = MarginEngine.block_max = 1  # type: ignore[misc]

    w = workloads.WORKLOADS[name]
    data = workloads.workload_data(w)
    insts = workloads.our_instruments(list(data))
    strat = workloads.NoOp if w.strategy == "noop" else workloads.SmaReversal
    loop: dict[str, float] = {}
    orig_run = Engine.run

    def timed_run(self: Engine) -> None:
        t0 = time.perf_counter()
        orig_run(self)
        loop["s"] = time.perf_counter() - t0

    Engine.run = timed_run  # type: ignore[method-assign]
    kwargs: dict[str, Any] = {"data": data, "instruments": insts, "funding": "zero",
                              "collateral": {"USDT": 1_000_000}, "slippage_bps": 0,
                              "margin_check": margin_check}
    if wake and w.strategy == "sma":
        kwargs["params"] = {"wake": True}
    prof = None
    if use_tracemalloc:
        import tracemalloc

        tracemalloc.start()
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    c0 = time.process_time()
    res = backtester.run(strat, **kwargs)
    cpu = time.process_time() - c0
    step = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
    tm_peak = None
    if use_tracemalloc:
        import tracemalloc

        tm_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    Engine.run = orig_run  # type: ignore[method-assign]
    if prof is not None:
        import pstats

        st = pstats.Stats(prof, stream=sys.stderr)
        st.sort_stats("tottime").print_stats(25)
        st.sort_stats("cumulative").print_stats(25)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    label = "backtester" + (" (wake_on)" if wake else "") + (
        " (exact margin every bar)" if exact_margin else "") + (
        f" (margin {margin_check})" if margin_check != "intrabar" else "")
    return {"framework": label, "workload": name, "margin_check": margin_check,
            "instrument_bars": w.instrument_bars, "step_s": step, "loop_s": loop.get("s"),
            "bars_per_s": w.instrument_bars / step, "cpu_s": cpu,
            "cpu_bars_per_s": w.instrument_bars / cpu,
            "loop_bars_per_s": w.instrument_bars / loop["s"] if loop.get("s") else None,
            "peak_rss_mib": rss, "tracemalloc_peak_mib": tm_peak, "trades": len(res.fills),
            "fees": res.metrics.get("fees_paid"),
            "final_equity": float(res.equity["equity"].iloc[-1])}


def run_all(names: list[str], margin_check: str, *, wake: bool = False,
            exact_margin: bool = False) -> list[dict[str, Any]]:
    """Run each workload in its own child process (for whole-process time and peak RSS)."""
    rows = []
    for name in names:
        if wake and workloads.WORKLOADS[name].strategy != "sma":
            continue
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--workload", name, "--json",
                              "--margin-check", margin_check, *(["--wake"] if wake else []),
                              *(["--exact-margin"] if exact_margin else [])],
                             capture_output=True, text=True, check=True, env=os.environ.copy())
        elapsed = time.perf_counter() - t0
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["process_s"] = elapsed
        rows.append(row)
    return rows


def main() -> None:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=sorted(workloads.WORKLOADS), default="W1")
    ap.add_argument("--all", action="store_true", help="W0, W1, W2 each in a child process")
    ap.add_argument("--margin-check", choices=("intrabar", "close"), default="intrabar")
    ap.add_argument("--wake", action="store_true",
                    help="the SMA strategy declares its crossovers with ctx.wake_on (on_bar "
                         "runs only there; same trades)")
    ap.add_argument("--exact-margin", action="store_true",
                    help="evaluate the margin one step per kernel call (blocks of one)")
    ap.add_argument("--json", action="store_true", help="print JSON lines only")
    ap.add_argument("--tracemalloc", action="store_true", help="also report tracemalloc peak")
    ap.add_argument("--profile", action="store_true", help="cProfile the run (to stderr)")
    a = ap.parse_args()
    if a.all:
        rows = run_all(sorted(workloads.WORKLOADS), a.margin_check, wake=a.wake,
                       exact_margin=a.exact_margin)
    else:
        rows = [run_one(a.workload, margin_check=a.margin_check,
                        use_tracemalloc=a.tracemalloc, profile=a.profile, wake=a.wake,
                        exact_margin=a.exact_margin)]
    for r in rows:
        if a.json:
            print(json.dumps(r))
        else:
            print(f"{r['framework']} {r['workload']} margin_check={r['margin_check']}: "
                  f"step {r['step_s']:.2f} s ({r['bars_per_s']:,.0f} instrument-bars/s), "
                  f"loop {r['loop_s']:.2f} s ({r['loop_bars_per_s']:,.0f}/s), "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB"
                  + (f", tracemalloc peak {r['tracemalloc_peak_mib']:.0f} MiB"
                     if r.get("tracemalloc_peak_mib") is not None else "")
                  + (f", process {r['process_s']:.2f} s" if "process_s" in r else "")
                  + f", trades {r['trades']}, fees {r['fees']:.2f}")


if __name__ == "__main__":
    main()
