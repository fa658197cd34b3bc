"""Errors name the few closest symbols and a count, never every one (issue 16 item 13)."""

from __future__ import annotations

import pytest

from backtester.errors import ConfigError, DataError, closest, shortlist
from tests.builders import Scripted, flat, run

#: 126 symbols, as the sample dataset holds (two perps and 124 options).
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT",
           *(f"BTC/USD:BTC-250{m}28-{k}000-{cp}" for m in range(1, 4) for k in range(80, 100)
             for cp in "CP"),
           *(f"ETH/USD:ETH-2501{d:02d}-{k}00-C" for d in range(1, 5) for k in range(25, 26))]


def test_closest_names_three_and_counts_the_rest() -> None:
    assert len(SYMBOLS) == 126
    hint = closest("BTC/USDT", SYMBOLS)
    assert hint.startswith("did you mean 'BTC/USDT:USDT', ")
    assert hint.endswith("? (126 symbols)")
    assert hint.count("'") == 6  # three names
    assert closest("zzz", ["a", "b", "c", "d"]) == "4 symbols, e.g. 'a', 'b' and 'c'"
    assert shortlist(SYMBOLS, n=2) == "BTC/USDT:USDT, ETH/USDT:USDT and 124 more"


def test_an_unknown_symbol_in_a_strategy_is_named_with_the_closest_few() -> None:
    data = {s: flat(3) for s in ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")}
    data.update({f"X{k}/USDT:USDT": flat(3) for k in range(123)})
    strat = Scripted({0: lambda ctx: ctx.buy("BTC/USDT", 1)})
    with pytest.raises(ConfigError) as err:
        run(strat, data)
    msg = str(err.value)
    assert msg.startswith("unknown symbol 'BTC/USDT'; did you mean 'BTC/USDT:USDT'")
    assert msg.endswith("(126 symbols)")
    assert "X99/USDT:USDT" not in msg
    assert len(msg) < 200


def test_leverage_for_an_unknown_symbol_names_the_closest(tmp_path: object) -> None:
    data = {s: flat(3) for s in ("BTC/USDT:USDT", "ETH/USDT:USDT")}
    with pytest.raises(ConfigError, match=r"leverage: unknown symbol 'BTC'; did you mean "
                                          r"'BTC/USDT:USDT'"):
        run(Scripted({}), data, leverage={"BTC": 5})


def test_a_dataset_without_the_asked_symbols_names_the_closest(tmp_path: object) -> None:
    from pathlib import Path

    from backtester.data.catalog import load_dataset
    from tests.report_runs import make_dataset

    root = Path(str(tmp_path))
    make_dataset(root, "tiny", hours=5)
    with pytest.raises(DataError, match=r"dataset tiny has no candles for BTC/USDT; for "
                                        r"'BTC/USDT': did you mean 'BTC/USDT:USDT'"):
        load_dataset("tiny", root=root, symbols=["BTC/USDT"])
