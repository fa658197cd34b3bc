"""Strategy API: parameters, phase guards, error wrapping, indicators, ctx helpers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import backtester as bt
from backtester import ConfigError, PhaseError, StrategyError
from tests.builders import BTC, Scripted, bars, flat, run


class Params(bt.Strategy):
    fast: int = 20
    ratio: float = 0.5
    is_on: bool = False
    label: str = "x"

    def on_bar(self, ctx: Any) -> None:
        pass


def test_parameters_are_discovered_with_types_and_defaults() -> None:
    assert Params.parameters == {"fast": (int, 20), "ratio": (float, 0.5),
                                 "is_on": (bool, False), "label": (str, "x")}
    assert Params().params() == {"fast": 20, "ratio": 0.5, "is_on": False, "label": "x"}


def test_parameters_coerced_from_strings() -> None:
    p = Params(fast="10", ratio="0.25", is_on="yes", label="y")
    assert (p.fast, p.ratio, p.is_on, p.label) == (10, 0.25, True, "y")
    assert Params(is_on="0").is_on is False
    assert Params(ratio=2).ratio == 2.0  # int accepted for float
    assert isinstance(Params(ratio=2).ratio, float)


@pytest.mark.parametrize(("kw", "match"), [
    ({"fast": "ten"}, "'fast' expects int, got 'ten'"),
    ({"fast": 1.5}, "'fast' expects int, got float"),
    ({"is_on": "maybe"}, "'is_on' expects bool"),
    ({"fats": 1}, "no parameter 'fats'; did you mean 'fast'"),
])
def test_bad_parameters_are_config_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Params(**kw)


def test_run_coerces_params_from_strings() -> None:
    seen: list[int] = []

    class P(bt.Strategy):
        n: int = 1

        def on_bar(self, ctx: Any) -> None:
            seen.append(self.n)

    run(P, {BTC: flat(2)}, params={"n": "7"})
    assert seen == [7, 7]


def test_orders_in_on_start_are_a_phase_error() -> None:
    class Eager(bt.Strategy):
        def on_start(self, ctx: Any) -> None:
            ctx.buy(BTC, 1)

        def on_bar(self, ctx: Any) -> None:
            pass

    with pytest.raises(PhaseError, match="on_start"):
        run(Eager, {BTC: flat(3)})


def test_exception_in_on_bar_names_strategy_and_bar_time() -> None:
    class Boom(bt.Strategy):
        def on_bar(self, ctx: Any) -> None:
            if ctx.price(BTC) > 100:
                raise ZeroDivisionError("oops")

    data = {BTC: bars([(100, 100, 100, 100), (100, 101, 100, 101), (101, 101, 101, 101)])}
    with pytest.raises(StrategyError) as info:
        run(Boom, data)
    err = info.value
    # the second bar (01:00) closes at 02:00: that is when on_bar sees 101
    assert "Boom.on_bar" in str(err)
    assert "2024-01-01T02:00:00Z" in str(err)
    assert "ZeroDivisionError" in str(err)
    assert isinstance(err.cause, ZeroDivisionError)
    assert err.strategy == "Boom"
    assert err.hook == "on_bar"


def test_exception_in_on_fill_and_on_start_are_wrapped() -> None:
    def explode(ctx: Any, fill: Any) -> None:
        raise KeyError("fill")

    with pytest.raises(StrategyError, match=r"Scripted\.on_fill raised KeyError"):
        run(Scripted({0: lambda ctx: ctx.buy(BTC, 1)}, fill_hook=explode), {BTC: flat(3)})

    class BadStart(bt.Strategy):
        def on_start(self, ctx: Any) -> None:
            raise RuntimeError("setup")

        def on_bar(self, ctx: Any) -> None:
            pass

    with pytest.raises(StrategyError, match="before the first bar"):
        run(BadStart, {BTC: flat(2)})


def test_missing_on_bar_is_reported() -> None:
    class NoBar(bt.Strategy):
        pass

    with pytest.raises(StrategyError, match="must implement on_bar"):
        run(NoBar, {BTC: flat(2)})


class Ind(bt.Strategy):
    def on_start(self, ctx: Any) -> None:
        self.ind = ctx.indicator(lambda c: c * 2, ctx.series(BTC, "close"), symbol=BTC,
                                 name="double")
        self.seen: list[tuple[float, float, int]] = []
        self.future_error: str = ""

    def on_bar(self, ctx: Any) -> None:
        self.seen.append((self.ind.now, self.ind[-1], len(self.ind.values)))
        try:
            self.ind[1]
        except IndexError as exc:
            self.future_error = str(exc)


def test_indicator_reveals_values_bar_by_bar() -> None:
    # closes 100, 101, 102: doubled 200, 202, 204
    strat = Ind()
    run(strat, {BTC: bars([(100, 100, 100, 100), (101, 101, 101, 101), (102, 102, 102, 102)])})
    assert strat.seen[0][0] == 200.0
    assert np.isnan(strat.seen[0][1])  # nothing before the first bar
    assert strat.seen[1:] == [(202.0, 200.0, 2), (204.0, 202.0, 3)]
    assert "looks into the future" in strat.future_error


def test_series_and_indicator_only_in_on_start() -> None:
    with pytest.raises(PhaseError, match="series"):
        run(Scripted({0: lambda ctx: ctx.series(BTC)}), {BTC: flat(2)})
    with pytest.raises(PhaseError, match="indicator"):
        run(Scripted({0: lambda ctx: ctx.indicator(np.ones, 2, symbol=BTC)}), {BTC: flat(2)})


def test_indicator_of_wrong_length_is_config_error() -> None:
    class Short(bt.Strategy):
        def on_start(self, ctx: Any) -> None:
            ctx.indicator(lambda: np.zeros(1), symbol=BTC, name="short")

        def on_bar(self, ctx: Any) -> None:
            pass

    with pytest.raises(ConfigError, match=r"'short' returned shape \(1,\), expected \(3,\)"):
        run(Short, {BTC: flat(3)})


def test_series_is_read_only() -> None:
    class Writer(bt.Strategy):
        def on_start(self, ctx: Any) -> None:
            ctx.series(BTC)[0] = 1.0

        def on_bar(self, ctx: Any) -> None:
            pass

    with pytest.raises(StrategyError, match="read-only"):
        run(Writer, {BTC: flat(2)})


def test_target_close_record_position_account() -> None:
    # target +2 (fills at bar 1), target -1 (sell 3 at bar 2), close (buy 1 at bar 3)
    strat = Scripted({
        0: lambda ctx: ctx.target(BTC, 2),
        1: lambda ctx: (ctx.position(BTC).qty, ctx.target(BTC, -1)),
        2: lambda ctx: (ctx.position(BTC).qty, ctx.close(BTC)),
        3: lambda ctx: (ctx.position(BTC).is_flat, ctx.target(BTC, 0), ctx.record(x=3.0),
                        ctx.account.wallet_balance),
    })
    result = run(strat, {BTC: flat(5)})
    assert list(result.fills["qty"]) == [2.0, -3.0, 1.0]
    assert strat.out[1][0] == 2.0
    assert strat.out[2][0] == -1.0
    assert strat.out[2][1] is not None
    is_flat, nothing, _, wallet = strat.out[3]
    assert is_flat
    assert nothing is None  # already at target: no order
    # three taker fills of 2, 3, 1 contracts at 100: fees 6 x 100 x 0.0005 = 0.3
    assert wallet == pytest.approx(100_000 - 0.3)
    assert result.records["x"].iloc[3] == 3.0
    assert np.isnan(result.records["x"].iloc[0])
    # the close order was reduce-only
    closing = result.orders[result.orders["order_id"] == 3].iloc[0]
    assert bool(closing["reduce_only"])


def test_cancel_removes_working_orders() -> None:
    strat = Scripted({0: lambda ctx: (ctx.buy(BTC, 1, limit=90), ctx.buy(BTC, 1, limit=91)),
                      1: lambda ctx: ctx.cancel(symbol=BTC),
                      2: lambda ctx: ctx.open_orders()})
    result = run(strat, {BTC: flat(4)})
    assert strat.out[1] == 2
    assert strat.out[2] == []
    assert result.fills.empty
