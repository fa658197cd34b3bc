"""``backtester run`` and ``backtester demo``."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from backtester import display
from backtester.cli import cli, friendly_errors
from backtester.cli._progress import progress_for
from backtester.cli._tables import print_table
from backtester.progress import Progress
from backtester.progress import task as progress_task

_HEADLINE = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades", "win_rate",
             "fees_paid", "funding_paid", "liquidations", "margin_calls",
             "min_distance_to_liquidation", "max_margin_ratio", "return_on_average_margin",
             "return_on_peak_margin", "margin_utilization_mean", "idle_collateral_mean",
             "capital_velocity", "fee_drag", "funding_drag")
#: Headline metrics whose name gets its unit in the console table.
_UNIT_LABELS = {"fees_paid": "fees_paid (USD)", "funding_paid": "funding_paid (USD)",
                "idle_collateral_mean": "idle_collateral_mean (USD)",
                "average_initial_margin": "average_initial_margin (USD)",
                "survival_collateral_usd": "survival_collateral_usd (USD)",
                "sharpe": "sharpe (365-day year)", "sortino": "sortino (365-day year)"}
#: Plotly.js modes of ``--plotly`` (backtester.report.plotly_js.PlotlyMode; listed here so
#: that the command line starts without importing the report).
PLOTLY_MODES = ("inline", "cdn", "shared")


def print_summary(result: Any, path: Path, *, console: Console | None = None) -> None:
    """Print the headline metrics of a run (and its margin-mode comparison) and its files."""
    console = console or Console()
    title = (f"{result.strategy} on {result.meta.get('dataset')} ({result.meta.get('profile')}, "
             f"{result.config.get('margin_mode')})")
    if result.meta.get("is_synthetic"):
        title += " — SYNTHETIC DATA"
    rows = [[_UNIT_LABELS.get(key, key), display.metric(key, result.metrics.get(key))]
            for key in _HEADLINE]
    move = result.metrics.get("min_distance_move")
    if move:  # which move is the nearest (e.g. "ETH up")
        at = _HEADLINE.index("min_distance_to_liquidation")
        rows[at][1] = f"{rows[at][1]} ({move})"
    print_table(console, ["metric", "value"], rows, title=title, notes=[display.COST_SIGNS])
    if result.comparison is not None:
        # one column per margin mode, one row per measure (fits a terminal)
        cmp = result.comparison.set_index("margin_mode")
        modes = [str(m) for m in cmp.index]
        table = [[_UNIT_LABELS.get(str(col), str(col)),
                  *(display.metric(str(col), cmp.loc[m, col]) for m in cmp.index)]
                 for col in cmp.columns]
        print_table(console, ["measure", *modes], table, title="margin modes compared")
    rejected = result.rejections
    if len(rejected):
        # whenever an order was refused: how many, why, and the first message of each reason
        reasons = rejected["reason"].astype(str)
        counts = reasons.value_counts(sort=False)
        rows = [[reason, f"{int(counts[reason]):,}",
                 str(rejected.loc[reasons == reason, "message"].iloc[0])]
                for reason in sorted(counts.index, key=lambda r: (-int(counts[r]), r))]
        print_table(console, ["reason", "orders", "first message"], rows, text=(0, 2),
                    title=f"{len(rejected):,} orders rejected (rejections.parquet)")
    if result.meta.get("profile_reason"):
        console.print(f"profile {result.meta.get('profile')}: {result.meta['profile_reason']}",
                      soft_wrap=True)
    console.print(f"results: {path}", soft_wrap=True)
    report = path / "report.html"
    if report.exists():
        console.print(f"report: {report}", soft_wrap=True)


#: Warnings sharing a ``prefix: `` this many times or more are printed as one line.
_GROUP_AT = 3


def print_warnings(messages: list[tuple[str, Path]]) -> None:
    """Print each warning once, on one line, on stderr.

    ``messages`` are (text, the warnings.json that lists it). A family of warnings sharing a
    ``prefix:`` (the portfolio-margin assumptions, say) is printed as one line that names the
    file listing them all.
    """
    where: dict[str, Path] = {}
    for text, file in messages:
        where.setdefault(text, file)
    families: dict[str, list[str]] = {}
    for text in where:
        prefix, sep, _ = text.partition(": ")
        if sep:
            families.setdefault(prefix, []).append(text)
    shown: set[str] = set()
    for text in where:
        prefix = text.partition(": ")[0]
        family = families.get(prefix, [])
        if len(family) < _GROUP_AT:
            click.echo(f"warning: {text}", err=True)
        elif prefix not in shown:
            shown.add(prefix)
            click.echo(f"warning: {prefix}: {len(family)} of them, listed in "
                       f"{where[family[0]]}", err=True)


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Collect the warnings raised inside (instead of Python's two-line display of each)."""
    out: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield out
    out.extend(str(w.message) for w in caught)


