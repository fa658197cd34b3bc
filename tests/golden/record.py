"""Record the golden results: ``python -m tests.golden.record [CASE ...]`` (all cases by default).

Run from the repository root. The sample dataset is generated into a temporary folder; cases of
``SHARED_CASES`` read ``$BACKTESTER_SHARED_DATA`` (default ``../shared/data``). Golden files
change only in a commit that names the behaviour that changed and why (issue 17).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from backtester.data.sample import ensure_sample
from tests.conftest import shared_data_dir
from tests.golden.cases import CASES, SHARED_CASES, shared_case
from tests.golden.golden import DATA, save


def main(names: list[str]) -> None:
    warnings.simplefilter("ignore")
    chosen = names or [*CASES, *SHARED_CASES]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "datasets"
        ensure_sample(root)
        for name in chosen:
            results = (shared_case(name, shared_data_dir()) if name in SHARED_CASES
                       else CASES[name](root))
            target = DATA / name
            if target.exists():
                shutil.rmtree(target)
            for label, result in results.items():
                save(result, target / label)
            print(f"{name}: {', '.join(results)}")


if __name__ == "__main__":
    main(sys.argv[1:])
