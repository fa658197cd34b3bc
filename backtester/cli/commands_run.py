"""``backtester run`` and ``backtester demo``."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from backtester.cli import cli, friendly_errors

_HEADLINE = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades", "win_rate",
             "fees_paid", "funding_paid", "liquidations", "margin_calls",
             "min_distance_to_liquidation", "max_margin_ratio", "return_on_average_margin",
             "return_on_peak_margin", "margin_utilization_mean", "idle_collateral_mean",
             "capital_velocity", "fee_drag", "funding_drag")
_PERCENT = {"total_return", "cagr", "max_drawdown", "win_rate", "min_distance_to_liquidation",
            "max_margin_ratio", "return_on_average_margin", "return_on_peak_margin",
            "margin_utilization_mean", "fee_drag", "funding_drag"}


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if key in _PERCENT and isinstance(value, float):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.2f}"
    return str(value)


def print_summary(result: Any, path: Path, *, console: Console | None = None) -> None:
    """Print the headline metrics of a run and where its files are."""
    console = console or Console()
    title = f"{result.strategy} on {result.meta.get('dataset')} ({result.meta.get('profile')}, " \
            f"{result.config.get('margin_mode')})"
    if result.meta.get("is_synthetic"):
        title += " — SYNTHETIC DATA"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in _HEADLINE:
        table.add_row(key, _fmt(key, result.metrics.get(key)))
    console.print(table)
    if result.comparison is not None:
        # one column per margin mode, one row per measure (fits a terminal)
        cmp = result.comparison.set_index("margin_mode")
        cmp_table = Table(title="margin modes compared")
        cmp_table.add_column("measure")
        for mode in cmp.index:
            cmp_table.add_column(str(mode), justify="right")
        for col in cmp.columns:
            key = "total_return" if col == "return_on_average_margin" else col
            cmp_table.add_row(col, *[_fmt(key if key in _PERCENT else col, cmp.loc[m, col])
                                     for m in cmp.index])
        console.print(cmp_table)
    for w in result.warnings[:5]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(f"results: {path}")
    report = path / "report.html"
    if report.exists():
        console.print(f"report: {report}")


def run_and_write(strategy: Any, *, quiet: bool = False, **keys: Any) -> tuple[Any, Path]:
    """Run, write the results folder (and its report) and return (result, folder).

    Invalid keys fail before anything is written. The folder is built under a temporary name
    and renamed when complete, so a failure never leaves a half-written folder. A strategy that
    raises leaves a folder holding only ``config.json`` and ``warnings.json`` (the error and its
    full traceback), then the error is raised again.
    """
    from backtester.api import prepare, run_all
    from backtester.errors import StrategyError

    prep = prepare(strategy, **keys)
    out_dir = Path(keys.get("output_dir") or "reports")
    run_id = keys.get("run_id") or (f"{prep.strategy_class.__name__}-{prep.data_name}-"
                                    f"{prep.config.config_hash()[:8]}")
    final = out_dir / run_id
    with _building(final) as tmp:
        try:
            result = run_all(prep)
        except StrategyError as exc:
            _write_failure(tmp, prep, exc)
            exc.run_folder = final
            raise
        result.write(tmp)
        folders = [tmp]
        for mode, alt in result.meta.get("alternatives", {}).items():
            folders.append(alt.write(tmp / f"alternative-{mode}"))
        from backtester.report import write_report

        for folder in folders:
            write_report(folder, datasets_root=keys.get("datasets_root"))
    result.path = final
    for mode, alt in result.meta.get("alternatives", {}).items():
        alt.path = final / f"alternative-{mode}"
    return result, final


@contextmanager
def _building(final: Path) -> Iterator[Path]:
    # build in a hidden sibling folder; on success (or a recorded strategy failure) swap it in
    # for ``final`` (an older folder of the same id is replaced), on any other error delete it
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    from backtester.errors import StrategyError

    try:
        yield tmp
    except StrategyError:
        _swap_in(tmp, final)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, final)


def _swap_in(tmp: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
    if final.exists():
        final.replace(old)
    tmp.replace(final)
    shutil.rmtree(old, ignore_errors=True)


def _write_failure(folder: Path, prep: Any, exc: Any) -> None:
    from backtester.data.store import atomic_write_bytes

    config = {**prep.config.as_dict(), "strategy": prep.strategy_class.__name__,
              "dataset": prep.data_name, "config_hash": prep.config.config_hash(),
              "status": "failed", "error": str(exc)}
    warnings = [*prep.warnings, f"run failed: {exc}", exc.traceback_text]
    for name, payload in (("config", config), ("warnings", warnings)):
        atomic_write_bytes(folder / f"{name}.json", json.dumps(
            payload, indent=2, sort_keys=True, default=str).encode())


_OPTIONS = [
    click.option("--dataset", help="Stored dataset name (sample, binanceusdm, ...)."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False),
                 help="run.toml with any run keys; flags override it."),
    click.option("--profile", help="Exchange profile (binance-usdm, binance-coinm, bybit, okx, "
                                   "deribit)."),
    click.option("--collateral", multiple=True, help="Starting balance ASSET=AMOUNT (repeat)."),
    click.option("--margin-mode", help="cross | isolated | portfolio"),
    click.option("--margin-check", help="intrabar (default) | close"),
    click.option("--leverage", multiple=True, help="SYMBOL=LEVERAGE, or one number for all."),
    click.option("--call-level", type=float, help="Margin ratio that raises a margin call."),
    click.option("--fill", help="next_open (default) | close"),
    click.option("--slippage-bps", type=float, help="Market-order slippage in bps."),
    click.option("--liquidation-slippage-bps", type=float,
                 help="How far against the position a liquidation fills (bps)."),
    click.option("--funding", help="history (default) | zero"),
    click.option("--stop-on-bankruptcy/--continue-on-bankruptcy", default=None),
    click.option("--start", help="UTC start date, e.g. 2025-03-01."),
    click.option("--end", help="UTC end date."),
    click.option("--param", "params", multiple=True, help="Strategy parameter NAME=VALUE."),
    click.option("--compare-margin-modes", is_flag=True, default=None,
                 help="Also run the other margin modes (cross, isolated, portfolio) and compare."),
    click.option("--survival-collateral", is_flag=True, default=None,
                 help="Find the smallest starting collateral with no liquidation (re-runs)."),
    click.option("--run-id", help="Results folder name under --output-dir."),
    click.option("--output-dir", default="reports", show_default=True),
    click.option("--datasets", "datasets_root", type=click.Path(file_okay=False),
                 help="Datasets folder (default ./datasets or $BACKTESTER_DATASETS)."),
    click.option("--quiet", is_flag=True, help="Print only the results path."),
    click.option("--debug", is_flag=True,
                 help="On a strategy error, also print its full traceback."),
]


def _with_options(func: Any) -> Any:
    for opt in reversed(_OPTIONS):
        func = opt(func)
    return func


def _keys(kw: dict[str, Any]) -> dict[str, Any]:
    keys = dict(kw)
    for multi in ("collateral", "leverage", "params"):
        keys[multi] = list(keys[multi]) or None
    if keys.get("leverage") and len(keys["leverage"]) == 1 and "=" not in keys["leverage"][0]:
        keys["leverage"] = keys["leverage"][0]
    return keys


@cli.command()
@click.argument("strategy")
@_with_options
@friendly_errors
def run(strategy: str, quiet: bool, debug: bool, **kw: Any) -> None:
    """Run STRATEGY (a file path or module:Class) on a dataset and write its results.

    An exception in the strategy prints one line (strategy, hook, bar time, file:line); its
    full traceback is in the results folder's warnings.json, and printed with --debug.

    \b
    Example:
      backtester run strategies/hedged_pair.py --dataset sample --margin-mode isolated \\
          --collateral USDT=50000 --param entry_z=2.5 --compare-margin-modes
    """
    from backtester.errors import StrategyError

    try:
        result, path = run_and_write(strategy, quiet=quiet, **_keys(kw))
    except StrategyError as exc:
        if debug:
            click.echo(exc.traceback_text, err=True)
        where = exc.run_folder / "warnings.json" if exc.run_folder else "the run's warnings"
        click.echo(f"error: {exc}; full traceback in {where}"
                   + ("" if debug else " (or rerun with --debug)"), err=True)
        sys.exit(2)
    if quiet:
        click.echo(str(path))
    else:
        print_summary(result, path)


@cli.command()
@click.option("--output-dir", default="reports", show_default=True)
@click.option("--datasets", "datasets_root", type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True)
@friendly_errors
def demo(output_dir: str, datasets_root: str | None, quiet: bool) -> None:
    """Generate the synthetic sample dataset (first use) and run the flagship strategy.

    \b
    Example:
      backtester demo
    """
    from backtester.data.sample import ensure_sample
    from backtester.data.store import Store

    root = Store(datasets_root).root
    if not quiet:
        click.echo(f"sample dataset: {ensure_sample(root)} (synthetic)")
    result, path = run_and_write("strategies.hedged_pair:HedgedPair", dataset="sample",
                                 datasets_root=datasets_root, output_dir=output_dir,
                                 compare_margin_modes=True)
    if quiet:
        click.echo(str(path))
    else:
        print_summary(result, path)
