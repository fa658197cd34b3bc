"""Running the ``backtester`` command in-process in tests, and reading its one-line errors."""

from __future__ import annotations

from click.testing import CliRunner

from backtester.cli import _register, cli

_register()


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    """Run ``backtester ARGS`` (``input`` on stdin); return the exit code, stdout and stderr."""
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    """Assert ``stderr`` is one ``error: ...`` line without a traceback, and return it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    return lines[0]
