"""One number format for the console and the report (issue 16 item 11)."""

from __future__ import annotations

import doctest
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from backtester import display


def test_doctests() -> None:
    result = doctest.testmod(display)
    assert result.failed == 0
    assert result.attempted >= 6


@pytest.mark.parametrize(("key", "value", "text"), [
    ("total_return", -0.027, "-2.70%"),            # fractions as percentages
    ("min_distance_to_liquidation", 0.001, "0.10%"),
    ("fees_paid", 7079.2, "7,079.20"),             # money with two decimals
    ("funding_paid", -4447.853, "-4,447.85"),
    ("idle_collateral_mean", np.float64(96962.0812), "96,962.08"),
    ("sharpe", -0.1241, "-0.12"),                   # statistics: two decimals
    ("capital_velocity", 126.6512, "126.65×"),
    ("trades", 258, "258"),
    ("liquidations", np.int64(1234), "1,234"),
    ("fee_drag", None, "—"),                         # not defined
    ("sharpe", float("nan"), "—"),
    ("survival_collateral_usd", pd.NA, "—"),
    ("closed_ms", 1_736_334_000_000, "2025-01-08 11:00"),  # times as dates, never raw ms
])
def test_metric_values_are_written_in_their_unit(key: str, value: object, text: str) -> None:
    assert display.metric(key, value) == text


def test_dates_from_every_time_type_agree() -> None:
    ms = 1_736_334_000_000
    as_ts = pd.Timestamp(ms, unit="ms", tz="UTC")
    assert {display.date(ms), display.date(as_ts), display.date("2025-01-08T11:00:00Z"),
            display.date(as_ts.tz_convert("Asia/Tokyo"))} == {"2025-01-08 11:00"}
    assert display.date(pd.NaT) == display.UNDEFINED


def test_money_keeps_decimal_amounts_exact_to_the_cent() -> None:
    assert display.money(Decimal("1234567.891")) == "1,234,567.89"
    assert display.money(Decimal("-0.004")) == "-0.00"
    assert display.money(12.5, signed=True) == "+12.50"


def test_legend_and_sign_convention_say_what_they_mean() -> None:
    assert display.LEGEND.startswith(f"{display.UNDEFINED} = not defined")
    assert "+ = paid" in display.COST_SIGNS
    assert "− = received" in display.COST_SIGNS
