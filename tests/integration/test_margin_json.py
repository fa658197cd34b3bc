"""``margin.json`` and ``equity.parquet`` name the same number: the final account at the last
bar's close is ``margin_balance_close``; ``margin_balance`` is the margin check's (intrabar: the
bar's worst scenario), which is what calls and liquidations go by (issue 14 item 11)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.books import random_book


@pytest.mark.parametrize("seed", [1, 3])
def test_margin_json_is_the_last_close_and_the_check_is_at_or_below_it(seed):
    r = random_book(seed, margin_check="intrabar", collateral={"USDT": 3_000})
    last = r.equity.iloc[-1]
    final = r.meta["final_margin"]
    assert final["margin_balance"] == pytest.approx(last["margin_balance_close"], rel=1e-12)
    held = r.equity["gross_exposure"] > 0
    check = r.equity["margin_balance"][held].to_numpy()
    close = r.equity["margin_balance_close"][held].to_numpy()
    assert (check <= close + 1e-9 * np.abs(close)).all()
    assert (check < close).any()  # the wicks move it on some bars


def test_with_the_close_check_the_two_are_one():
    r = random_book(1, margin_check="close", collateral={"USDT": 3_000})
    np.testing.assert_array_equal(r.equity["margin_balance"], r.equity["margin_balance_close"])
    assert r.meta["final_margin"]["margin_balance"] == pytest.approx(
        r.equity["margin_balance_close"].iloc[-1], rel=1e-12)
