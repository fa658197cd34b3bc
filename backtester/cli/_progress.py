"""Progress bars of the command line: rich on stderr, only when stderr is a terminal.

Every long command (demo, run, report, sweep, stress --monte-carlo, fetch) opens
:func:`progress_for` and hands the reporter to the library (:mod:`backtester.progress`). The
bars are transient: they vanish when the command ends, leaving only its output. Nothing is
drawn with ``--quiet`` or when stderr is a pipe or a file (rich's ``TTY_COMPATIBLE=1`` /
``FORCE_COLOR`` environment variables force a terminal, which the tests use).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from backtester.progress import NO_PROGRESS
from backtester.progress import Progress as ProgressReporter

__all__ = ["RichProgress", "counter", "progress_for"]


class _PolledBars(Progress):
    # rich's Progress whose polled tasks read their count just before each redraw (the
    # refresh thread redraws ~10 times a second), so a tight loop reports without a call
    def __init__(self, *columns: Any, **kwargs: Any) -> None:
        self.polls: dict[TaskID, Callable[[], float]] = {}
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        for task_id, poll in list(self.polls.items()):
            self.update(task_id, completed=poll())
        yield from super().get_renderables()


class _Task:
    def __init__(self, bars: _PolledBars, task_id: TaskID) -> None:
        self._bars = bars
        self._id = task_id

    def update(self, completed: float | None = None, *, total: float | None = None,
               description: str | None = None) -> None:
        self._bars.update(self._id, completed=completed, total=total, description=description)

    def close(self) -> None:
        poll = self._bars.polls.pop(self._id, None)
        if poll is not None:
            self._bars.update(self._id, completed=poll())
        total = self._bars.tasks[self._bars.task_ids.index(self._id)].total
        if total is not None:
            self._bars.update(self._id, completed=total)
        self._bars.stop_task(self._id)
        self._bars.refresh()


class RichProgress:
    """A :class:`backtester.progress.Progress` drawing transient rich bars on ``console``."""

    def __init__(self, console: Console) -> None:
        self._bars = _PolledBars(SpinnerColumn(finished_text="✓"),
                                 TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(),
                                 console=console, transient=True)

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def task(self, description: str, *, total: float | None = None,
             poll: Callable[[], float] | None = None) -> _Task:
        """Add a bar (drawn at once, so that even a short step shows)."""
        task_id = self._bars.add_task(description, total=total)
        if poll is not None:
            self._bars.polls[task_id] = poll
        self._bars.refresh()
        return _Task(self._bars, task_id)


@contextmanager
def progress_for(*, quiet: bool, console: Console | None = None) -> Iterator[ProgressReporter]:
    """Yield the reporter of a command: rich bars on stderr, or nothing (quiet, not a tty)."""
    console = console or Console(stderr=True)
    if quiet or not console.is_terminal:
        yield NO_PROGRESS
        return
    with RichProgress(console) as bars:
        yield bars


def counter(progress: ProgressReporter, description: str,
            unit: str) -> Callable[[int, int], None]:
    """Return an ``on_progress(done, total)`` callback that drives one task on ``progress``
    (for library functions that report counts, such as sweeps and Monte Carlo paths)."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "task" not in state:
            state["task"] = progress.task(f"{description} 0/{total} {unit}", total=total)
        state["task"].update(done, total=total, description=f"{description} {done:,}/{total:,} "
                                                            f"{unit}")
        if done >= total:
            state.pop("task").close()

    return update
