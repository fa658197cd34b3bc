"""The whole speed benchmark (issue 17): every job, ``--runs`` times, alternating, then the tables.

``run_all.sh`` prepares the interpreters and calls this; see ``benchmarks/README.md``.

Jobs (each a child process; the measured step is timed inside it, see ``run_ours.py`` and
``run_peers.py``):

* ours (the working tree): W0, W1, W2, W1h, W2h in four modes — ``default`` (margin checked
  intrabar on every bar), ``close``, ``wake`` (``ctx.wake_on``), ``exact`` (margin blocks of one
  step) — and W4;
* the baseline checkout (``--baseline``, before this wave): W1, W2, W1h, W2h, W4 (default mode);
* backtesting.py W1, W2 (and backtrader W1, W2 for the first ``--backtrader-runs`` rounds);
* ``--breakdown``: the instrumented runs (``run_ours.py --breakdown``), not used for speed;
* ``--demo-runs``: ``first_demo.py`` for the working tree and the baseline (after the rounds).

One round runs every job once, peers and ours alternating per workload (backtesting.py W1, ours
W1 in each mode, baseline W1, backtesting.py W2, ...), so that a change of the machine's load
falls on both; the figures are the medians over the rounds. Every run's raw row is appended to
``<out>/runs.jsonl``; ``<out>/summary.json`` and ``<out>/table.md`` hold the medians and tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

OUR_WORKLOADS = ("W0", "W1", "W2", "W1h", "W2h")
BASELINE_WORKLOADS = ("W1", "W2", "W1h", "W2h")
MODES = ("default", "close", "wake", "exact")
#: target workload → (the backtesting.py workload it is compared with, required ratio)
SPEED_TARGETS = {"W1": ("W1", 3.0), "W1h": ("W1", 2.5), "W2h": ("W2", 2.5)}
W4_TARGET = 5.0
RSS_TARGET_MIB = 300.0


@dataclass
class Job:
    """One child process of a round."""

    key: str  # e.g. "now/W1/default", "baseline/W4/default", "backtesting.py/W1"
    argv: list[str]
    env: dict[str, str]
    rounds: int  # how many rounds run it
    meta: dict[str, Any] = field(default_factory=dict)


def _env(pythonpath: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def build_jobs(a: argparse.Namespace) -> list[Job]:
    """Every job of a round, in the order they alternate."""
    ours = str(HERE / "run_ours.py")
    peers = str(HERE / "run_peers.py")
    now_env = _env(str(ROOT))
    base_env = _env(str(a.baseline)) if a.baseline else None
    jobs: list[Job] = []

    def our(code: str, wl: str, mode: str, *extra: str, rounds: int | None = None) -> None:
        py, env = (a.python_now, now_env) if code == "now" else (a.python_baseline, base_env)
        assert env is not None
        argv = [py, ours, "--workload", wl, "--mode", mode, "--json", *extra]
        if wl == "W4":
            argv += ["--datasets", str(a.out / f"datasets-{code}")]
        jobs.append(Job(f"{code}/{wl}/{mode}" + ("/breakdown" if "--breakdown" in extra else ""),
                        argv, env, a.runs if rounds is None else rounds,
                        {"code": code, "workload": wl, "mode": mode}))

    def peer(fw: str, wl: str, rounds: int) -> None:
        if rounds > 0:
            jobs.append(Job(f"{fw}/{wl}", [a.python_peers, peers, "--framework", fw,
                                           "--workload", wl, "--json"], _env(None), rounds,
                            {"code": fw, "workload": wl, "mode": "default"}))

    for wl in OUR_WORKLOADS:
        if wl in ("W1", "W2") and a.python_peers:
            peer("backtesting.py", wl, a.runs)
        for mode in MODES:
            if mode == "wake" and wl == "W0":
                continue
            our("now", wl, mode)
        if wl in ("W1", "W2") and a.python_peers:
            peer("backtrader", wl, a.backtrader_runs)
        if base_env is not None and wl in BASELINE_WORKLOADS:
            our("baseline", wl, "default")
    our("now", "W4", "default")
    if base_env is not None:
        our("baseline", "W4", "default")
    for wl in a.breakdown:
        our("now", wl, "default", "--breakdown", rounds=a.breakdown_runs)
    return jobs


def run_job(job: Job) -> dict[str, Any]:
    """Run ``job`` once: its JSON row plus the child's wall and CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(job.argv, env=job.env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # jobs run one at a time
    process_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (err or out).strip().splitlines()[-5:]
        return {"key": job.key, **job.meta, "error": f"exit {proc.returncode}: "
                + " | ".join(tail)}
    row: dict[str, Any] = json.loads(lines[-1])
    row.update({"key": job.key, **job.meta, "process_s": wall, "process_cpu_s": process_cpu})
    return row


