"""Indicators: series computed once over the whole data and revealed bar by bar.

``ctx.indicator(func, *args, symbol=...)`` (in ``on_start``) returns an :class:`Indicator`;
``Strategy`` code reads ``ind.now`` and ``ind[-k]`` and never sees a value after the last
closed bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Indicator"]


class Indicator:
    """A precomputed series revealed bar by bar.

    ``ind.now`` is the value at the last closed bar of its symbol; ``ind[-1]`` the one before,
    ``ind[0]`` the same as ``now``; ``ind.values`` the array up to now. Nothing after "now" is
    reachable.

    Parameters
    ----------
    values
        One value per bar of the symbol.
    cursor
        What says which bar is the last closed one: an object with an ``idx`` attribute (the
        symbol's feed; -1 before its first bar) or a callable returning that index.
    name
        Label used in messages.
    """

    __slots__ = ("_list", "_src", "_values", "name")

    def __init__(self, values: np.ndarray, cursor: Callable[[], int] | Any, *,
                 name: str = "") -> None:
        # scalar access for now / [-k]: float64 series are read through a memoryview of one
        # copy that ends with a NaN, which index -1 (before the first bar) reads
        if values.dtype == np.float64 and values.ndim == 1:
            buf = np.empty(len(values) + 1)
            buf[:-1] = values
            buf[-1] = np.nan
            self._values = buf[:-1]
            self._list: Any = memoryview(buf)  # type: ignore[arg-type]
        else:
            self._values = values
            self._list = [*values.tolist(), float("nan")]
        self._src = cursor if hasattr(cursor, "idx") else _CallCursor(cursor)
        self.name = name

    @property
    def now(self) -> float:
        """Value at the last closed bar (NaN before the first bar)."""
        return self._list[self._src.idx]  # type: ignore[no-any-return]

    def __getitem__(self, back: int) -> float:
        if back > 0:
            msg = f"indicator {self.name!r}: index {back} looks into the future; use 0 or -k"
            raise IndexError(msg)
        i = self._src.idx + back
        if i < 0:
            return float("nan")
        return self._list[i]  # type: ignore[no-any-return]

    @property
    def values(self) -> np.ndarray:
        """Values up to and including now (a read-only view)."""
        v = self._values[: self._src.idx + 1]
        v.flags.writeable = False
        return v

    def __len__(self) -> int:
        return int(self._src.idx) + 1

    def __repr__(self) -> str:
        return f"Indicator({self.name!r}, now={self.now})"


class _CallCursor:
    # adapts a callable cursor to the ``idx`` attribute Indicator reads
    __slots__ = ("_func",)

    def __init__(self, func: Callable[[], int]) -> None:
        self._func = func

    @property
    def idx(self) -> int:
        return self._func()
