"""Time our engine on one benchmark workload (issues 2, 3 and 17, "Speed").

What is timed
-------------
* ``step_s`` — one call of ``backtester.run(...)``: building the feed from the DataFrames
  (validation, alignment), the bar loop (``Engine.run``: fills at next open, fees, journal,
  margin checked on every bar while positions exist, recording) and collecting the results
  (every DataFrame and metric). Data generation and imports are excluded. ``cpu_s`` is the
  same step in process CPU time (robust when other processes share the machine). This is the
  counterpart of backtesting.py's ``bt.run()`` (which also prepares its data and computes its
  stats). W4 times ``backtester.run("strategies/delta_hedged_strangle.py", dataset="sample",
  datasets_root=...)`` with the sample dataset generated beforehand (not timed).
* ``loop_s`` — ``Engine.run`` alone (the bar loop), measured by wrapping it.
* ``process_s`` — the whole child process (interpreter start, imports, data generation, run),
  measured by the parent (``suite.py``, ``--all``).
* ``peak_rss_mib`` — ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the process (includes the
  interpreter, numpy, pandas, numba and the generated input data); ``--tracemalloc`` adds the
  tracemalloc peak of the timed step (slower; not for timing).

Checks (after the timed step, not timed): ``perp_digest`` hashes the perps' fills and position
rows (for W1h/W2h equal to W1/W2's: the hedge leaves the perps' trades alone), ``digest`` the
whole result (fills, positions, equity; equal across margin modes that must agree, e.g. the
default and ``--exact-margin``), ``check`` is ``ok`` or what is wrong (W1h/W2h: the futures'
short opened once at the second bar and held at every later bar).

The code measured is the ``backtester`` on ``PYTHONPATH`` (``code_root`` in the output): the
same script times the baseline checkout with that checkout's interpreter.

Usage::

    PYTHONPATH=$PWD python benchmarks/run_ours.py --workload W1 [--margin-check close]
    PYTHONPATH=$PWD python benchmarks/run_ours.py --workload W1h --exact-margin
    PYTHONPATH=$PWD python benchmarks/run_ours.py --workload W4 --datasets /tmp/ds
    PYTHONPATH=$PWD python benchmarks/run_ours.py --workload W1 --breakdown   # µs per bar
    PYTHONPATH=$PWD python benchmarks/run_ours.py --all --json    # one child process each
    PYTHONPATH=$PWD python benchmarks/run_ours.py --workload W1 --profile 2> prof.txt
"""

from __future__ import annotations

import argparse
import hashlib
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

HERE = Path(__file__).resolve().parent

MODES = ("default", "close", "wake", "exact")


def code_info() -> dict[str, Any]:
    """Where the measured ``backtester`` comes from: its root and git commit (if any)."""
    import backtester

    root = Path(backtester.__file__).resolve().parents[1]
    commit = None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False, timeout=10)
        if out.returncode == 0:
            commit = out.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True, text=True,
                                   check=False, timeout=30).stdout.strip()
            commit += "+dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        pass
    if commit is None and (root / "COMMIT").is_file():  # an extracted archive (run_all.sh)
        commit = (root / "COMMIT").read_text().strip()
    return {"code_root": str(root), "commit": commit}


def _maxrss_mib() -> float:
    # the process's peak resident set so far (ru_maxrss is in KiB on Linux)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hash_frame(h: Any, df: Any, columns: list[str]) -> None:
    import numpy as np

    for col in columns:
        s = df[col]
        if str(s.dtype).startswith("datetime64"):
            arr = s.dt.as_unit("ms").astype("int64").to_numpy()
        elif s.dtype.kind in "fiub":
            arr = np.ascontiguousarray(s.to_numpy())
        else:
            h.update("\x1f".join(map(str, s.tolist())).encode())
            continue
        h.update(col.encode())
        h.update(arr.tobytes())


def result_checks(w: workloads.Workload, res: Any) -> dict[str, Any]:
    """Digests of the result and the hedged workloads' check (see the module docstring)."""
    fills = res.fills
    pos = res.positions
    perps = [s for s in workloads.symbols_for(w.n_instruments)] if w.strategy == "sma" else []
    h_all = hashlib.sha256()
    _hash_frame(h_all, fills, [c for c in ("ts", "symbol", "qty", "price", "fee",
                                           "realized_pnl") if c in fills])
    _hash_frame(h_all, pos, [c for c in pos.columns])
    _hash_frame(h_all, res.equity.reset_index(), ["ts", *res.equity.columns])
    out: dict[str, Any] = {"digest": h_all.hexdigest()[:16], "check": "ok"}
    if perps:
        h = hashlib.sha256()
        pf = fills[fills["symbol"].isin(perps)]
        pp = pos[pos["symbol"].isin(perps)]
        _hash_frame(h, pf, ["ts", "symbol", "qty", "price", "fee", "realized_pnl"])
        _hash_frame(h, pp, ["ts", "symbol", "qty", "entry_price", "mark", "unrealized_pnl"])
        out["perp_digest"] = h.hexdigest()[:16]
        out["perp_trades"] = len(pf)
    if w.hedged:
        out["check"] = workloads.hedge_check(w, fills, pos, res.equity.index)
    return out


