"""Sweeps on a local Dask cluster and in process: equivalence, failures, resume, walk-forward.

Worker processes import the test strategies as ``tests.integration.sweep_strategies``: the
``cluster`` fixture puts the repository root on each worker's ``sys.path`` with ``Client.run``.
Every run is cut to two months of the synthetic sample (BTC and ETH perps only) to stay fast.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import backtester
from backtester.data.sample import ensure_sample
from backtester.sweep import METRICS, InProcessExecutor, SweepSpec, parse_grid, run_sweep
from backtester.sweep.walk_forward import WalkForwardSpec, run_walk_forward
from backtester.timeutil import MS_PER_DAY, parse_utc_ms

REPO = Path(__file__).resolve().parents[2]
PAIR = "strategies.hedged_pair:HedgedPair"
FLAKY = "tests.integration.sweep_strategies:FlakyPair"
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
START, END = "2025-01-01", "2025-03-01"


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("datasets")
    ensure_sample(root)
    return str(root)


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0")
    client = distributed.Client(cluster)
    client.run(sys.path.insert, 0, str(REPO))
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def cluster_executor(cluster_client: Any) -> Executor:
    return cluster_client.get_executor()  # type: ignore[no-any-return]


class CountingExecutor(InProcessExecutor):
    """In-process executor that counts the tasks it actually runs."""

    def __init__(self) -> None:
        self.count = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.count += 1
        return super().submit(fn, *args, **kwargs)


def _spec(root: str, grid: list[str], *, strategy: str = PAIR, **kw: Any) -> SweepSpec:
    cls = backtester.load_strategy(strategy)
    return SweepSpec(strategy=strategy, dataset="sample", grid=parse_grid(grid, cls.parameters),
                     datasets_root=root, start=kw.pop("start", START), end=kw.pop("end", END),
                     symbols=kw.pop("symbols", SYMBOLS), **kw)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    # duration_s is wall time: the one column that is not deterministic
    pd.testing.assert_frame_equal(a.drop(columns="duration_s"), b.drop(columns="duration_s"))


GRID = ["lookback=48,96", "entry_z=1.5,2.0"]


def test_cluster_sweep_gives_the_same_rows_as_single_runs(
        datasets_root: str, cluster_executor: Executor, tmp_path: Path) -> None:
    # every instrument of the sample (perps, futures, options), as a stand-alone run loads them
    spec = _spec(datasets_root, GRID, symbols=None)
    result = run_sweep(spec, output_dir=tmp_path, executor=cluster_executor)
    table = pd.read_parquet(result.path / "results.parquet")
    assert list(table["run"]) == [0, 1, 2, 3]
    assert table[["param_lookback", "param_entry_z"]].to_numpy().tolist() == [
        [48, 1.5], [48, 2.0], [96, 1.5], [96, 2.0]]
    assert table["error"].isna().all()
    for row in table.to_dict("records"):
        alone = backtester.run(PAIR, dataset="sample", datasets_root=datasets_root,
                               start=START, end=END,
                               params={"lookback": row["param_lookback"],
                                       "entry_z": row["param_entry_z"]})
        for m in METRICS:
            expected = alone.metrics[m]
            if expected is None:
                assert pd.isna(row[m]), m
            else:
                assert row[m] == expected, m
    assert (result.path / "sweep.json").is_file()
    page = (result.path / "index.html").read_text()
    assert "sortTable" in page
    assert "Heatmap" in page or "heatmap" in page


def test_sweep_is_deterministic_across_executors(
        datasets_root: str, cluster_executor: Executor, tmp_path: Path) -> None:
    spec = _spec(datasets_root, GRID)
    on_cluster = run_sweep(spec, output_dir=tmp_path / "a", executor=cluster_executor).table
    in_process = run_sweep(spec, output_dir=tmp_path / "b", workers=1).table
    again = run_sweep(spec, output_dir=tmp_path / "c", workers=1).table
    _same(on_cluster, in_process)
    _same(in_process, again)


def test_scheduler_address_and_default_local_cluster_give_the_same_table(
        datasets_root: str, cluster_client: Any, tmp_path: Path) -> None:
    spec = _spec(datasets_root, GRID)
    remote = run_sweep(spec, output_dir=tmp_path / "remote",
                       scheduler=cluster_client.scheduler.address).table
    local = run_sweep(spec, output_dir=tmp_path / "local", workers=2).table
    in_process = run_sweep(spec, output_dir=tmp_path / "inproc", workers=1).table
    _same(remote, in_process)
    _same(local, in_process)


def test_failing_run_is_recorded_and_the_others_finish(
        datasets_root: str, cluster_executor: Executor, tmp_path: Path) -> None:
    spec = _spec(datasets_root, ["lookback=13,48,96"], strategy=FLAKY)
    table = run_sweep(spec, output_dir=tmp_path, executor=cluster_executor).table
    assert table["param_lookback"].tolist() == [13, 48, 96]
    assert "lookback 13 is unlucky" in table.loc[0, "error"]
    assert pd.isna(table.loc[0, "sharpe"])
    assert table.loc[1:, "error"].isna().all()
    assert table.loc[1:, "trades"].gt(0).all()


def test_interrupt_keeps_finished_rows_and_resume_runs_only_the_rest(
        datasets_root: str, tmp_path: Path) -> None:
    spec = _spec(datasets_root, GRID)

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    first = CountingExecutor()
    partial = run_sweep(spec, output_dir=tmp_path, sweep_id="s", executor=first,
                        on_progress=stop_after_two)
    assert not partial.is_complete
    kept = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert kept["run"].tolist() == [0, 1]

    second = CountingExecutor()
    resumed = run_sweep(spec, output_dir=tmp_path, sweep_id="s", executor=second,
                        is_resume=True)
    assert second.count == 2
    assert (resumed.n_skipped, resumed.n_run) == (2, 2)
    assert resumed.is_complete

    third = CountingExecutor()
    run_sweep(spec, output_dir=tmp_path, sweep_id="s", executor=third, is_resume=True)
    assert third.count == 0

    fresh = run_sweep(spec, output_dir=tmp_path / "fresh", workers=1).table
    _same(pd.read_parquet(tmp_path / "s" / "results.parquet"), fresh)


def test_best_runs_get_full_result_folders(datasets_root: str, tmp_path: Path) -> None:
    spec = _spec(datasets_root, GRID, metric="total_return")
    result = run_sweep(spec, output_dir=tmp_path, workers=1, best=1)
    top = result.table.sort_values("total_return", ascending=False).iloc[0]
    assert [p.name for p in result.best_paths] == [f"01-{top['param_hash']}"]
    best = result.best_paths[0]
    assert (best / "equity.parquet").is_file()
    assert (best / "report.html").is_file()
    assert json.loads((best / "metrics.json").read_text())["total_return"] == top["total_return"]


def test_walk_forward_tests_after_training_and_stitches_oos_equity(
        datasets_root: str, tmp_path: Path) -> None:
    spec = _spec(datasets_root, ["lookback=24,48"], end="2025-03-02")
    wf = WalkForwardSpec(train_ms=30 * MS_PER_DAY, test_ms=10 * MS_PER_DAY)
    table, equity, ok = run_walk_forward(spec, wf, out=tmp_path, workers=1)
    assert ok
    windows = table[table["window"] != "overall"]
    # 60 days = 30 train + 3 x 10 test
    assert len(windows) == 3
    for w in windows.to_dict("records"):
        assert parse_utc_ms(w["train_end"]) <= parse_utc_ms(w["test_start"])
        assert w["param_lookback"] in (24, 48)
        assert pd.isna(w["error"])
    # every out-of-sample equity point lies in some test window, none in the first train span
    first_test = parse_utc_ms(windows.iloc[0]["test_start"])
    ts = equity.index.as_unit("ms").asi8
    assert ts.min() > first_test
    assert ts.max() <= parse_utc_ms(windows.iloc[-1]["test_end"])
    assert equity.iloc[0] == pytest.approx(1.0, abs=0.05)
    stitched = float(equity.iloc[-1]) - 1.0
    chained = float((1 + windows["oos_total_return"]).prod()) - 1.0
    assert stitched == pytest.approx(chained, rel=1e-9)
    assert (tmp_path / "walk_forward.parquet").is_file()
    assert (tmp_path / "oos_equity.parquet").is_file()


def test_cli_sweep_writes_results_and_reports_bad_input_in_one_line(
        datasets_root: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from backtester.cli import _register, cli

    _register()
    args = ["sweep", PAIR, "--dataset", "sample", "--datasets", datasets_root,
            "--grid", "lookback=48,96", "--param", "entry_z=2", "--start", START, "--end", END,
            "--symbols", ",".join(SYMBOLS), "--workers", "1", "--output-dir", str(tmp_path),
            "--quiet"]
    ok = CliRunner().invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    folder = Path(ok.output.strip())
    table = pd.read_parquet(folder / "results.parquet")
    assert table["param_lookback"].tolist() == [48, 96]
    assert table["param_entry_z"].tolist() == [2.0, 2.0]
    bad = CliRunner().invoke(cli, [*args[:7], "lookbak=1"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "error: --grid: HedgedPair has no parameter 'lookbak'; did you mean 'lookback'? "
        "(parameters: btc, entry_z, eth, exit_z, leverage, lookback, notional_usd; run keys: "
        "leverage, default_leverage, margin_mode, margin_check, call_level, fill, slippage_bps, "
        "volume_impact, liquidation_slippage_bps, funding, profile, adl, stop_on_bankruptcy)"]


def test_cli_sweep_sweeps_run_keys_and_prints_a_readable_best_table_16(
        datasets_root: str, tmp_path: Path) -> None:
    # issue 16 items 10, 11, 13: a run key (margin_mode) in the grid, progress on a terminal,
    # the "best by" table readable at 80 columns (it used to be all "…")
    from click.testing import CliRunner

    from backtester.cli import _register, cli
    from backtester.display import metric

    _register()
    args = ["sweep", PAIR, "--dataset", "sample", "--datasets", datasets_root,
            "--grid", "margin_mode=cross,isolated", "--grid", "lookback=48,96",
            "--start", START, "--end", END, "--symbols", ",".join(SYMBOLS), "--workers", "1",
            "--output-dir", str(tmp_path)]
    res = CliRunner().invoke(cli, args, env={"TTY_COMPATIBLE": "1"})
    assert res.exit_code == 0, res.output
    assert "sweep 0/4 runs" in res.stderr  # the progress bar, on stderr
    out = re.sub(r"\x1b\[[0-9;]*m", "", res.stdout)  # stdout is a "terminal" too: colours
    folder = Path(out.split("results: ")[1].split()[0])
    table = pd.read_parquet(folder / "results.parquet")
    assert table["param_run.margin_mode"].tolist() == ["cross", "cross", "isolated", "isolated"]
    # each row is the stand-alone run with that margin mode
    alone = backtester.run(PAIR, dataset="sample", datasets_root=datasets_root, start=START,
                           end=END, margin_mode="isolated", params={"lookback": 96})
    assert table["total_return"].iloc[3] == alone.metrics["total_return"]
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()
               if not line.startswith(("results: ", "report: "))) <= 80
    best = table.sort_values(["sharpe", "run"], ascending=[False, True]).iloc[0]
    assert metric("sharpe", best["sharpe"]) in out
    assert metric("total_return", best["total_return"]) in out
    assert "run.margin_mode" in out


def test_cli_sweep_help_and_walk_forward_summary_16(datasets_root: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from backtester.cli import _register, cli

    _register()
    helptext = CliRunner().invoke(cli, ["sweep", "--help"]).output
    assert "cross | isolated | portfolio" in " ".join(helptext.split())
    args = ["sweep", PAIR, "--dataset", "sample", "--datasets", datasets_root,
            "--grid", "lookback=24,48", "--start", START, "--end", "2025-03-02",
            "--symbols", ",".join(SYMBOLS), "--workers", "1", "--output-dir", str(tmp_path),
            "--walk-forward", "train=30d,test=10d"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    out = res.stdout
    # the out-of-sample summary, not only file paths
    assert "walk-forward: out-of-sample" in out
    folder = Path(out.split("results: ")[1].split()[0])
    wf = pd.read_parquet(folder / "walk_forward.parquet")
    from backtester.display import metric

    overall = wf[wf["window"] == "overall"].iloc[0]
    assert metric("total_return", overall["oos_total_return"]) in out
    for w in wf[wf["window"] != "overall"].to_dict("records"):
        assert metric("sharpe", w["oos_sharpe"]) in out
    assert "…" not in out
