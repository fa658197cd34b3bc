"""``backtester sweep``: parameter sweeps and walk-forward on a local or remote Dask cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from backtester import display
from backtester.cli import cli, friendly_errors
from backtester.cli._progress import counter, progress_for
from backtester.cli._tables import print_table

_SHOWN = ("total_return", "sharpe", "max_drawdown", "trades", "liquidations", "margin_calls")


def _param_names(table: Any) -> list[str]:
    return [c for c in table.columns if c.startswith("param_") and c != "param_hash"]


def _cell(column: str, value: Any) -> str:
    # parameter values as given (never rounded), metrics in their unit
    if column.startswith("param_"):
        plain = value.item() if hasattr(value, "item") else value
        return display.UNDEFINED if plain is None or plain != plain else str(plain)
    return display.metric(column, value)


def _summary(console: Console, result: Any, metric: str) -> None:
    from backtester.sweep import select_best

    table = result.table
    n_failed = int(table["error"].notna().sum())
    console.print(f"{len(table)} runs ({result.n_skipped} resumed, {n_failed} failed)")
    top = select_best(table, metric, is_maximize=result.spec.is_maximize, k=5)
    if len(top):
        names = _param_names(table)
        cols = ["run", *names, *dict.fromkeys((metric, *_SHOWN))]
        rows = [[str(rec["run"]), *(_cell(c, rec[c]) for c in cols[1:])]
                for rec in top.to_dict("records")]
        print_table(console, [c.removeprefix("param_") for c in cols], rows,
                    title=f"best by {metric}")
    if n_failed:
        first = table[table["error"].notna()].iloc[0]
        console.print(f"first failure (run {first['run']}): {first['error']}", soft_wrap=True,
                      markup=False)


def _walk_forward_summary(console: Console, folder: Path, metric: str) -> None:
    import pandas as pd

    table = pd.read_parquet(folder / "walk_forward.parquet")
    names = _param_names(table)
    measures = list(dict.fromkeys(("total_return", "sharpe", "max_drawdown", metric)))
    cols = ["window", "test_start", "test_end", *names,
            *(f"oos_{m}" for m in measures), f"is_{metric}"]
    cols = [c for c in cols if c in table.columns]
    rows = []
    for rec in table.to_dict("records"):
        row = []
        for c in cols:
            key = c.removeprefix("oos_").removeprefix("is_")
            v = rec[c]
            if c in ("test_start", "test_end"):
                row.append(display.date(v))
            elif c.startswith(("oos_", "is_")):
                row.append(display.metric(key, v))
            else:
                row.append(_cell(c, None if v is pd.NA else v))
        rows.append(row)
    print_table(console, [c.removeprefix("param_") for c in cols], rows,
                title="walk-forward: out-of-sample (oos_) by test window, "
                      "in-sample (is_) of the chosen parameters",
                notes=["overall: the test windows chained (each starts where the previous "
                       "ended); its is_ value is the mean over windows"])


@cli.command()
@click.argument("strategy")
@click.option("--dataset", required=True, help="Stored dataset name (sample, binanceusdm, ...).")
@click.option("--timeframe", "-t", help="Trade candle timeframe (5m, 1h, ...) when the dataset "
                                        "holds several.")
@click.option("--grid", "grid", multiple=True, required=True,
              help="name=v1,v2,... or name=start:stop:step (stop inclusive); repeat. A name is "
                   "a strategy parameter, or a run key (leverage, margin_mode, call_level, "
                   "slippage_bps, fill, funding, profile, ...); run.NAME forces the run key.")
@click.option("--param", "params", multiple=True, help="Fixed strategy parameter NAME=VALUE.")
@click.option("--random", "n_random", type=int, help="Run N parameter sets sampled from the grid.")
@click.option("--max-runs", type=click.IntRange(min=1), default=None,
              help="Refuse grids of more parameter sets than this, counted before they are "
                   "built (default 100,000: backtester.sweep.MAX_GRID_RUNS).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random.")
@click.option("--metric", default="sharpe", show_default=True, help="Metric that ranks runs.")
@click.option("--maximize/--minimize", "is_maximize", default=True, show_default=True)
@click.option("--scheduler", help="Dask scheduler address tls://host:8786 or tcp://host:8786 "
                                   "(default: a local cluster secured with temporary TLS "
                                   "credentials).")
@click.option("--tls-ca-file", type=click.Path(dir_okay=False),
              help="With --scheduler tls://...: CA certificate (PEM) that signed the cluster's.")
@click.option("--tls-cert", type=click.Path(dir_okay=False),
              help="With --scheduler tls://...: this client's certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False),
              help="With --scheduler tls://...: this client's private key (PEM).")
@click.option("--workers", type=int, help="Local worker processes (1 = in process).")
@click.option("--resume", "is_resume", is_flag=True,
              help="Skip runs already in results.parquet.")
@click.option("--best", type=int, default=0, show_default=True,
              help="Write full run folders for the top K runs.")
@click.option("--walk-forward", "walk_forward",
              help="train=180d,test=30d[,anchored]: optimise per train window, test after it.")
@click.option("--start", help="UTC start date, e.g. 2025-03-01.")
@click.option("--end", help="UTC end date (exclusive).")
@click.option("--symbols", help="Comma-separated instruments to load (default: all).")
@click.option("--profile", help="Exchange profile (default: the dataset's).")
@click.option("--margin-mode", help="cross | isolated | portfolio (the same for every run; "
                                    "sweep it with --grid margin_mode=cross,isolated).")
@click.option("--collateral", multiple=True, help="Starting balance ASSET=AMOUNT (repeat).")
@click.option("--sweep-id", help="Folder name under --output-dir (default from the spec hash).")
@click.option("--datasets", "datasets_root", type=click.Path(file_okay=False),
              help="Datasets folder (default ./datasets or $BACKTESTER_DATASETS).")
@click.option("--output-dir", default="reports", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar; print only the results folder.")
@friendly_errors
def sweep(strategy: str, dataset: str, timeframe: str | None, grid: tuple[str, ...],
          params: tuple[str, ...], n_random: int | None, max_runs: int | None, seed: int,
          metric: str, is_maximize: bool, scheduler: str | None, tls_ca_file: str | None,
          tls_cert: str | None, tls_key: str | None, workers: int | None, is_resume: bool,
          best: int,
          walk_forward: str | None, start: str | None, end: str | None, symbols: str | None,
          profile: str | None, margin_mode: str | None, collateral: tuple[str, ...],
          sweep_id: str | None, datasets_root: str | None, output_dir: str,
          quiet: bool) -> None:
    """Run STRATEGY over a parameter grid (or walk-forward) on a Dask cluster.

    Without --scheduler the runs use a local cluster sized to the machine (--workers 1 runs in
    process). The backtester package must be installed on the scheduler and the workers.

    \b
    Example:
      backtester sweep strategies/hedged_pair.py --dataset sample \\
          --grid lookback=48,96,168 --grid entry_z=1.5:2.5:0.5 --metric sharpe --best 3
    """
    from backtester.api import load_strategy
    from backtester.errors import ConfigError
    from backtester.paths import safe_component
    from backtester.sweep import (
        MAX_GRID_RUNS,
        SchedulerTls,
        SweepSpec,
        check_scheduler_address,
        parse_grid,
        run_sweep,
    )

    safe_component(dataset, field="--dataset")
    if sweep_id is not None:
        safe_component(sweep_id, field="--sweep-id")
    if scheduler is not None:
        check_scheduler_address(scheduler)
    tls_files = (tls_ca_file, tls_cert, tls_key)
    tls = None
    if any(tls_files):
        if not all(tls_files):
            msg = "--tls-ca-file, --tls-cert and --tls-key go together: give all three"
            raise ConfigError(msg)
        if scheduler is None or not scheduler.startswith("tls://"):
            msg = "--tls-ca-file/--tls-cert/--tls-key: need --scheduler tls://host:port"
            raise ConfigError(msg)
        tls = SchedulerTls(ca_file=str(tls_ca_file), cert_file=str(tls_cert),
                           key_file=str(tls_key))
    cls = load_strategy(strategy)
    parsed = parse_grid([*grid, *params], cls.parameters, strategy=cls.__name__,
                        max_runs=max_runs or MAX_GRID_RUNS)
    run_keys: dict[str, Any] = {}
    if timeframe:
        run_keys["timeframe"] = timeframe
    if profile:
        run_keys["profile"] = profile
    if margin_mode:
        run_keys["margin_mode"] = margin_mode
    if collateral:
        run_keys["collateral"] = list(collateral)
    spec = SweepSpec(strategy=strategy, dataset=dataset, grid=parsed,
                     datasets_root=datasets_root, start=start, end=end,
                     symbols=tuple(s.strip() for s in symbols.split(",")) if symbols else None,
                     run_keys=run_keys, metric=metric, is_maximize=is_maximize,
                     random=n_random, seed=seed)
    with progress_for(quiet=quiet) as progress:
        on_progress = counter(progress, "sweep", "runs")
        if walk_forward:
            from backtester.sweep.walk_forward import parse_walk_forward, run_walk_forward_sweep

            result = run_walk_forward_sweep(spec, parse_walk_forward(walk_forward),
                                            output_dir=output_dir, sweep_id=sweep_id,
                                            workers=workers, scheduler=scheduler,
                                            tls=tls, on_progress=on_progress)
        else:
            result = run_sweep(spec, output_dir=output_dir, sweep_id=sweep_id, workers=workers,
                               scheduler=scheduler, tls=tls, is_resume=is_resume, best=best,
                               on_progress=on_progress)
    if not result.is_complete:
        click.echo(f"interrupted: finished runs kept in {result.path}", err=True)
        sys.exit(130)
    if quiet:
        click.echo(str(result.path))
        return
    out = Console()
    if walk_forward:
        _walk_forward_summary(out, result.path, metric)
    else:
        _summary(out, result, metric)
    out.print(f"results: {result.path}", soft_wrap=True)
    out.print(f"report: {result.path / 'index.html'}", soft_wrap=True)
