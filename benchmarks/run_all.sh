#!/usr/bin/env bash
# The speed benchmark (issues 2, 3, 17) in one command: prepares the interpreters, then
# benchmarks/suite.py runs every job (ours W0/W1/W2/W1h/W2h in four modes and W4, the baseline
# commit's W1/W2/W1h/W2h/W4, backtesting.py and backtrader W1/W2, the per-bar breakdown, the
# first demo on a fresh install now and at the baseline), RUNS times alternating, and writes
# benchmarks/results/table.md (git-ignored). See benchmarks/README.md.
#
# Environment (all optional):
#   PY=/path/to/python        the project's interpreter (default: .venv/bin/python of this
#                             checkout, else /work/venv/bin/python, else python3)
#   RUNS=5                    rounds (medians over them)
#   BASELINE_REF=5e7779d      the "before" commit
#   BASELINE_DIR=...          its checkout (default: extracted with git archive into
#                             ~/.cache/backtester-bench/baseline-<ref>, with its own .venv)
#   SKIP_BASELINE=1           no baseline jobs (and no W4 / first-demo comparison)
#   SKIP_BACKTRADER=1         no backtrader (slow: ~1.5 min per W2 run); BACKTRADER_RUNS=1
#   DEMO_RUNS=3               first demos per checkout (0: skip; each installs a fresh venv)
#   BREAKDOWN=W1,W1h,W2h,W4   workloads timed part by part; BREAKDOWN_RUNS=3
# Extra arguments go to suite.py (e.g. --table-only to re-render the tables).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
if [ -z "${PY:-}" ]; then
  for c in "$ROOT/.venv/bin/python" /work/venv/bin/python; do
    if [ -x "$c" ]; then PY="$c"; break; fi
  done
  PY="${PY:-$(command -v python3)}"
fi
SYS_PY="$(command -v python3)"
VENV="$HERE/.venv-peers"
OUT="$HERE/results"
mkdir -p "$OUT"

# the peers: backtesting.py (and backtrader) from PyPI, in their own virtualenv
if [ ! -x "$VENV/bin/python" ]; then
  "$SYS_PY" -m venv "$VENV"
fi
"$VENV/bin/python" -c "import backtesting" 2>/dev/null \
  || "$VENV/bin/pip" install -q "backtesting>=0.6,<0.7"
BT_RUNS="${BACKTRADER_RUNS:-1}"
if [ "${SKIP_BACKTRADER:-0}" = 1 ]; then
  BT_RUNS=0
else
  "$VENV/bin/python" -c "import backtrader" 2>/dev/null \
    || "$VENV/bin/pip" install -q backtrader \
    || { echo "# backtrader not installable: skipped" >&2; BT_RUNS=0; }
fi

# the baseline checkout and its virtualenv (installed the way CI does)
BASE_ARGS=()
if [ "${SKIP_BASELINE:-0}" != 1 ]; then
  REF="${BASELINE_REF:-5e7779d}"
  BASE="${BASELINE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/backtester-bench/baseline-$REF}"
  if [ ! -f "$BASE/pyproject.toml" ]; then
    mkdir -p "$BASE"
    git -C "$ROOT" archive "$REF" | tar -x -C "$BASE"
    git -C "$ROOT" rev-parse --short "$REF" > "$BASE/COMMIT"
  fi
  if [ ! -x "$BASE/.venv/bin/python" ]; then
    "$SYS_PY" -m venv "$BASE/.venv"
    "$BASE/.venv/bin/pip" install -q --upgrade "pip>=24"
    PIP_CONSTRAINT="$BASE/constraints.txt" "$BASE/.venv/bin/pip" install -q -e "$BASE"
  fi
  BASE_ARGS=(--baseline "$BASE" --python-baseline "$BASE/.venv/bin/python")
fi

DEMO="${DEMO_RUNS:-3}"
cd "$ROOT"
exec "$PY" "$HERE/suite.py" --runs "${RUNS:-5}" --python-now "$PY" \
  --python-peers "$VENV/bin/python" --backtrader-runs "$BT_RUNS" \
  --breakdown "${BREAKDOWN-W1,W1h,W2h,W4}" --breakdown-runs "${BREAKDOWN_RUNS:-3}" \
  --demo-runs "$DEMO" --python-demo "$SYS_PY" --out "$OUT" \
  ${BASE_ARGS[@]+"${BASE_ARGS[@]}"} "$@"