def run_one(name: str, *, margin_check: str = "intrabar", mode: str = "default",
            use_tracemalloc: bool = False, profile: bool = False, breakdown: bool = False,
            n_bars: int | None = None, datasets: str | None = None) -> dict[str, Any]:
    """Run workload ``name`` once on our engine and return the measurements."""
    import backtester
    from backtester.engine import Engine
    from backtester.margin.state import MarginEngine

    rss_import = _maxrss_mib()  # interpreter, numpy, pandas, backtester and what it imports

    if mode == "close":
        margin_check = "close"
    # exact: the margin evaluated one step per kernel call (blocks of one), for comparison
    # with the adaptive blocks (on the baseline code: quiet stretches off)
    if mode == "exact":
        if hasattr(MarginEngine, "block_min"):
            MarginEngine.block_min = MarginEngine.block_max = 1  # type: ignore[misc]
        elif hasattr(MarginEngine, "_quiet_path"):
            MarginEngine._quiet_path = False  # type: ignore[attr-defined]
        else:
            msg = "--exact-margin: this checkout's MarginEngine has neither blocks nor quiet path"
            raise SystemExit(f"error: {msg}")

    w = workloads.WORKLOADS[name]
    kwargs: dict[str, Any]
    strat: Any
    if w.strategy == "sample":
        from backtester.data.sample import ensure_sample

        if n_bars is not None:
            raise SystemExit("error: --n-bars does not apply to W4 (the sample dataset's year)")
        root = Path(datasets or HERE / "results" / "datasets")
        ensure_sample(root)  # generated once per folder, not timed
        strat = str(Path(backtester.__file__).resolve().parents[1] / "strategies"
                    / workloads.W4_STRATEGY)
        kwargs = {"dataset": "sample", "datasets_root": str(root)}
        if margin_check != "intrabar":
            kwargs["margin_check"] = margin_check
        if mode == "wake":
            raise SystemExit("error: W4 has no wake_on variant")
    else:
        data = workloads.workload_data(w, n_bars)
        insts = workloads.our_instruments(list(data))
        strat = (workloads.NoOp if w.strategy == "noop" else
                 workloads.HedgedSmaReversal if w.hedged else workloads.SmaReversal)
        kwargs = {"data": data, "instruments": insts, "funding": "zero",
                  "collateral": {"USDT": 1_000_000}, "slippage_bps": 0,
                  "margin_check": margin_check}
        if mode == "wake":
            if w.strategy != "sma":
                raise SystemExit(f"error: {name} has no wake_on variant")
            kwargs["params"] = {"wake": True}
    bars = n_bars if n_bars is not None else w.n_bars
    loop: dict[str, float] = {}
    orig_run = Engine.run

    def timed_run(self: Engine) -> None:
        t0 = time.perf_counter()
        c0 = time.process_time()
        orig_run(self)
        loop["cpu"] = time.process_time() - c0
        loop["s"] = time.perf_counter() - t0

    Engine.run = timed_run  # type: ignore[method-assign]
    bd = None
    if breakdown:
        import breakdown as bdmod

        overhead = bdmod.calibrate()
        if isinstance(strat, str):  # W4: load the class once so that its hooks can be wrapped
            strat = backtester.load_strategy(strat)
        bd = bdmod.Breakdown()
        bd.install(strat)
    prof = None
    if use_tracemalloc:
        import tracemalloc

        tracemalloc.start()
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    rss_before = _maxrss_mib()  # + the input data (generated or, W4, nothing yet)
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
    if bd is not None:
        bd.uninstall()
    Engine.run = orig_run  # type: ignore[method-assign]
    if prof is not None:
        import pstats

        st = pstats.Stats(prof, stream=sys.stderr)
        st.sort_stats("tottime").print_stats(25)
        st.sort_stats("cumulative").print_stats(25)
    rss = _maxrss_mib()
    label = "backtester" + {"default": "", "close": " (margin close)", "wake": " (wake_on)",
                            "exact": " (exact margin every bar)"}[mode]
    ibars = w.instrument_bars if n_bars is None else w.instrument_bars // w.n_bars * bars
    pbars = w.perp_bars if n_bars is None else w.n_instruments * bars
    row: dict[str, Any] = {
        "framework": label, "workload": name, "mode": mode, "margin_check": margin_check,
        "bars": bars, "instrument_bars": ibars, "perp_bars": pbars, "step_s": step,
        "loop_s": loop.get("s"), "loop_cpu_s": loop.get("cpu"), "bars_per_s": ibars / step,
        "cpu_s": cpu,
        "cpu_bars_per_s": ibars / cpu,
        "loop_bars_per_s": ibars / loop["s"] if loop.get("s") else None,
        "peak_rss_mib": rss, "rss_after_imports_mib": rss_import,
        "rss_before_step_mib": rss_before, "tracemalloc_peak_mib": tm_peak,
        "trades": len(res.fills),
        "fees": res.metrics.get("fees_paid"),
        "final_equity": float(res.equity["equity"].iloc[-1]), **code_info(),
        **result_checks(w, res)}
    if bd is not None:
        row["breakdown"] = bd.report(step, bars, overhead, cpu_s=cpu)
    return row


