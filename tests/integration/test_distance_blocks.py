"""Distance to liquidation under block evaluation equals one step per kernel call.

The margin kernel searches each step's distances with the step's close, inside the same call
that evaluates a block of steps; a book change at step k recomputes step k. The random books of
the golden results, in cross and isolated margin with coin collateral, give identical distance
columns (bit for bit) whatever the block length.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.books import random_book, two_ways


@pytest.mark.parametrize("mode", ["cross", "isolated"])
@pytest.mark.parametrize("seed", [0, 1, 4, 5])
def test_block_length_does_not_change_distances(seed, mode):
    coll = {"USDT": 3_000} if seed % 2 else {"USDT": 2_000, "BTC": 0.05}
    r = two_ways(lambda: random_book(seed, margin_check="intrabar", collateral=coll,
                                     margin_mode=mode))
    dist = r.equity["distance_to_liquidation"]
    assert np.isfinite(dist).sum() > 50  # positions were held on many bars
    cols = [c for c in r.equity.columns if c.startswith("distance_")]
    assert {"distance_BTC_down", "distance_ETH_up", "distance_all_down"} <= set(cols)
    # the headline is, at every step, the nearest of the per-move columns
    moves = r.equity[[c for c in cols if c != "distance_to_liquidation"]].to_numpy()
    nearest = np.take_along_axis(moves, np.abs(moves).argmin(axis=1)[:, None], axis=1)[:, 0]
    np.testing.assert_array_equal(dist.to_numpy(), nearest)