def run_and_write(strategy: Any, *, progress: Progress | None = None,
                  plotly: str = "inline", alternative_reports: bool = False,
                  overwrite: bool = False,
                  **keys: Any) -> tuple[Any, Path, list[tuple[str, Path]]]:
    """Run, write the results folder and its report; return (result, folder, warnings).

    The warnings are (text, the warnings.json that lists it) for :func:`print_warnings`; a
    note about the folder (see below) comes first.
    Invalid keys fail before anything is written. The folder is built under a temporary name
    and renamed when complete, so a failure never leaves a half-written folder. A strategy that
    raises leaves a folder holding only ``config.json`` and ``warnings.json`` (the error and its
    full traceback), then the error is raised again.

    With ``compare_margin_modes`` the other modes' run files go to ``alternative-<mode>/``
    (the report's comparison reads them); their own full reports are written only with
    ``alternative_reports``.

    The folder is ``<output_dir>/<run_id>``, by default ``<strategy>-<dataset>-<run hash>``
    (the hash of the configuration, the strategy's source and resolved parameters, and the
    data: another strategy version gets another folder). A folder holding a finished run is
    never replaced silently: the same run (equal run hash) is replaced and a note says so;
    another finished run is kept and this one goes to ``<run_id>-2`` (``-3`` ...), unless
    ``overwrite``.
    """
    from backtester.api import prepare, run_all
    from backtester.errors import StrategyError
    from backtester.report import write_report

    with collected_warnings() as raised:
        prep = prepare(strategy, progress=progress, **keys)
        out_dir = Path(keys.get("output_dir") or "reports")
        run_hash = prep.run_hash()
        run_id = keys.get("run_id") or (f"{prep.strategy_class.__name__}-{prep.data_name}-"
                                        f"{run_hash[:8]}")
        final, note = _target_folder(out_dir / run_id, run_hash, overwrite=overwrite)
        with _building(final) as tmp:
            try:
                result = run_all(prep)
            except StrategyError as exc:
                _write_failure(tmp, prep, exc)
                exc.run_folder = final
                raise
            with progress_task(progress, "writing results"):
                result.write(tmp)
                folders = [alt.write(tmp / f"alternative-{mode}")
                           for mode, alt in result.meta.get("alternatives", {}).items()]
            reports = [tmp, *folders] if alternative_reports else [tmp]
            for folder in reports:
                label = final.name if folder == tmp else f"{final.name}/{folder.name}"
                write_report(folder, plotly=plotly, shared_dir=out_dir, progress=progress,
                             datasets_root=keys.get("datasets_root"), label=label)
    path = final
    result.path = path
    for mode, alt in result.meta.get("alternatives", {}).items():
        alt.path = path / f"alternative-{mode}"
    main_file = path / "warnings.json"
    messages = [(w, main_file) for w in [*([note] if note else []), *result.warnings, *raised]]
    for mode, alt in result.meta.get("alternatives", {}).items():
        messages += [(w, path / f"alternative-{mode}" / "warnings.json") for w in alt.warnings]
    return result, path, messages


def _target_folder(path: Path, run_hash: str, *, overwrite: bool) -> tuple[Path, str | None]:
    # where the run goes, and what the user must be told about a finished run already there
    # (a failed run's folder, "status": "failed", is replaced as before)
    def finished(folder: Path) -> dict[str, Any] | None:
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return config if isinstance(config, dict) and config.get("status") != "failed" \
            else None

    old = finished(path)
    if old is None:
        return path, None
    if overwrite:
        return path, f"replaced the finished run in {path} (--overwrite)"
    if old.get("run_hash") == run_hash:
        return path, (f"replaced the earlier identical run in {path} (same strategy source, "
                      "parameters, configuration and data)")
    k = 2
    while finished(path.parent / f"{path.name}-{k}") is not None:
        k += 1
    other = path.parent / f"{path.name}-{k}"
    return other, (f"{path} holds another finished run, kept; this run is in {other} "
                   "(--overwrite replaces it, --run-id names another folder)")


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
              "run_hash": prep.run_hash(), "status": "failed", "error": str(exc)}
    warnings = [*prep.warnings, f"run failed: {exc}", exc.traceback_text]
    for name, payload in (("config", config), ("warnings", warnings)):
        atomic_write_bytes(folder / f"{name}.json", json.dumps(
            payload, indent=2, sort_keys=True, default=str).encode())


