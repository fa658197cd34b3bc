"""Rich progress bars for long downloads (stderr), or nothing when quiet."""

from __future__ import annotations

from typing import Any

__all__ = ["DownloadProgress"]


class DownloadProgress:
    """Rich progress bars on stderr, or nothing."""

    def __init__(self, show: bool) -> None:
        self._bars: Any = None
        self._start: dict[int, int] = {}
        if show:
            from rich.console import Console
            from rich.progress import Progress

            self._bars = Progress(console=Console(stderr=True), transient=False)

    def __enter__(self) -> DownloadProgress:
        if self._bars is not None:
            self._bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.__exit__(*exc)

    def add(self, label: str, start: int, end: int) -> int:
        if self._bars is None:
            return 0
        task = int(self._bars.add_task(label, total=max(end - start, 1)))
        self._start[task] = start
        return task

    def update(self, task: int, cursor: int) -> None:
        if self._bars is not None:
            self._bars.update(task, completed=cursor - self._start[task])

    def finish(self, task: int) -> None:
        if self._bars is not None:
            self._bars.update(task, completed=self._bars.tasks[task].total)
