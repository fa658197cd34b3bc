"""``backtester report``: (re)write the HTML report of a run folder."""

from __future__ import annotations

from pathlib import Path

import click

from backtester.cli import cli, friendly_errors
from backtester.cli._progress import progress_for
from backtester.cli.commands_run import PLOTLY_MODES


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--benchmark", help="Symbol of the run's dataset to hold as the benchmark "
                                  "(default: the most traded non-option instrument).")
@click.option("--datasets", "datasets_root", type=click.Path(file_okay=False),
              help="Datasets folder (default ./datasets or $BACKTESTER_DATASETS).")
@click.option("--no-tearsheet", is_flag=True, help="Skip the quantstats tearsheet (faster).")
@click.option("--plotly", type=click.Choice(PLOTLY_MODES), default="inline", show_default=True,
              help="How report.html loads plotly.js: inline (self-contained, offline), shared "
                   "(one plotly-<version>.min.js in RUN_DIR's parent folder) or cdn (needs a "
                   "network to view).")
@click.option("--quiet", is_flag=True, help="Print only the report path; no progress bars.")
@friendly_errors
def report(run_dir: Path, benchmark: str | None, datasets_root: str | None,
           no_tearsheet: bool, plotly: str, quiet: bool) -> None:
    """Write RUN_DIR/report.html from the files of a run folder (no network is used).

    \b
    Example:
      backtester report reports/HedgedPair-sample-727bb336 --datasets datasets
    """
    from backtester.report import write_report

    with progress_for(quiet=quiet) as progress:
        path = write_report(run_dir, benchmark=benchmark, datasets_root=datasets_root,
                            tearsheet_enabled=not no_tearsheet, plotly=plotly,
                            progress=progress)
    click.echo(str(path) if quiet else f"report: {path}")
