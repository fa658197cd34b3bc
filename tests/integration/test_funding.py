"""Funding: the mark-open rule, the sign convention, and missing funding history."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from backtester import DataError
from backtester.data.feed import MarketFrames
from tests.builders import BTC, Scripted, bars, flat, run

MARKS = [100.0, 100.0, 105.0, 100.0, 100.0, 110.0, 100.0, 100.0]


def _market() -> MarketFrames:
    funding = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 02:00", "2024-01-01 05:00"],
                                                 utc=True), "rate": [0.0001, -0.0002]})
    return MarketFrames(ohlcv=flat(8), mark=bars([(m, m, m, m) for m in MARKS]),
                        funding=funding)


@pytest.mark.parametrize(("side", "expected"), [("buy", ("-0.021", "0.044")),
                                                ("sell", ("0.021", "-0.044"))])
def test_funding_at_stamps_uses_the_mark_open(side: str, expected: tuple[str, str]) -> None:
    # The order placed at the 02:00 step fills at the open of the 02:00 bar: a fill at the
    # open counts as held at a stamp equal to the open.
    # stamp 02:00, rate +0.0001, mark candle opening at 02:00 opens at 105:
    #   long 2 pays 2 x 105 x 0.0001 = 0.021  (positive rate: longs pay)
    # stamp 05:00, rate -0.0002, mark open 110: long 2 receives 2 x 110 x 0.0002 = 0.044
    # the position is closed at the 07:00 open, after both stamps.
    strat = Scripted({1: lambda ctx: ctx.order(BTC, side, 2), 6: lambda ctx: ctx.close(BTC)})
    result = run(strat, {BTC: _market()}, funding="history")
    fund = result.journal[result.journal["kind"] == "funding"]
    assert [Decimal(a) for a in fund["amount"]] == [Decimal(x) for x in expected]
    assert list(fund["ts"]) == list(pd.to_datetime(["2024-01-01 02:00", "2024-01-01 05:00"],
                                                   utc=True))
    total = Decimal(expected[0]) + Decimal(expected[1])
    assert result.metrics["funding_paid"] == pytest.approx(float(-total))
    paid = [e for e in result.events if e["event"] == "FundingPaid"]
    assert [(e["mark"], e["mark_source"]) for e in paid] == [(105.0, "mark"), (110.0, "mark")]
    # trade prices are flat at 100 and fees, at the Bybit profile's taker 0.055 %, are
    # 2 x 2 x 100 x 0.00055 = 0.22: the wallet moves by exactly the funding and the fees
    assert Decimal(result.state["collateral_exact"]["USDT"]) == Decimal(100_000) + total \
        - Decimal("0.22")


def test_position_opened_after_a_stamp_pays_nothing_for_it() -> None:
    # ordered at the 03:00 step -> filled at the 03:00 open, after the 02:00 stamp; only the
    # 05:00 stamp applies: long 2 receives 2 x 110 x 0.0002 = 0.044
    strat = Scripted({2: lambda ctx: ctx.buy(BTC, 2)})
    result = run(strat, {BTC: _market()}, funding="history")
    fund = result.journal[result.journal["kind"] == "funding"]
    assert list(fund["amount"]) == ["0.044000000000"]


def test_funding_zero_mode_books_nothing() -> None:
    strat = Scripted({1: lambda ctx: ctx.buy(BTC, 2)})
    result = run(strat, {BTC: _market()}, funding="zero")
    assert (result.journal["kind"] != "funding").all()


def test_held_perp_without_funding_history_is_a_data_error() -> None:
    strat = Scripted({0: lambda ctx: ctx.buy(BTC, 1)})
    with pytest.raises(DataError, match="no funding history for BTC/USDT:USDT"):
        run(strat, {BTC: flat(4)}, funding="history")
    # opting out runs
    assert len(run(Scripted({0: lambda ctx: ctx.buy(BTC, 1)}), {BTC: flat(4)},
                   funding="zero").fills) == 1


def test_unheld_perp_without_funding_history_is_fine() -> None:
    result = run(Scripted(), {BTC: flat(4)}, funding="history")
    assert result.fills.empty
