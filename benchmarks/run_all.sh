#!/usr/bin/env bash
# Run the speed benchmark (issue 2, "Speed"): our engine on W0/W1/W2 (also with margin checked
# at the close only, with the strategy woken by ctx.wake_on, and with every bar's margin
# evaluated exactly), backtesting.py and backtrader on W1/W2 in a separate virtualenv, then one
# table. Run from anywhere; results go to benchmarks/results/ (git-ignored).
#   PY=/path/to/python   the project's interpreter (default /work/venv/bin/python, else python3)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="${PY:-/work/venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
VENV="$HERE/.venv-peers"
OUT="$HERE/results"
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -c "import backtesting" 2>/dev/null \
  || "$VENV/bin/pip" install -q "backtesting>=0.6,<0.7"
"$VENV/bin/python" -c "import backtrader" 2>/dev/null \
  || "$VENV/bin/pip" install -q backtrader \
  || echo "# backtrader not installable: skipped" >&2

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PY" benchmarks/run_ours.py --all --json | tee "$OUT/ours.jsonl"
"$PY" benchmarks/run_ours.py --all --json --margin-check close | tee "$OUT/ours_close.jsonl"
"$PY" benchmarks/run_ours.py --all --json --wake | tee "$OUT/ours_wake.jsonl"
"$PY" benchmarks/run_ours.py --all --json --exact-margin | tee "$OUT/ours_exact.jsonl"
env -u PYTHONPATH "$VENV/bin/python" benchmarks/run_peers.py --all --json | tee "$OUT/peers.jsonl"
"$PY" - "$OUT/peers.jsonl" "$OUT/ours.jsonl" "$OUT/ours_close.jsonl" "$OUT/ours_wake.jsonl" \
  "$OUT/ours_exact.jsonl" <<'PYEOF' | tee "$OUT/table.md"
import sys
sys.path.insert(0, "benchmarks")
import workloads
print(f"machine: {__import__('os').cpu_count()} CPUs, Python {sys.version.split()[0]}")
print(workloads.format_table(workloads.read_rows(sys.argv[1:])))
PYEOF
