"""``backtester stress``: shock scenarios, nearest liquidating move and Monte Carlo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.text import Text

from backtester import display
from backtester.cli import cli, friendly_errors
from backtester.cli._progress import counter, progress_for
from backtester.cli._tables import print_table
from backtester.errors import ConfigError

if TYPE_CHECKING:
    from backtester.risk.stress import CrashResult, StressReport


def _line(console: Console, text: str) -> None:
    # wrapped at spaces to the console's width: words and numbers stay whole
    console.print(Text(text))


def _move(move: float | None, *, up: bool = False) -> str:
    from backtester.risk.shock import FALL_LIMIT, RISE_LIMIT

    if move is None:
        return f"none up to {RISE_LIMIT:+,.0%}" if up else f"none down to {-FALL_LIMIT:.0%}"
    return display.percent(move, signed=True)


def _nearest(c: CrashResult | None) -> str:
    from backtester.risk.shock import FALL_LIMIT, RISE_LIMIT

    if c is None:
        return (f"none (no fall to {-FALL_LIMIT:.0%} or rise to {RISE_LIMIT:+,.0%} of any "
                "underlying alone or together)")
    if c.move == 0.0:
        return "0% (already liquidating)"
    what = ("every underlying together" if c.underlying == "all"
            else f"{c.underlying} alone, other prices held")
    first = ", ".join(c.liquidated) or "none"
    return (f"{display.percent(c.move, signed=True)} ({c.direction}: {what}); "
            f"liquidated first: {first}")


def _show(console: Console, report: StressReport) -> None:
    ccy = report.valuation_currency
    _line(console, f"{report.source}: {report.profile} {report.mode}, equity "
                   f"{display.money(report.equity)} {ccy}, status {report.status}")
    rows = [[s.name, display.money(s.equity), display.money(s.equity_change, signed=True),
             display.percent(s.margin_ratio), s.status, ", ".join(s.liquidated) or "none"]
            for s in report.scenarios]
    if rows:
        print_table(console, ["scenario", f"equity ({ccy})", f"change ({ccy})", "margin ratio",
                              "status", "liquidated positions"], rows, title="stress scenarios",
                    text=(0, 4, 5),
                    notes=["margin ratio = maintenance margin / margin balance; 100% liquidates"])
    from backtester.risk.shock import Direction

    nearest = report.nearest_liquidation
    labels = list(dict.fromkeys(c.underlying for c in nearest.moves))
    crash_rows = []
    for label in labels:
        down = nearest.get(label, Direction.DOWN)
        up = nearest.get(label, Direction.UP)
        crash_rows.append([
            "all together" if label == "all" else f"{label} alone",
            _move(None if down is None else down.move),
            _move(None if up is None else up.move, up=True)])
    if crash_rows:
        print_table(console, ["moved", "fall that liquidates", "rise that liquidates"],
                    crash_rows, title="nearest liquidating moves", text=(0, 1, 2),
                    notes=["alone: every other price held at its mark (see docs/stress.md)"])
    _line(console, f"nearest liquidating move: {_nearest(nearest.nearest)}")
    if report.distance is not None:
        _line(console, "closest distance to liquidation during the run: "
                       f"{display.percent(report.distance.minimum, signed=True)}")
    mc = report.monte_carlo
    if mc is not None:
        _line(console, f"liquidation probability over {mc.horizon_bars:,} bars ({mc.n_paths:,} "
                       f"paths, seed {mc.seed}, blocks of {mc.block_bars} bars): "
                       f"{display.percent(mc.probability)} [{display.percent(mc.ci_low)}, "
                       f"{display.percent(mc.ci_high)}] at {mc.confidence:.0%}")
    for n in report.notes:
        _line(console, f"note: {n}")


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
    """Stress an account: historical crashes, user grids, nearest liquidation, Monte Carlo.

    Reads a run folder (state.json, positions.parquet, equity.parquet) or a margin-calculator
    SNAPSHOT.json; prints equity, margin ratio, status and the positions the profile would
    liquidate per scenario, and the smallest fall and rise of each underlying alone and of all
    together that liquidates the account. With a run folder the results go to
    RUN_DIR/stress.json.

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
    with progress_for(quiet=is_quiet) as progress:
        report = stress_test(loaded, scenarios=chosen, grid=grid_spec, monte_carlo=n_paths,
                             horizon=horizon, seed=seed, block_bars=block_bars,
                             progress=counter(progress, "monte carlo", "paths"))
    data = json.dumps(report.to_json(), indent=2, allow_nan=False)
    if loaded.run_dir is not None:
        (loaded.run_dir / "stress.json").write_text(data, encoding="utf-8")
    if json_out is not None:
        Path(json_out).write_text(data, encoding="utf-8")
    if not is_quiet:
        _show(console, report)
        if loaded.run_dir is not None:
            _line(console, f"written {loaded.run_dir / 'stress.json'}")