def run_all(names: list[str], mode: str) -> list[dict[str, Any]]:
    """Run each workload in its own child process (for whole-process time and peak RSS)."""
    rows = []
    for name in names:
        if mode == "wake" and workloads.WORKLOADS[name].strategy != "sma":
            continue
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--workload", name, "--json",
                              "--mode", mode], capture_output=True, text=True, check=True,
                             env=os.environ.copy())
        elapsed = time.perf_counter() - t0
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["process_s"] = elapsed
        rows.append(row)
    return rows


def _print_breakdown(r: dict[str, Any]) -> None:
    b = r["breakdown"]
    print(f"breakdown of {r['workload']} ({b['n_bars']:,} bars): instrumented step "
          f"{b['instrumented_s']:.2f} s wall / {b['cpu_s']:.2f} s CPU, wrapper overhead "
          f"{b['overhead_inner_ns']:.0f}+{b['overhead_outer_ns']:.0f} ns per call, "
          f"{b['overhead_s']:.3f} s in all (subtracted)")
    print(f"  {'':<11} {'µs/bar':>8} {'× CPU/wall':>10} {'raw':>8} {'calls':>9}")
    for cat, us in b["us_per_bar"].items():
        print(f"  {cat:<11} {us:8.3f} {b['us_per_bar_cpu'][cat]:10.3f} "
              f"{b['raw_us_per_bar'][cat]:8.3f} {b['calls'][cat]:>9,}")
    print(f"  {'total':<11} {sum(b['us_per_bar'].values()):8.3f} "
          f"{sum(b['us_per_bar_cpu'].values()):10.3f}")
    if b["missing"]:
        print(f"  not found (not attributed): {', '.join(b['missing'])}")


def main() -> None:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=sorted(workloads.WORKLOADS), default="W1")
    ap.add_argument("--all", action="store_true",
                    help="W0, W1, W2, W1h, W2h each in a child process")
    ap.add_argument("--mode", choices=MODES, default="default",
                    help="default (margin intrabar), close (margin at the close), wake "
                         "(ctx.wake_on), exact (margin blocks of one step)")
    ap.add_argument("--margin-check", choices=("intrabar", "close"), default=None,
                    help="same as --mode close when 'close'")
    ap.add_argument("--wake", action="store_true", help="same as --mode wake")
    ap.add_argument("--exact-margin", action="store_true", help="same as --mode exact")
    ap.add_argument("--n-bars", type=int, default=None,
                    help="bars per instrument instead of the workload's (smoke tests)")
    ap.add_argument("--datasets", default=None,
                    help="W4: datasets root holding (or to hold) the sample dataset "
                         "(default benchmarks/results/datasets)")
    ap.add_argument("--json", action="store_true", help="print JSON lines only")
    ap.add_argument("--tracemalloc", action="store_true", help="also report tracemalloc peak")
    ap.add_argument("--profile", action="store_true", help="cProfile the run (to stderr)")
    ap.add_argument("--breakdown", action="store_true",
                    help="time the engine's parts per bar (instrumented; see breakdown.py)")
    a = ap.parse_args()
    mode = a.mode
    for flag, m in ((a.margin_check == "close", "close"), (a.wake, "wake"),
                    (a.exact_margin, "exact")):
        if flag:
            if mode not in ("default", m):
                raise SystemExit(f"error: --mode {mode} conflicts with the {m} flag")
            mode = m
    if a.all:
        rows = run_all(["W0", "W1", "W2", "W1h", "W2h"], mode)
    else:
        rows = [run_one(a.workload, mode=mode, use_tracemalloc=a.tracemalloc,
                        profile=a.profile, breakdown=a.breakdown, n_bars=a.n_bars,
                        datasets=a.datasets)]
    for r in rows:
        if a.json:
            print(json.dumps(r))
            continue
        loop = (f"loop {r['loop_s']:.2f} s ({r['loop_bars_per_s']:,.0f}/s), "
                if r.get("loop_s") else "")
        print(f"{r['framework']} {r['workload']} margin_check={r['margin_check']}: "
              f"step {r['step_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU "
              f"({r['bars_per_s']:,.0f} instrument-bars/s), {loop}"
              f"peak RSS {r['peak_rss_mib']:.0f} MiB"
              + (f", tracemalloc peak {r['tracemalloc_peak_mib']:.0f} MiB"
                 if r.get("tracemalloc_peak_mib") is not None else "")
              + (f", process {r['process_s']:.2f} s" if "process_s" in r else "")
              + f", trades {r['trades']}, fees {r['fees'] or 0:.2f}, check {r['check']}, "
              f"digest {r['digest']}, code {r['commit']} at {r['code_root']}")
        if "breakdown" in r:
            _print_breakdown(r)


if __name__ == "__main__":
    main()
