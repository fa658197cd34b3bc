"""Fresh runs of the reference cases equal their golden results (issue 17 item 6).

See ``tests/golden/cases.py`` for the cases and ``tests/golden/golden.py`` for the rules:
Decimal amounts, event kinds, times and symbols identical; floats within rtol 1e-12 + atol
1e-9; order ids after renumbering.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backtester import BacktestResult
from tests.golden.cases import CASES, SHARED_CASES, shared_case
from tests.golden.golden import DATA, compare


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backtester.data.sample import ensure_sample

    root = tmp_path_factory.mktemp("datasets")
    ensure_sample(root)
    return root


def _check(name: str, results: dict[str, BacktestResult]) -> None:
    folder = DATA / name
    assert folder.is_dir(), f"no golden files for {name}: python -m tests.golden.record {name}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(results)
    problems = []
    for label, result in results.items():
        problems += compare(result, folder / label)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.filterwarnings("ignore::backtester.errors.BacktesterWarning")
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, sample_root: Path) -> None:
    _check(name, CASES[name](sample_root))


@pytest.mark.shared
@pytest.mark.filterwarnings("ignore::backtester.errors.BacktesterWarning")
@pytest.mark.parametrize("name", SHARED_CASES)
def test_golden_with_real_tiers(name: str, shared_data: Path) -> None:
    _check(name, shared_case(name, shared_data))


def test_the_cases_reach_calls_liquidations_and_bankruptcies() -> None:
    # the golden books are meant to exercise the margin machinery: read the frozen events
    import gzip
    import json

    kinds: dict[str, int] = {}
    bankrupt = 0
    for doc in DATA.glob("*/*/result.json.gz"):
        for ev in json.loads(gzip.decompress(doc.read_bytes()))["events"]:
            kinds[ev["event"]] = kinds.get(ev["event"], 0) + 1
            bankrupt += bool(ev.get("is_bankrupt"))
    assert kinds.get("MarginCalled", 0) >= 3
    assert kinds.get("PositionLiquidated", 0) >= 20
    assert kinds.get("InstrumentExpired", 0) >= 20
    assert bankrupt >= 5
