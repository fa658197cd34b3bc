"""Distance to liquidation computed in blocks of bars equals the one-block computation.

``backtester.runner`` searches the distance in blocks of bars to bound temporary memory; each
bar's distance depends only on that bar's positions and collateral, so any block size must
give identical numbers (bit for bit).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import backtester  # noqa: F401  (registers backtester.runner)
from tests.integration.books import random_book

api = sys.modules["backtester.runner"]


@pytest.mark.parametrize("mode", ["cross", "isolated"])
@pytest.mark.parametrize("seed", [0, 1, 4, 5])
def test_block_size_does_not_change_distances(seed, mode, monkeypatch):
    coll = {"USDT": 3_000} if seed % 2 else {"USDT": 2_000, "BTC": 0.05}
    whole = random_book(seed, margin_check="intrabar", collateral=coll, margin_mode=mode)
    monkeypatch.setattr(api, "_DISTANCE_BLOCK", 7)
    blocks = random_book(seed, margin_check="intrabar", collateral=coll, margin_mode=mode)
    a = whole.equity["distance_to_liquidation"]
    b = blocks.equity["distance_to_liquidation"]
    assert np.isfinite(a).sum() > 50  # positions were held on many bars
    pd.testing.assert_series_equal(a, b, check_exact=True)
    assert whole.metrics == blocks.metrics or repr(whole.metrics) == repr(blocks.metrics)
