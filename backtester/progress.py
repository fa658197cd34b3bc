"""Progress of long operations, reported to an object the caller supplies.

The library never prints: a run, a report, a sweep, a Monte Carlo or a download tells a
:class:`Progress` what it is doing, and the caller decides what to show. The command line
passes one that draws rich progress bars on stderr when stderr is a terminal
(``backtester.cli._progress``); Python callers pass nothing and nothing is shown.

A task is opened with :func:`task` (a context manager that always closes it). Its position is
either pushed with :meth:`ProgressTask.update` or, for a tight loop that must not pay for a
call per step, pulled: ``poll`` is a function the reporter calls when it redraws (a few times
a second), e.g. ``lambda: engine.step + 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["NO_PROGRESS", "NullProgress", "Progress", "ProgressTask", "task"]


class ProgressTask(Protocol):
    """One line of progress: a description, a count done out of ``total`` (None = unknown)."""

    def update(self, completed: float | None = None, *, total: float | None = None,
               description: str | None = None) -> None:
        """Move the task to ``completed`` (same unit as ``total``) and/or rename it."""

    def close(self) -> None:
        """Mark the task finished."""


class Progress(Protocol):
    """What a long operation reports to; see the module docstring."""

    def task(self, description: str, *, total: float | None = None,
             poll: Callable[[], float] | None = None) -> ProgressTask:
        """Open a task; ``poll()`` (optional) returns its current count when called."""


class _NullTask:
    def update(self, completed: float | None = None, *, total: float | None = None,
               description: str | None = None) -> None:
        return None

    def close(self) -> None:
        return None


class NullProgress:
    """A :class:`Progress` that shows nothing (the default of every library function)."""

    def task(self, description: str, *, total: float | None = None,
             poll: Callable[[], float] | None = None) -> ProgressTask:
        """Return a task that ignores its updates."""
        return _NullTask()


#: The shared do-nothing reporter.
NO_PROGRESS = NullProgress()


@contextmanager
def task(progress: Progress | None, description: str, *, total: float | None = None,
         poll: Callable[[], float] | None = None) -> Iterator[ProgressTask]:
    """Open a task on ``progress`` (None: nothing is shown) and close it on exit.

    >>> with task(None, "loading") as t:
    ...     t.update(1, total=2)
    """
    t = (progress or NO_PROGRESS).task(description, total=total, poll=poll)
    try:
        yield t
    finally:
        t.close()
