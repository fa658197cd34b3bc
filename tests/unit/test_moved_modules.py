"""Moved modules keep their old import paths for one release (issue 17 item 7).

Each old path is a shim: importing it warns with a ``DeprecationWarning`` naming the new path
and gives the very same objects. Nothing inside the project imports a shim (the test suite runs
with warnings as errors, and a fresh interpreter importing every module of the package with
``-W error::DeprecationWarning`` loads none of them), and the public API stays warning-free.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

# old path -> new path
MOVED = {
    "backtester.runner": "backtester.runs.runner",
    "backtester.modes": "backtester.runs.modes",
    "backtester.results": "backtester.runs.results",
    "backtester.result_frames": "backtester.runs.frames",
    "backtester.capital": "backtester.runs.capital",
    "backtester.sweep_report": "backtester.sweep.report",
    "backtester.sweep_walk_forward": "backtester.sweep.walk_forward",
    "backtester.margin.profiles": "backtester.margin.profile",
    "backtester.margin.profile_data": "backtester.margin.profile",
    "backtester.margin.profiles_engine": "backtester.margin.profile",
}

# names an old path keeps whose object now lives elsewhere: name -> (module, name); the sweep
# page's Protocols became the concrete types it reads
RENAMED = {
    "backtester.sweep_report": {
        "SweepPage": ("backtester.sweep.results", "SweepResult"),
        "SweepPageSpec": ("backtester.sweep.grid", "SweepSpec"),
    },
}


@pytest.mark.parametrize(("old", "new"), MOVED.items())
def test_old_module_path_warns_and_gives_the_same_objects_17(old: str, new: str) -> None:
    sys.modules.pop(old, None)  # a shim warns when it is first imported
    with pytest.warns(DeprecationWarning, match=re.escape(f"import from {new} ")) as caught:
        __import__(old)  # what an ``import`` statement calls
    shim = sys.modules[old]
    target = importlib.import_module(new)
    # the warning points at the importing code, not at the shim or importlib
    assert [w.filename for w in caught] == [__file__]
    assert shim.__all__, old
    if old.rpartition(".")[0] != "backtester.margin":  # three margin modules merged into one
        assert set(getattr(target, "__all__", ())) <= set(shim.__all__)
    renamed = RENAMED.get(old, {})
    for name in shim.__all__:
        home = importlib.import_module(renamed[name][0]) if name in renamed else target
        assert getattr(shim, name) is getattr(home, renamed.get(name, ("", name))[1]), name


_IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import backtester
moved = set(sys.argv[1:])
for info in pkgutil.walk_packages(backtester.__path__, "backtester."):
    if info.name not in moved:
        importlib.import_module(info.name)
loaded = sorted(moved & set(sys.modules))
assert not loaded, f"the project imports moved paths: {loaded}"
from backtester import BacktestResult, Strategy, load_strategy, run
from backtester.runs.results import BacktestResult as moved_result
assert BacktestResult is moved_result
# backtester.sweep became a package: the names the docs show import from it, without a warning
from backtester.sweep import SweepSpec, parse_grid, run_sweep
from backtester.sweep.grid import SweepSpec as moved_spec
assert SweepSpec is moved_spec
"""


def test_project_and_public_api_never_import_a_moved_path_17() -> None:
    # a fresh interpreter: this process may already hold the shims imported by the test above
    out = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", _IMPORT_EVERYTHING, *MOVED],
        capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]

