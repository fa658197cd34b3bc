"""``backtester stress``: shock scenarios, smallest crash and Monte Carlo on an account."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from backtester.cli import cli, friendly_errors
from backtester.errors import ConfigError

if TYPE_CHECKING:
    from backtester.risk.stress import StressReport


@contextmanager
def _progress(console: Console, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(TextColumn("monte carlo"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("paths", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2%}"


def _show(console: Console, report: StressReport) -> None:
    ccy = report.valuation_currency
    console.print(f"[bold]{report.source}[/bold]: {report.profile} {report.mode}, equity "
                  f"{report.equity:,.2f} {ccy}, status {report.status}")
    table = Table(title="stress scenarios")
    for col in ("scenario", f"equity ({ccy})", "change", "margin ratio", "status",
                "liquidated positions"):
        table.add_column(col, justify="left" if col in ("scenario", "liquidated positions")
                         else "right", no_wrap=col == "scenario")
    for s in report.scenarios:
        style = {"liquidate": "red", "call": "yellow"}.get(s.status, "")
        ratio = "—" if s.margin_ratio is None else f"{s.margin_ratio:.2%}"
        table.add_row(s.name, f"{s.equity:,.2f}", f"{s.equity_change:+,.2f}", ratio,
                      f"[{style}]{s.status}[/{style}]" if style else s.status,
                      ", ".join(s.liquidated) or "—")
    if report.scenarios:
        console.print(table)
    crash = report.smallest_crash
    console.print(f"smallest uniform crash that liquidates ({', '.join(crash.assets) or '—'}): "
                  f"{_pct(crash.move) if crash.move is not None else 'none down to -99%'}")
    btc = report.smallest_btc_crash
    if btc is not None:
        console.print("smallest BTC-only crash that liquidates: "
                      f"{_pct(btc.move) if btc.move is not None else 'none down to -99%'}")
    if report.distance is not None:
        console.print(f"closest distance to liquidation during the run: "
                      f"{_pct(report.distance.minimum)}")
    mc = report.monte_carlo
    if mc is not None:
        console.print(f"liquidation probability over {mc.horizon_bars} bars ({mc.n_paths} paths, "
                      f"seed {mc.seed}, blocks of {mc.block_bars} bars): {mc.probability:.2%} "
                      f"[{mc.ci_low:.2%}, {mc.ci_high:.2%}] at {mc.confidence:.0%}")
    for n in report.notes:
        console.print(f"[yellow]note:[/yellow] {n}")


def _betas(beta_eth: float | None, betas: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    if beta_eth is not None:
        out["ETH"] = beta_eth
    for item in betas:
        asset, sep, value = item.partition("=")
        try:
            out[asset.strip().upper()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            msg = f"--beta: expected ASSET=NUMBER such as SOL=1.5, got {item!r}"
            raise ConfigError(msg)
    return out


@cli.command("stress")
@click.argument("source", metavar="RUN_DIR|SNAPSHOT.json")
@click.option("--scenario", "scenarios", multiple=True,
              help="Named historical scenario (repeat); default: all of scenarios.json.")
@click.option("--grid", "grid", help="BTC moves as btc=start:stop:step (e.g. btc=-0.05:-0.5:0.05).")
@click.option("--beta-eth", type=float, help="ETH move = beta × BTC move in the grid.")
@click.option("--beta", "betas", multiple=True, help="Other ASSET=BETA for the grid (repeat).")
@click.option("--vol", "vol", default="0", show_default=True,
              help="Grid vol moves start:stop:step (relative: 1 = vol doubles).")
@click.option("--monte-carlo", "n_paths", type=int, default=0, show_default=True,
              help="Monte Carlo paths (block bootstrap of the run's own returns).")
@click.option("--horizon", default="7d", show_default=True, help="Monte Carlo horizon (7d, 12h).")
@click.option("--seed", type=int, default=0, show_default=True, help="Monte Carlo seed.")
@click.option("--block-bars", type=int, help="Bootstrap block length in bars (default n^(1/3)).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the results to this JSON file.")
@click.option("--quiet", "is_quiet", is_flag=True, help="No table and no progress bar.")
@friendly_errors
def stress_command(source: str, scenarios: tuple[str, ...], grid: str | None,
                   beta_eth: float | None, betas: tuple[str, ...], vol: str, n_paths: int,
                   horizon: str, seed: int, block_bars: int | None, json_out: str | None,
                   is_quiet: bool) -> None:
    """Stress an account: historical crashes, user grids, smallest crash, Monte Carlo.

    Reads a run folder (state.json, positions.parquet, equity.parquet) or a margin-calculator
    SNAPSHOT.json; prints equity, margin ratio, status and the positions the profile would
    liquidate per scenario. With a run folder the results go to RUN_DIR/stress.json.

    \b
    Example:
      backtester stress reports/my-run
      backtester stress reports/my-run --scenario ftx_nov_2022 \\
          --grid btc=-0.05:-0.5:0.05 --beta-eth 1.2 --vol 0:1:0.5
      backtester stress reports/my-run --monte-carlo 1000 --horizon 7d --seed 1
    """
    from backtester.risk.scenarios import Grid, parse_range
    from backtester.risk.stress import load_snapshot, stress_test

    grid_spec = None
    if grid is not None:
        key, sep, spec = grid.partition("=")
        if not sep or key.strip().lower() != "btc":
            msg = f"--grid: expected btc=start:stop:step such as btc=-0.05:-0.5:0.05, got {grid!r}"
            raise ConfigError(msg)
        grid_spec = Grid(btc=parse_range(spec, where="--grid"), betas=_betas(beta_eth, betas),
                         vol=parse_range(vol, where="--vol"))
    elif beta_eth is not None or betas:
        msg = "--beta-eth/--beta: only used with --grid btc=start:stop:step"
        raise ConfigError(msg)
    loaded = load_snapshot(source)
    console = Console(stderr=False)
    chosen = list(scenarios) if scenarios else ([] if grid_spec is not None else None)
    with _progress(Console(stderr=True), enabled=not is_quiet and sys.stderr.isatty()
                   and n_paths > 0) as update:
        report = stress_test(loaded, scenarios=chosen, grid=grid_spec, monte_carlo=n_paths,
                             horizon=horizon, seed=seed, block_bars=block_bars, progress=update)
    data = json.dumps(report.to_json(), indent=2, allow_nan=False)
    if loaded.run_dir is not None:
        (loaded.run_dir / "stress.json").write_text(data, encoding="utf-8")
    if json_out is not None:
        Path(json_out).write_text(data, encoding="utf-8")
    if not is_quiet:
        _show(console, report)
        if loaded.run_dir is not None:
            console.print(f"written {loaded.run_dir / 'stress.json'}")
