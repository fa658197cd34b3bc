"""``backtester sweep``: parameter sweeps and walk-forward on a local or remote Dask cluster."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from backtester.cli import cli, friendly_errors

_SHOWN = ("total_return", "sharpe", "max_drawdown", "trades", "liquidations", "margin_calls")


@contextmanager
def _progress(console: Console, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("runs", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _summary(console: Console, result: Any, metric: str) -> None:
    from backtester.sweep import select_best

    table = result.table
    n_failed = int(table["error"].notna().sum())
    console.print(f"{len(table)} runs ({result.n_skipped} resumed, {n_failed} failed)")
    top = select_best(table, metric, is_maximize=result.spec.is_maximize, k=5)
    if len(top):
        names = [c for c in table.columns if c.startswith("param_") and c != "param_hash"]
        out = Table(title=f"best by {metric}")
        for col in ("run", *names, *dict.fromkeys((metric, *_SHOWN))):
            out.add_column(col.removeprefix("param_"), justify="right")
        for rec in top.to_dict("records"):
            cells = []
            for col in ("run", *names, *dict.fromkeys((metric, *_SHOWN))):
                v = rec[col]
                cells.append(f"{v:,.4f}" if isinstance(v, float) else str(v))
            out.add_row(*cells)
        console.print(out)
    if n_failed:
        first = table[table["error"].notna()].iloc[0]
        console.print(f"[yellow]first failure (run {first['run']}):[/yellow] {first['error']}")


@cli.command()
@click.argument("strategy")
@click.option("--dataset", required=True, help="Stored dataset name (sample, binanceusdm, ...).")
@click.option("--grid", "grid", multiple=True, required=True,
              help="name=v1,v2,... or name=start:stop:step (stop inclusive); repeat.")
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
@click.option("--margin-mode", help="cross | isolated")
@click.option("--collateral", multiple=True, help="Starting balance ASSET=AMOUNT (repeat).")
@click.option("--sweep-id", help="Folder name under --output-dir (default from the spec hash).")
@click.option("--datasets", "datasets_root", type=click.Path(file_okay=False),
              help="Datasets folder (default ./datasets or $BACKTESTER_DATASETS).")
@click.option("--output-dir", default="reports", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar; print only the results folder.")
@friendly_errors
def sweep(strategy: str, dataset: str, grid: tuple[str, ...], params: tuple[str, ...],
          n_random: int | None, max_runs: int | None, seed: int, metric: str, is_maximize: bool,
          scheduler: str | None, tls_ca_file: str | None, tls_cert: str | None,
          tls_key: str | None, workers: int | None, is_resume: bool, best: int,
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
    console = Console(stderr=True)
    show = not quiet and console.is_terminal
    with _progress(console, enabled=show) as on_progress:
        if walk_forward:
            from backtester.sweep_walk_forward import parse_walk_forward, run_walk_forward_sweep

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
    if not walk_forward:
        _summary(out, result, metric)
    out.print(f"results: {result.path}")
    out.print(f"report: {result.path / 'index.html'}")
