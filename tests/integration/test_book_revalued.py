"""A book whose shape is unchanged is the previous layout with new values (issue 17, speed).

``build_book(..., previous=book)`` copies the previous book's layout and rewrites only its value
columns (quantities, entries, leverage, allocations, balances, session amounts, orders' sizes,
prices and leverage) when the legs, assets, held balances, session amounts and working orders
are the same ones. Every book the margin monitor builds that way during random runs (limit
orders and cancels, margin calls, liquidations, coin collateral, isolated and portfolio
margin, per-asset pools) must equal, array for array and field for field, the book laid out
anew from the same account — and building it must leave the previous book untouched (a block
still reads it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from backtester.margin import state as state_mod
from backtester.margin.book import Book, build_book

from .books import random_book


def _assert_same_book(got: Book, fresh: Book) -> None:
    for name in [f.name for f in dataclasses.fields(Book) if f.name != "_args"]:
        a, b = getattr(got, name), getattr(fresh, name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype, name
            assert a.shape == b.shape, name
            # bit for bit (NaN allocations and market-order prices included)
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), name
        elif name == "positions":
            assert [id(p) for p in a] == [id(p) for p in b]
        else:
            assert a == b, name
    # the kernel's arguments packed once per book are the book's own arrays (not a previous
    # book's, whose packed arguments a revalued copy must not carry over)
    for a, b, own in zip(got.kernel_args(), fresh.kernel_args(),
                         (got.lf, got.li, got.af, got.ai, got.of, got.oi), strict=False):
        assert a is own
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
    assert got.kernel_args()[6:8] == fresh.kernel_args()[6:8]


@pytest.mark.parametrize(("seed", "kwargs"), [
    (0, {}),
    (1, {"margin_mode": "isolated"}),
    (4, {"margin_mode": "portfolio"}),
    (2, {"profile": "binance-usdm", "collateral": {"USDT": 2_000.0, "USDC": 500.0}}),
    (6, {"collateral": {"USDT": 2_000.0, "BTC": 0.05}})])
def test_revalued_books_equal_books_laid_out_anew(monkeypatch, seed, kwargs):
    counts = {"revalued": 0, "laid_out": 0}

    def checked(view: Any, store: Any, profile: Any, **kw: Any) -> Book:
        prev: Book | None = kw.get("previous")
        before = None if prev is None else (prev.lf.copy(), prev.af.copy(), prev.of.copy())
        if prev is not None:
            prev.kernel_args()  # packed: a revalued copy must pack its own
        got = build_book(view, store, profile, **kw)
        fresh = build_book(view, store, profile, **{**kw, "previous": None})
        _assert_same_book(got, fresh)
        if prev is not None and before is not None:
            for old, arr in zip(before, (prev.lf, prev.af, prev.of), strict=True):
                assert np.array_equal(old.view(np.uint8), arr.view(np.uint8))
            same_layout = prev.li is got.li
            counts["revalued" if same_layout else "laid_out"] += 1
        return got

    monkeypatch.setattr(state_mod, "build_book", checked)
    coll = kwargs.pop("collateral", {"USDT": 3_000.0})
    r = random_book(seed, margin_check="intrabar", collateral=coll, **kwargs)
    assert len(r.fills) > 5
    # both ways were taken: the values rewritten in place of a layout, and new layouts
    assert counts["revalued"] > 0
    assert counts["laid_out"] > 0
