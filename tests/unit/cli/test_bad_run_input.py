"""Bad run input and failing strategies on the CLI: one line, exit 2, no half-written folder
(issue 15, items 6, 7 and 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from backtester.cli import _register
from backtester.data.sample import ensure_sample
from tests.cli_helpers import invoke as _invoke
from tests.cli_helpers import one_error_line as _one_error_line

_register()
REPO = Path(__file__).resolve().parents[3]
PAIR = str(REPO / "strategies" / "hedged_pair.py")
WINDOW = ("--start", "2025-01-01", "--end", "2025-01-15")

ORDERS = '''
from backtester import Strategy


class Orders(Strategy):
    qty: str = "nan"

    def on_bar(self, ctx):
        self.n = getattr(self, "n", 0) + 1
        if self.n == 2:
            ctx.buy("BTC/USDT:USDT", float(self.qty))
        if self.n == 4:
            ctx.buy("BTC/USDT:USDT", "0.01")
'''

BOOM = '''
from backtester import Strategy


class Boom(Strategy):
    def on_bar(self, ctx):
        self.n = getattr(self, "n", 0) + 1
        if self.n == 3:
            self.ratio(0.0)

    def ratio(self, x):
        return 1.0 / x
'''


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    ensure_sample(root)
    return root


def _run(datasets: Path, out: Path, *args: str, strategy: str = PAIR) -> tuple[int, str, str]:
    return _invoke("run", strategy, "--dataset", "sample", "--datasets", str(datasets),
                   "--output-dir", str(out), "--run-id", "r", *WINDOW, *args)


@pytest.mark.parametrize(("flags", "field"), [
    (("--leverage", "inf"), "leverage"),
    (("--leverage", "nan"), "leverage"),
    (("--leverage", "-1"), "leverage"),
    (("--leverage", "BTC/USDT:USDT=inf"), "leverage.BTC/USDT:USDT"),
    (("--slippage-bps", "inf"), "slippage_bps"),
    (("--slippage-bps", "nan"), "slippage_bps"),
    (("--slippage-bps", "-1"), "slippage_bps"),
    (("--slippage-bps", "10000"), "slippage_bps"),
    (("--liquidation-slippage-bps", "inf"), "liquidation_slippage_bps"),
    (("--call-level", "inf"), "call_level"),
])
def test_non_finite_or_out_of_range_numbers_are_one_line_and_write_nothing_15(
        datasets: Path, tmp_path: Path, flags: tuple[str, ...], field: str) -> None:
    code, _, err = _run(datasets, tmp_path / "reports", *flags)

    assert code == 2
    assert _one_error_line(err).startswith(f"error: {field}: expected ")
    assert not (tmp_path / "reports").exists()  # validation fails before any folder is made


@pytest.mark.parametrize(("toml", "field"), [
    ("collateral = 5\n", "collateral"),
    ("leverage = inf\n", "leverage"),
    ("margin_scale = nan\n", "margin_scale"),
    ("volume_impact = -inf\n", "volume_impact"),
    ('params = "x"\n', "params"),
])
def test_bad_run_toml_values_are_one_line_15(datasets: Path, tmp_path: Path, toml: str,
                                             field: str) -> None:
    config = tmp_path / "run.toml"
    config.write_text(toml)

    code, _, err = _run(datasets, tmp_path / "reports", "--config", str(config))

    assert code == 2
    assert _one_error_line(err).startswith(f"error: {field}: ")
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("spec", [".hidden", ".hidden/x", "..", "a b:C", "pkg/mod:Cls"])
def test_strategy_spec_that_is_neither_a_file_nor_a_module_15(datasets: Path, tmp_path: Path,
                                                              spec: str) -> None:
    code, _, err = _run(datasets, tmp_path / "reports", strategy=spec)

    assert code == 2
    assert "expected a file path ending in .py" in _one_error_line(err)


def test_a_run_that_fails_after_starting_leaves_no_folder_15(
        datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import backtester.report as report

    def broken(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", "report.html")

    monkeypatch.setattr(report, "write_report", broken)
    out = tmp_path / "reports"

    code, _, err = _run(datasets, out)

    assert code == 2
    assert "Permission denied" in _one_error_line(err)
    assert list(out.iterdir()) == []  # neither the folder nor its temporary build folder


def test_a_rerun_replaces_the_folder_whole_15(datasets: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    assert _run(datasets, out, "--quiet")[0] == 0
    (out / "r" / "stale.txt").write_text("from an earlier run")

    code, stdout, _ = _run(datasets, out, "--quiet")

    assert code == 0
    assert stdout.strip() == str(out / "r")
    assert not (out / "r" / "stale.txt").exists()
    assert (out / "r" / "config.json").is_file()
    assert [p.name for p in out.iterdir()] == ["r"]


def test_nan_quantity_is_a_rejection_event_not_an_abort_15(datasets: Path,
                                                           tmp_path: Path) -> None:
    strategy = tmp_path / "orders.py"
    strategy.write_text(ORDERS)
    out = tmp_path / "reports"

    code, _, err = _run(datasets, out, "--quiet", strategy=str(strategy))

    assert code == 0, err
    rejected = pd.read_parquet(out / "r" / "rejections.parquet")
    assert list(zip(rejected["reason"], rejected["symbol"])) == [("qty_not_finite",
                                                                  "BTC/USDT:USDT")]
    assert "qty nan is not a finite number" in rejected["message"].iloc[0]
    assert str(rejected["ts"].iloc[0]) == "2025-01-01 02:00:00+00:00"  # 2nd bar, at its close
    assert len(pd.read_parquet(out / "r" / "trades.parquet")) == 1  # the run went on trading


def test_infinite_quantity_too_15(datasets: Path, tmp_path: Path) -> None:
    strategy = tmp_path / "orders.py"
    strategy.write_text(ORDERS)
    out = tmp_path / "reports"

    code, _, err = _run(datasets, out, "--quiet", "--param", "qty=-inf", strategy=str(strategy))

    assert code == 0, err
    rejected = pd.read_parquet(out / "r" / "rejections.parquet")
    assert list(rejected["reason"]) == ["qty_not_finite"]
    assert "qty -inf is not a finite number" in rejected["message"].iloc[0]


@pytest.mark.parametrize("debug", [False, True])
def test_strategy_exception_is_one_line_with_its_line_and_the_traceback_is_kept_15(
        datasets: Path, tmp_path: Path, debug: bool) -> None:
    strategy = tmp_path / "boom.py"
    strategy.write_text(BOOM)
    out = tmp_path / "reports"

    code, _, err = _run(datasets, out, *(["--debug"] if debug else []), strategy=str(strategy))

    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: strategy Boom.on_bar raised ZeroDivisionError at ")
    assert "(boom.py:12)" in last  # the strategy's own line: return 1.0 / x
    assert str(out / "r" / "warnings.json") in last
    if debug:
        assert 'boom.py", line 12, in ratio' in err
    else:
        _one_error_line(err)
    warnings = json.loads((out / "r" / "warnings.json").read_text())
    assert any('boom.py", line 12, in ratio' in w and 'line 9, in on_bar' in w
               for w in warnings)
    config = json.loads((out / "r" / "config.json").read_text())
    assert config["status"] == "failed"
    assert sorted(p.name for p in (out / "r").iterdir()) == ["config.json", "warnings.json"]


def test_start_after_end_names_the_dates_15(datasets: Path, tmp_path: Path) -> None:
    code, _, err = _invoke("run", PAIR, "--dataset", "sample", "--datasets", str(datasets),
                           "--output-dir", str(tmp_path), "--start", "2025-03-01",
                           "--end", "2025-02-01")

    assert code == 2
    line = _one_error_line(err)
    assert "start 2025-03-01T00:00:00Z is not before end 2025-02-01T00:00:00Z" in line


def test_window_outside_the_data_says_what_the_data_covers_15(datasets: Path,
                                                              tmp_path: Path) -> None:
    code, _, err = _invoke("run", PAIR, "--dataset", "sample", "--datasets", str(datasets),
                           "--output-dir", str(tmp_path), "--start", "2031-01-01",
                           "--end", "2031-02-01")

    assert code == 2
    line = _one_error_line(err)
    assert "2031-01-01T00:00:00Z" in line
    assert "2031-02-01T00:00:00Z" in line
    assert "cover 2025-01-01T00:00:00Z .. 2025-12-31T23:00:00Z" in line