def _median(rows: list[dict[str, Any]], name: str) -> float | None:
    vals = [r[name] for r in rows if isinstance(r.get(name), (int, float))]
    return statistics.median(vals) if vals else None


def summarize(raw: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per job key: the medians of its runs (and their count, spread, errors)."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in raw:
        by_key.setdefault(r["key"], []).append(r)
    out = {}
    for key, rows in by_key.items():
        good = [r for r in rows if "error" not in r]
        s: dict[str, Any] = {"key": key, "runs": len(good),
                             "errors": [r["error"] for r in rows if "error" in r]}
        for k in ("code", "workload", "mode"):
            s[k] = rows[0].get(k)
        if good:
            first = good[0]
            for k in ("framework", "instrument_bars", "perp_bars", "bars", "commit",
                      "code_root"):
                if k in first:
                    s[k] = first[k]
            for k in ("step_s", "cpu_s", "loop_s", "loop_cpu_s", "process_s", "process_cpu_s",
                      "peak_rss_mib", "rss_after_imports_mib", "rss_before_step_mib",
                      "wall_s"):
                s[k] = _median(good, k)
            cpus = [r["cpu_s"] for r in good if isinstance(r.get("cpu_s"), (int, float))]
            if cpus:
                s["cpu_min"], s["cpu_max"] = min(cpus), max(cpus)
            for k in ("trades", "perp_trades", "digest", "perp_digest", "check",
                      "final_equity"):
                vals = {json.dumps(r.get(k)) for r in good}
                s[k] = good[0].get(k) if len(vals) == 1 else f"differs between runs: {vals}"
            if "breakdown" in first:
                cats = first["breakdown"]["us_per_bar_cpu"].keys()
                s["breakdown_us_per_bar_cpu"] = {
                    c: statistics.median(r["breakdown"]["us_per_bar_cpu"][c] for r in good)
                    for c in cats}
                s["breakdown_us_per_bar_wall"] = {
                    c: statistics.median(r["breakdown"]["us_per_bar"][c] for r in good)
                    for c in cats}
                s["breakdown_calls"] = first["breakdown"]["calls"]
                s["breakdown_missing"] = first["breakdown"]["missing"]
                s["breakdown_overhead_s"] = _median([r["breakdown"] for r in good],
                                                    "overhead_s")
                s["breakdown_cpu_scale"] = _median([r["breakdown"] for r in good], "cpu_scale")
        out[key] = s
    return out


# -- tables ---------------------------------------------------------------------------------
def _f(x: Any, fmt: str = ",.2f", none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def _rate(s: dict[str, Any] | None, what: str, clock: str) -> float | None:
    # instrument-bars (what="instrument_bars") or perp bars per second of the step
    if not s or not s.get(clock) or not s.get(what):
        return None
    return float(s[what]) / float(s[clock])


def target_rows(S: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The targets table: what, measured (CPU), measured (wall), required, pass."""
    rows = []
    bt = {wl: S.get(f"backtesting.py/{wl}") for wl in ("W1", "W2")}

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("**pass**" if ok else "**FAIL**")

    for wl, (ref, need) in SPEED_TARGETS.items():
        ours = S.get(f"now/{wl}/default")
        rc = _rate(ours, "perp_bars", "cpu_s")
        rw = _rate(ours, "perp_bars", "step_s")
        bc = _rate(bt[ref], "instrument_bars", "cpu_s")
        bw = _rate(bt[ref], "instrument_bars", "step_s")
        xc = rc / bc if rc and bc else None
        xw = rw / bw if rw and bw else None
        what = (f"{wl} vs backtesting.py {ref}" + (" (perp bars)" if wl != ref else "")
                + ", margin intrabar every bar")
        rows.append([what, f"{_f(xc)}× ({_f(rc, ',.0f')} vs {_f(bc, ',.0f')} bars/s)",
                     f"{_f(xw)}×", f"≥ {need}×", verdict(None if xc is None else xc >= need)])
    now4, base4 = S.get("now/W4/default"), S.get("baseline/W4/default")
    xc = base4["cpu_s"] / now4["cpu_s"] if now4 and base4 and now4.get("cpu_s") \
        and base4.get("cpu_s") else None
    xw = base4["step_s"] / now4["step_s"] if now4 and base4 and now4.get("step_s") \
        and base4.get("step_s") else None
    rows.append(["W4 (delta-hedged strangle, sample year hourly) vs baseline",
                 f"{_f(xc)}× ({_f(now4 and now4.get('cpu_s'))} s vs "
                 f"{_f(base4 and base4.get('cpu_s'))} s)", f"{_f(xw)}×", f"≥ {W4_TARGET:g}×",
                 verdict(None if xc is None else xc >= W4_TARGET)])
    w1 = S.get("now/W1/default")
    rss = w1.get("peak_rss_mib") if w1 else None
    bt_rss = bt["W1"].get("peak_rss_mib") if bt["W1"] else None
    rows.append(["peak RSS on W1 (backtesting.py's beside)",
                 f"{_f(rss, ',.0f')} MiB (backtesting.py {_f(bt_rss, ',.0f')} MiB)", "-",
                 f"≤ {RSS_TARGET_MIB:g} MiB",
                 verdict(None if rss is None else rss <= RSS_TARGET_MIB)])
    dn, db = S.get("demo/now"), S.get("demo/baseline")
    if dn or db:
        c_ok = (dn["cpu_s"] <= db["cpu_s"]) if dn and db and dn.get("cpu_s") \
            and db.get("cpu_s") else None
        rows.append(["first `backtester demo` on a fresh install (compilation included) vs "
                     "baseline",
                     f"{_f(dn and dn.get('cpu_s'))} s vs {_f(db and db.get('cpu_s'))} s CPU",
                     f"{_f(dn and dn.get('wall_s'))} s vs {_f(db and db.get('wall_s'))} s",
                     "not slower", verdict(c_ok)])
    rows.extend(exact_rows(S))
    return rows


def exact_rows(S: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The exactness checks as target rows."""
    out = []

    def get(key: str, k: str) -> Any:
        return S.get(key, {}).get(k)

    checks: list[tuple[str, bool | None, str]] = []
    for wl in ("W1", "W2"):
        a, b = get(f"now/{wl}/default", "trades"), get(f"backtesting.py/{wl}", "trades")
        checks.append((f"{wl}: trades equal backtesting.py's", None if a is None or b is None
                       else a == b, f"{a} vs {b}"))
    for wl, base in (("W1h", "W1"), ("W2h", "W2")):
        a, b = get(f"now/{wl}/default", "perp_digest"), get(f"now/{base}/default",
                                                            "perp_digest")
        checks.append((f"{wl}: perps' fills and positions identical to {base}'s",
                       None if a is None or b is None else a == b,
                       f"{get(f'now/{wl}/default', 'perp_trades')} perp trades"))
        chk = get(f"now/{wl}/default", "check")
        checks.append((f"{wl}: futures' short opened at the second bar and held to the end",
                       None if chk is None else chk == "ok", str(chk)))
    for wl in OUR_WORKLOADS:
        d = get(f"now/{wl}/default", "digest")
        for mode in ("exact", "wake"):
            o = get(f"now/{wl}/{mode}", "digest")
            if d is None or o is None:
                continue
            checks.append((f"{wl}: {mode} identical to default (fills, positions, equity)",
                           d == o, f"{d} / {o}"))
    bad = [c for c in checks if c[1] is False]
    unknown = [c for c in checks if c[1] is None]
    detail = "; ".join(f"{c[0]}: {c[2]}" for c in bad + unknown) or f"{len(checks)} checks"
    out.append(["results exact (trades, hedges, modes identical)",
                "all identical" if not bad and not unknown else detail, "-", "identical",
                "**FAIL**" if bad else ("n/a" if unknown else "**pass**")])
    return out


def rows_table(S: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Every job's medians, with the ratio to backtesting.py (CPU and wall)."""
    bt = {wl: S.get(f"backtesting.py/{wl}") for wl in ("W1", "W2")}
    order = ["backtesting.py", "backtrader", "now", "baseline"]
    keys = sorted((k for k in S if not k.startswith("demo/") and not k.endswith("/breakdown")),
                  key=lambda k: (("W0", "W1", "W2", "W1h", "W2h", "W4").index(S[k]["workload"]),
                                 order.index(S[k]["code"]) if S[k]["code"] in order else 9,
                                 MODES.index(S[k]["mode"]) if S[k]["mode"] in MODES else 9))
    out = []
    for k in keys:
        s = S[k]
        wl = s["workload"]
        ref = {"W1": "W1", "W1h": "W1", "W2": "W2", "W2h": "W2"}.get(wl)
        what = "perp_bars" if s.get("perp_bars") else "instrument_bars"
        rc, rw = _rate(s, what, "cpu_s"), _rate(s, what, "step_s")
        bref = bt.get(ref) if ref else None
        bc, bw = _rate(bref, "instrument_bars", "cpu_s"), _rate(bref, "instrument_bars",
                                                                "step_s")
        label = s.get("framework") or k
        if s["code"] == "baseline":
            label = f"baseline {s.get('commit') or ''}".strip()
        if s["errors"] and not s["runs"]:
            out.append([label, wl, "error: " + s["errors"][0][:120]] + ["-"] * 10)
            continue
        out.append([
            label, wl, _f(s.get("perp_bars") or s.get("instrument_bars"), ",", "-"),
            _f(s.get("cpu_s")), _f(s.get("step_s")), _f(rc, ",.0f"),
            _f(rc / bc if rc and bc and wl != "W4" else None) + ("×" if rc and bc
                                                                and wl != "W4" else ""),
            _f(rw / bw if rw and bw and wl != "W4" else None) + ("×" if rw and bw
                                                                and wl != "W4" else ""),
            _f(_rate(s, what, "loop_cpu_s"), ",.0f"), _f(s.get("process_cpu_s")),
            _f(s.get("peak_rss_mib"), ",.0f") + (
                f" ({_f(s.get('rss_after_imports_mib'), ',.0f')} / "
                f"{_f(s.get('rss_before_step_mib'), ',.0f')})"
                if s.get("rss_after_imports_mib") else ""),
            str(s.get("trades", "-")),
            f"{s['runs']}" + (f" ({len(s['errors'])} failed)" if s["errors"] else "")])
    return out


def breakdown_table(S: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """µs per bar by category (CPU-scaled medians) for each breakdown workload."""
    keys = [k for k in S if k.endswith("/breakdown") and S[k].get("breakdown_us_per_bar_cpu")]
    if not keys:
        return [], []
    cats = list(S[keys[0]]["breakdown_us_per_bar_cpu"])
    head = ["part"] + [f"{S[k]['workload']} µs/bar" for k in keys]
    rows = [[c] + [_f(S[k]["breakdown_us_per_bar_cpu"].get(c), ".3f") for k in keys]
            for c in cats]
    rows.append(["**total (instrumented, overhead subtracted)**"]
                + [_f(sum(S[k]["breakdown_us_per_bar_cpu"].values()), ".3f") for k in keys])
    plain = []
    for k in keys:
        p = S.get(f"now/{S[k]['workload']}/default")
        plain.append(_f(p["cpu_s"] / p["bars"] * 1e6, ".3f") if p and p.get("cpu_s")
                     and p.get("bars") else "-")
    rows.append(["uninstrumented step (CPU µs/bar, median)", *plain])
    rows.append(["on_bar calls / margin.step calls"] + [
        f"{S[k]['breakdown_calls'].get('strategy', 0):,} / "
        f"{S[k]['breakdown_calls'].get('margin', 0):,}" for k in keys])
    return head, rows


def md(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(S: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    """All tables as markdown."""
    parts = [f"As of commit {info['commit_now']} (baseline {info.get('commit_baseline')}), "
             f"{info['date']}; {info['machine']}; load average {info['load_start']} at the "
             f"start, {info['load_end']} at the end; median of {info['runs']} runs "
             f"(backtrader {info['backtrader_runs']}, first demo {info['demo_runs']}).", "",
             "**Targets** (ratios of CPU time; wall time beside it):", "",
             md(["target", "measured (CPU)", "wall", "required", "result"], target_rows(S)),
             "", "**Every job** (medians; \"bars\" counts perp bars for W1h/W2h; the ratios "
             "compare with backtesting.py's W1 or W2):", "",
             md(["framework", "workload", "bars", "step CPU (s)", "step wall (s)",
                 "CPU bars/s", "CPU ratio", "wall ratio", "loop only (CPU bars/s)",
                 "process CPU (s)", "peak RSS (MiB) (after imports / before the step)",
                 "trades", "runs"], rows_table(S))]
    head, rows = breakdown_table(S)
    if rows:
        parts += ["", "**Where a bar's time goes** (`run_ours.py --breakdown`, µs per bar of "
                  "CPU: wall-clock timers scaled by the step's CPU/wall, wrapper overhead "
                  "subtracted; medians):", "", md(head, rows)]
    dn, db = S.get("demo/now"), S.get("demo/baseline")
    if dn or db:
        parts += ["", "**First `backtester demo` on a fresh install**:", "",
                  md(["code", "CPU (s)", "wall (s)", "peak RSS (MiB)", "runs"],
                     [[lbl, _f(d.get("cpu_s")), _f(d.get("wall_s")),
                       _f(d.get("peak_rss_mib"), ",.0f"), str(d.get("runs"))]
                      for lbl, d in (("now", dn), ("baseline", db)) if d])]
    return "\n".join(parts)


def _commit(path: Path) -> str | None:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    if out.returncode == 0:
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               check=False).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    f = path / "COMMIT"
    return f.read_text().strip() if f.is_file() else None


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python-now", default=sys.executable)
    ap.add_argument("--python-peers", default=None, help="the peers' virtualenv interpreter")
    ap.add_argument("--baseline", type=Path, default=None, help="the baseline checkout")
    ap.add_argument("--python-baseline", default=None)
    ap.add_argument("--backtrader-runs", type=int, default=1)
    ap.add_argument("--breakdown", default="W1,W1h,W2h,W4",
                    help="workloads timed part by part (comma-separated; '' for none)")
    ap.add_argument("--breakdown-runs", type=int, default=3)
    ap.add_argument("--demo-runs", type=int, default=3, help="first demos per checkout (0: skip)")
    ap.add_argument("--python-demo", default="python3",
                    help="interpreter that creates the first-demo virtualenvs")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--table-only", action="store_true",
                    help="only render the tables from <out>/runs.jsonl")
    a = ap.parse_args()
    a.breakdown = [w for w in a.breakdown.split(",") if w]
    for w in a.breakdown:
        if w not in workloads.WORKLOADS:
            raise SystemExit(f"error: --breakdown: unknown workload {w!r}")
    if a.baseline is not None:
        a.baseline = a.baseline.resolve()
        a.python_baseline = a.python_baseline or str(a.baseline / ".venv" / "bin" / "python")
    a.out.mkdir(parents=True, exist_ok=True)
    raw_path = a.out / "runs.jsonl"
    info_path = a.out / "info.json"
    if not a.table_only:
        info = {"commit_now": _commit(ROOT),
                "commit_baseline": _commit(a.baseline) if a.baseline else None,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
                "load_start": _load(), "runs": a.runs, "backtrader_runs": a.backtrader_runs,
                "demo_runs": a.demo_runs}
        raw_path.write_text("")
        jobs = build_jobs(a)
        # untimed preparation: numba's cache and the W4 sample datasets
        for code, py, env in (("now", a.python_now, _env(str(ROOT))),
                              ("baseline", a.python_baseline,
                               _env(str(a.baseline)) if a.baseline else None)):
            if env is None or py is None:
                continue
            print(f"# preparing {code}: warm-up run and sample dataset", file=sys.stderr)
            subprocess.run([py, str(HERE / "run_ours.py"), "--workload", "W1h", "--n-bars",
                            "3000"], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            subprocess.run([py, "-P", "-c", "import sys; from backtester.data.sample import "
                            "ensure_sample; ensure_sample(sys.argv[1])",
                            str(a.out / f"datasets-{code}")], env=env, cwd=ROOT, check=True)
        n_rounds = max(j.rounds for j in jobs)
        for rnd in range(n_rounds):
            for job in jobs:
                if rnd >= job.rounds:
                    continue
                row = run_job(job)
                row["round"] = rnd
                row["load"] = _load()
                with raw_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                msg = row.get("error") or (f"CPU {row.get('cpu_s', 0):.2f} s, wall "
                                           f"{row.get('step_s', 0):.2f} s, RSS "
                                           f"{row.get('peak_rss_mib', 0):.0f} MiB")
                print(f"[round {rnd + 1}/{n_rounds}] {job.key}: {msg}", file=sys.stderr)
        if a.demo_runs > 0:
            for code, checkout in (("now", ROOT), ("baseline", a.baseline)):
                if checkout is None:
                    continue
                print(f"# first demo ({code}), {a.demo_runs} runs", file=sys.stderr)
                job = Job(f"demo/{code}", [sys.executable, str(HERE / "first_demo.py"),
                                           "--checkout", str(checkout), "--label", code,
                                           "--runs", str(a.demo_runs), "--python",
                                           a.python_demo, "--json"],
                          _env(None), 1, {"code": code, "workload": "demo",
                                          "mode": "default"})
                row = run_job(job)
                with raw_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"demo/{code}: {row.get('error') or row.get('cpu_s')}", file=sys.stderr)
        info["load_end"] = _load()
        info_path.write_text(json.dumps(info, indent=1))
    info = json.loads(info_path.read_text())
    raw = [json.loads(ln) for ln in raw_path.read_text().splitlines() if ln.strip()]
    S = summarize(raw)
    (a.out / "summary.json").write_text(json.dumps(S, indent=1, default=str))
    table = render(S, info)
    (a.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
