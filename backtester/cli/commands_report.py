"""``backtester report``: (re)write the HTML report of a run folder."""

from __future__ import annotations

from pathlib import Path

import click

from backtester.cli import cli, friendly_errors


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--benchmark", help="Symbol of the run's dataset to hold as the benchmark "
                                  "(default: the most traded non-option instrument).")
@click.option("--datasets", "datasets_root", type=click.Path(file_okay=False),
              help="Datasets folder (default ./datasets or $BACKTESTER_DATASETS).")
@click.option("--no-tearsheet", is_flag=True, help="Skip the quantstats tearsheet (faster).")
@friendly_errors
def report(run_dir: Path, benchmark: str | None, datasets_root: str | None,
           no_tearsheet: bool) -> None:
    """Write RUN_DIR/report.html from the files of a run folder (no network is used).

    \b
    Example:
      backtester report reports/HedgedPair-sample-727bb336 --datasets datasets
    """
    from backtester.report import write_report

    path = write_report(run_dir, benchmark=benchmark, datasets_root=datasets_root,
                        tearsheet_enabled=not no_tearsheet)
    click.echo(f"report: {path}")
