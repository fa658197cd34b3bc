"""Position rows are kept by the margin monitor and moved into the engine's records in bulk
(issue 17, speed).

The legs' outputs of each recorded step are written by the kernel's distance pass into a
buffer of rows, with what the rows of a flush share (their steps, their book's legs) noted
once; the rows move into ``Engine.pos_rec`` when the buffer is full and at the end of the run
(``MarginEngine._drain_rows``). The result must not depend on the buffer's size: a buffer of
a few rows (a drain at almost every flush, flushes longer than the buffer, books of one to
three legs) gives the same results, bit for bit, as the default one — in cross, isolated and
portfolio margin (whose rows are copied from its one-step blocks) and with per-asset pools.
"""

from __future__ import annotations

import numpy as np
import pytest

from backtester.margin import state as state_mod

from .books import random_book, same


@pytest.mark.parametrize(("seed", "kwargs"), [
    (0, {}),
    (1, {"margin_mode": "isolated"}),
    (4, {"margin_mode": "portfolio"}),
    (2, {"profile": "binance-usdm", "collateral": {"USDT": 2_000.0, "USDC": 500.0}})])
def test_position_rows_do_not_depend_on_the_row_buffer(monkeypatch, seed, kwargs):
    coll = kwargs.pop("collateral", {"USDT": 3_000.0})
    ref = random_book(seed, margin_check="intrabar", collateral=coll, **kwargs)
    drains = []
    drain = state_mod.MarginEngine._drain_rows

    def counted(self: state_mod.MarginEngine) -> None:
        drains.append(self._n_leg_out)
        drain(self)

    monkeypatch.setattr(state_mod, "_ROWS_BUF", 3)
    monkeypatch.setattr(state_mod.MarginEngine, "_drain_rows", counted)
    small = random_book(seed, margin_check="intrabar", collateral=coll, **kwargs)
    same(ref, small)
    # the rows went through the small buffer many times (it grows for a longer flush)
    assert len(drains) > 5
    # a book of several legs at a step: the rows of one step are its legs in order
    counts = np.unique(small.positions["ts"].to_numpy(), return_counts=True)[1]
    assert counts.max() > 1
