"""The ``backtester`` command line: thin wrappers over public functions.

Every command turns bad input (:class:`~backtester.errors.BacktesterError`) into a one-line
error on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from backtester.errors import BacktesterError
from backtester.hints import cli_syntax

__all__ = ["cli", "friendly_errors", "main"]

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn BacktesterError (and OSError on named files) into ``error: ...`` + exit 2.

    Messages inside the command give their advice in command-line syntax (``--funding zero``,
    :mod:`backtester.hints`).
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with cli_syntax():
                return func(*args, **kwargs)
        except BacktesterError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            click.echo(f"error: {exc.strerror}: {exc.filename}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="backtester")
def cli() -> None:
    """Backtest cross-margin crypto derivatives strategies.

    \b
    Example:
      backtester demo
      backtester run strategies/hedged_pair.py --dataset sample
    """
    # every warning the library logs is also returned with its results and printed once by
    # the command as "warning: ..."; without a handler Python would print it a second time
    lib = logging.getLogger("backtester")
    if not any(isinstance(h, logging.NullHandler) for h in lib.handlers):
        lib.addHandler(logging.NullHandler())


def _register() -> None:
    # Each command lives in its own module; importing it registers it on ``cli``.
    from backtester.cli import (  # noqa: F401
        commands_data,
        commands_margin,
        commands_report,
        commands_run,
        commands_stress,
        commands_sweep,
    )


def main() -> None:
    """Entry point of the ``backtester`` console script."""
    _register()
    cli()