_OPTIONS = [
    click.option("--dataset", help="Stored dataset name (sample, binanceusdm, ...)."),
    click.option("--timeframe", "-t", help="Trade candle timeframe (5m, 1h, ...) when the "
                                           "dataset holds several."),
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
    click.option("--run-id", help="Results folder name under --output-dir (default: "
                                  "<strategy>-<dataset>-<run hash>)."),
    click.option("--overwrite", is_flag=True, default=False,
                 help="Replace a finished run in the results folder (default: keep it and "
                      "write to <run-id>-2)."),
    click.option("--output-dir", default="reports", show_default=True),
    click.option("--datasets", "datasets_root", type=click.Path(file_okay=False),
                 help="Datasets folder (default ./datasets or $BACKTESTER_DATASETS)."),
    click.option("--plotly", type=click.Choice(PLOTLY_MODES), default="inline",
                 show_default=True,
                 help="How report.html loads plotly.js: inline (one self-contained file, "
                      "works offline), shared (one plotly-<version>.min.js in --output-dir, "
                      "referenced relatively) or cdn (needs a network to view)."),
    click.option("--alternative-reports", is_flag=True,
                 help="With --compare-margin-modes: also write a full report.html for each "
                      "other margin mode (the comparison table is in the main report)."),
    click.option("--quiet", is_flag=True,
                 help="Print only the results path (warnings still go to stderr); no "
                      "progress bars."),
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
def run(strategy: str, quiet: bool, debug: bool, plotly: str, alternative_reports: bool,
        **kw: Any) -> None:
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
        with progress_for(quiet=quiet) as progress:
            result, path, messages = run_and_write(strategy, progress=progress, plotly=plotly,
                                                   alternative_reports=alternative_reports,
                                                   **_keys(kw))
    except StrategyError as exc:
        if debug:
            click.echo(exc.traceback_text, err=True)
        where = exc.run_folder / "warnings.json" if exc.run_folder else "the run's warnings"
        click.echo(f"error: {exc}; full traceback in {where}"
                   + ("" if debug else " (or rerun with --debug)"), err=True)
        sys.exit(2)
    print_warnings(messages)
    if quiet:
        click.echo(str(path))
    else:
        print_summary(result, path)


@cli.command()
@click.option("--output-dir", default="reports", show_default=True)
@click.option("--datasets", "datasets_root", type=click.Path(file_okay=False))
@click.option("--plotly", type=click.Choice(PLOTLY_MODES), default="inline", show_default=True,
              help="How report.html loads plotly.js (see `backtester run --help`).")
@click.option("--alternative-reports", is_flag=True,
              help="Also write full reports for the isolated and portfolio runs.")
@click.option("--quiet", is_flag=True, help="Print only the results path; no progress bars.")
@friendly_errors
def demo(output_dir: str, datasets_root: str | None, plotly: str, alternative_reports: bool,
         quiet: bool) -> None:
    """Generate the synthetic sample dataset (first use) and run the flagship strategy.

    \b
    Example:
      backtester demo
    """
    from backtester.data.sample import ensure_sample
    from backtester.data.store import Store

    root = Store(datasets_root).root
    with progress_for(quiet=quiet) as progress:
        with progress_task(progress, "sample dataset (synthetic, generated on first use)"):
            sample = ensure_sample(root)
        if not quiet:
            click.echo(f"sample dataset: {sample} (synthetic)")
        result, path, messages = run_and_write(
            "strategies.hedged_pair:HedgedPair", progress=progress, plotly=plotly,
            alternative_reports=alternative_reports, dataset="sample",
            datasets_root=datasets_root, output_dir=output_dir, compare_margin_modes=True)
    print_warnings(messages)
    if quiet:
        click.echo(str(path))
    else:
        print_summary(result, path)
