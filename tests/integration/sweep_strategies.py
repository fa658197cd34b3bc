"""Strategies for the sweep tests, importable by Dask worker processes.

Workers import this module as ``tests.integration.sweep_strategies``: the test adds the
repository root to each worker's ``sys.path`` with ``Client.run`` (and ``PYTHONPATH=$PWD`` does
the same for processes started from the repository root).
"""

from __future__ import annotations

from typing import Any

from strategies.hedged_pair import HedgedPair


class FlakyPair(HedgedPair):
    """HedgedPair that refuses ``lookback == 13`` (a deliberately failing parameter set)."""

    def on_start(self, ctx: Any) -> None:
        if self.lookback == 13:
            msg = "lookback 13 is unlucky"
            raise ValueError(msg)
        super().on_start(ctx)  # type: ignore[no-untyped-call]
