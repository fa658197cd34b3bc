"""How a message tells the user to set a run key: in the syntax of the interface in use.

The same advice reads ``--funding zero`` on the command line and ``funding='zero'`` from
Python. The command line turns its syntax on for the duration of a command
(:func:`cli_syntax`); messages build their advice with :func:`option`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["cli_syntax", "is_cli", "option"]

_CLI: ContextVar[bool] = ContextVar("backtester_cli_syntax", default=False)


@contextmanager
def cli_syntax() -> Iterator[None]:
    """Word advice in command-line syntax inside this block (used by the ``backtester`` CLI)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def is_cli() -> bool:
    """True inside :func:`cli_syntax`."""
    return _CLI.get()


def option(key: str, value: str | None = None) -> str:
    """Return how to set run key ``key`` (to ``value``) in the interface in use.

    >>> option("funding", "zero")
    "funding='zero'"
    >>> with cli_syntax():
    ...     option("funding", "zero")
    '--funding zero'
    """
    if _CLI.get():
        flag = "--" + key.replace("_", "-")
        return flag if value is None else f"{flag} {value}"
    return f"{key}=..." if value is None else f"{key}={value!r}"
