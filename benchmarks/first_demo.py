"""Time the first ``backtester demo`` after a fresh install (compilation included).

For one checkout (``--checkout``, the working tree or the baseline):

1. copy its files into ``<work>/src`` (a git checkout: the tracked and untracked, not ignored
   files as they are in the working tree; otherwise every file except virtualenvs, caches,
   ``datasets/`` and ``reports/``), so no ``.pyc`` and no numba cache comes along;
2. create a virtualenv ``<work>/venv`` with ``--python`` and install the copy as the README
   says (``pip install -e .``), with ``PIP_CONSTRAINT=<copy>/constraints.txt`` and the user's pip
   cache (not timed);
3. for each run: delete every ``__pycache__`` under the copy (Python's bytecode and numba's
   ``*.nbi`` / ``*.nbc`` cache: the state right after a fresh install), then run
   ``backtester demo`` once in a new empty directory and measure its wall time and CPU time
   (user + system of the child process and anything it waited for) and its peak RSS.

The child runs without ``PYTHONPATH``, ``BACKTESTER_DATASETS`` and ``NUMBA_CACHE_DIR``, so the
demo generates the sample dataset into its empty directory and numba caches next to the
copied sources, as on a user's first run. The user-wide caches of other libraries (e.g.
matplotlib's font cache under ``~/.cache``) are left as they are, for both checkouts alike.

Usage::

    python benchmarks/first_demo.py --checkout . --label now --runs 3 --json
    python benchmarks/first_demo.py --checkout /work/wt/baseline --label baseline --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_SKIP_DIRS = {".git", "__pycache__", "datasets", "reports", "results", ".mypy_cache",
              ".ruff_cache", ".pytest_cache", ".hypothesis", "node_modules"}


def _files(checkout: Path) -> list[Path]:
    # the checkout's files, relative to it
    out = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], capture_output=True, check=False)
    if out.returncode == 0:
        return [Path(p) for p in out.stdout.decode().split("\0")
                if p and (checkout / p).is_file()]
    files = []
    for dirpath, dirnames, filenames in os.walk(checkout):
        dirnames[:] = [d for d in dirnames
                       if d not in _SKIP_DIRS and not d.startswith(".venv")]
        rel = Path(dirpath).relative_to(checkout)
        files.extend(rel / f for f in filenames)
    return files


def copy_checkout(checkout: Path, dest: Path) -> int:
    """Copy the checkout's files into ``dest``; return how many."""
    files = _files(checkout)
    for rel in files:
        if rel.parts and rel.parts[0] in ("datasets", "reports") and rel.name != "README.md":
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkout / rel, target)
    return len(files)


def install(src: Path, venv: Path, python: str) -> None:
    """A fresh virtualenv with the copy installed editable (``pip install -e .``)."""
    log = venv.parent / "install.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    with log.open("wb") as fh:
        for cmd, extra in (([python, "-m", "venv", str(venv)], {}),
                           ([*pip, "install", "-q", "--upgrade", "pip>=24"], {}),
                           ([*pip, "install", "-q", "-e", str(src)],
                            {"PIP_CONSTRAINT": str(src / "constraints.txt")})):
            done = subprocess.run(cmd, env={**env, **extra}, cwd=src, stdout=fh,
                                  stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                tail = log.read_text(errors="replace")[-2000:]
                msg = f"error: {' '.join(cmd)} failed (exit {done.returncode}):\n{tail}"
                raise SystemExit(msg)


def clear_caches(src: Path) -> int:
    """Delete every ``__pycache__`` under ``src`` (bytecode and numba's cache); return how
    many numba cache files were among them."""
    n_numba = 0
    for d in sorted(src.rglob("__pycache__")):
        n_numba += sum(1 for p in d.iterdir() if p.suffix in (".nbi", ".nbc"))
        shutil.rmtree(d)
    return n_numba


def demo_once(venv: Path, rundir: Path) -> dict[str, Any]:
    """Run ``backtester demo`` once in the empty ``rundir``; wall, CPU, peak RSS, exit code."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "BACKTESTER_DATASETS", "NUMBA_CACHE_DIR", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    rundir.mkdir(parents=True)
    with (rundir.parent / f"{rundir.name}.log").open("wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(venv / "bin" / "backtester"), "demo"], cwd=rundir, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        # the child's own rusage (and that of anything it waited for)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "returncode": proc.returncode, "peak_rss_mib": usage.ru_maxrss / 1024,
            "report": (rundir / "reports").is_dir()}


def measure(checkout: Path, label: str, runs: int, work: Path, python: str) -> dict[str, Any]:
    """Install ``checkout`` fresh under ``work`` and time ``runs`` first demos."""
    src = work / "src"
    venv = work / "venv"
    n_files = copy_checkout(checkout, src)
    install(src, venv, python)
    rows = []
    for i in range(runs):
        n_numba = clear_caches(src)
        r = demo_once(venv, work / f"run{i}")
        r["numba_cache_files_cleared"] = n_numba
        rows.append(r)
        if r["returncode"] != 0:
            log = (work / f"run{i}.log").read_text(errors="replace")[-2000:]
            print(f"# first demo ({label}) failed with exit code {r['returncode']}:\n{log}",
                  file=sys.stderr)
            break
    ok = [r for r in rows if r["returncode"] == 0]
    return {"framework": "first backtester demo", "workload": "demo", "code": label,
            "checkout": str(checkout), "files": n_files, "runs": rows,
            "ok": len(ok) == runs and all(r["report"] for r in ok),
            "wall_s": statistics.median(r["wall_s"] for r in ok) if ok else None,
            "cpu_s": statistics.median(r["cpu_s"] for r in ok) if ok else None,
            "peak_rss_mib": max((r["peak_rss_mib"] for r in ok), default=None)}


def main() -> None:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkout", required=True, help="the repository folder to install")
    ap.add_argument("--label", required=True, help="e.g. now / baseline")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default="python3",
                    help="interpreter that creates the virtualenv (default python3)")
    ap.add_argument("--work", default=None,
                    help="scratch folder (default: a new temporary folder, removed after)")
    ap.add_argument("--json", action="store_true", help="print one JSON line only")
    a = ap.parse_args()
    checkout = Path(a.checkout).resolve()
    if a.work:
        work = Path(a.work)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        row = measure(checkout, a.label, a.runs, work, a.python)
    else:
        with tempfile.TemporaryDirectory(prefix="first-demo-") as tmp:
            row = measure(checkout, a.label, a.runs, Path(tmp), a.python)
    if a.json:
        print(json.dumps(row))
    else:
        for i, r in enumerate(row["runs"]):
            print(f"{a.label} run {i}: wall {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB, exit {r['returncode']}, "
                  f"numba cache files cleared {r['numba_cache_files_cleared']}")
        print(f"{a.label}: median wall {row['wall_s']}, CPU {row['cpu_s']} s, ok={row['ok']}")
    if not row["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
