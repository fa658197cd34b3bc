"""Names from user input never reach outside ``datasets/`` and ``reports/`` (issue 15, item 3).

Each command runs in a fresh working folder holding ``datasets/``, ``reports/`` and a user's
folder with files the store did not write (``notes.parquet``, a file named like a temp file).
After a refused command, nothing outside the two chosen folders was written, renamed or
deleted, and the error is one line naming the field.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from backtester.cli import _register, cli
from backtester.data.store import Store

_register()
REPO = Path(__file__).resolve().parents[3]
PAIR = str(REPO / "strategies" / "hedged_pair.py")
CSV = "ts,open,high,low,close,volume\n" + "".join(
    f"2024-01-01T0{h}:00:00Z,100,101,99,100.5,1\n" for h in range(4))


def _tree(root: Path) -> dict[str, str]:
    # every file under root (except the chosen folders) with a hash of its bytes
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] in ("datasets", "reports") or not p.is_file():
            continue
        out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/outer/work (the cwd) with datasets/, reports/, a user folder and a CSV."""
    work = tmp_path / "outer" / "work"
    (work / "datasets").mkdir(parents=True)
    (work / "reports").mkdir()
    user = work / "userdir" / "ohlcv" / "BTC-USDT_USDT"
    user.mkdir(parents=True)
    (user / "notes.parquet").write_text("my notes, not Parquet")
    (user / ".1h.parquet.tmp-0123456789abcdef0123456789abcdef").write_text("mine too")
    (work / "bars.csv").write_text(CSV)
    monkeypatch.chdir(work)
    return work


def _refused(work: Path, *args: str, field: str) -> None:
    before = _tree(work.parents[1])
    result = CliRunner().invoke(cli, list(args))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {field}: ")
    assert _tree(work.parents[1]) == before  # nothing written, renamed or deleted outside


@pytest.mark.parametrize("exchange", ["../../x", "ABSOLUTE", "..", ".hidden", ""])
def test_import_exchange_must_be_one_folder_name_15(work: Path, exchange: str) -> None:
    elsewhere = work.parent / "elsewhere"  # an absolute path outside datasets/
    exchange = str(elsewhere) if exchange == "ABSOLUTE" else exchange
    _refused(work, "data", "import", "bars.csv", "--exchange", exchange, "--symbol",
             "BTC/USDT:USDT", "--kind", "ohlcv", "--datasets", "datasets", field="exchange")
    assert not elsewhere.exists()


@pytest.mark.parametrize("symbol", ["A/B/../../../x", "../x", "BTC/USDT:USDT/../../y",
                                    "BTC\\USDT"])
def test_import_symbol_must_follow_the_ccxt_grammar_15(work: Path, symbol: str) -> None:
    _refused(work, "data", "import", "bars.csv", "--exchange", "binanceusdm", "--symbol",
             symbol, "--kind", "ohlcv", "--datasets", "datasets", field="symbol")
    assert list((work / "datasets").rglob("*.parquet")) == []


def test_run_id_must_be_one_folder_name_15(work: Path) -> None:
    _refused(work, "run", PAIR, "--dataset", "sample", "--datasets", "datasets",
             "--output-dir", "reports", "--run-id", "../../..", field="run_id")
    assert list((work / "reports").iterdir()) == []


def test_sweep_id_must_be_one_folder_name_15(work: Path) -> None:
    _refused(work, "sweep", PAIR, "--dataset", "sample", "--datasets", "datasets",
             "--output-dir", "reports", "--grid", "entry_z=2", "--workers", "1",
             "--sweep-id", "../..", field="--sweep-id")
    assert list((work / "reports").iterdir()) == []


def test_run_dataset_must_be_a_folder_of_datasets_15(work: Path) -> None:
    _refused(work, "run", PAIR, "--dataset", "../userdir", "--datasets", "datasets",
             "--output-dir", "reports", field="dataset")
    user = work / "userdir" / "ohlcv" / "BTC-USDT_USDT"
    assert (user / "notes.parquet").read_text() == "my notes, not Parquet"


def test_scan_leaves_files_the_store_did_not_write_15(tmp_path: Path) -> None:
    store = Store(tmp_path)
    folder = store.path("binanceusdm", "ohlcv", "BTC/USDT:USDT", "1h").parent
    folder.mkdir(parents=True)
    notes = folder / "notes.parquet"
    notes.write_text("a user's file in the store's folder")
    (tmp_path / "binanceusdm" / "readme.parquet").write_text("not a series either")
    broken = folder / "1h.parquet"
    broken.write_bytes(b"truncated")  # the store's own name: quarantined as before

    moved = store.scan()

    assert [q.path for q in moved] == [broken]
    assert notes.read_text() == "a user's file in the store's folder"
    assert (tmp_path / "binanceusdm" / "readme.parquet").exists()
