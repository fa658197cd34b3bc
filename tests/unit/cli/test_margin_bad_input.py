"""``backtester margin`` with absurd input: one line naming the field, exit 2 (issue 15)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backtester.cli import _register
from tests.cli_helpers import invoke as _invoke
from tests.cli_helpers import one_error_line as _one_error_line

_register()


def _snapshot(**position: Any) -> str:
    pos = {"symbol": "BTC/USDT:USDT", "side": "long", "size": 0.1, "entry_price": 20_000,
           "leverage": 20, **position}
    return json.dumps({"profile": "binance-usdm", "collateral": {"USDT": 400},
                       "prices": {"BTC/USDT:USDT": {"mark": 20_000}}, "positions": [pos]})


def _margin(text: str) -> tuple[int, str, str]:
    return _invoke("margin", "-", "--indent", "0", input=text)


@pytest.mark.parametrize("size", ["1e308", "1.7976931348623157e308", "1e16", "1" + "0" * 400])
def test_sizes_beyond_the_range_are_refused_15(size: str) -> None:
    code, _, err = _margin(_snapshot().replace('"size": 0.1', f'"size": {size}'))

    assert code == 2
    assert _one_error_line(err).startswith("error: positions[0].size: ")


def test_deeply_nested_json_is_refused_15() -> None:
    code, _, err = _margin("[" * 100_000 + "]" * 100_000)

    assert code == 2
    assert "nested too deeply" in _one_error_line(err)


def test_leverage_above_the_bracket_maximum_is_refused_15() -> None:
    # binance-usdm BTC/USDT:USDT tier 1 (notional 0 .. 50,000) allows at most 125x; 0.1 BTC at
    # 20,000 is a 2,000 notional. At 1000x IM would be 2 < MM 8 (0.4 % of 2,000) and "ok".
    code, _, err = _margin(_snapshot(leverage=1000))

    assert code == 2
    line = _one_error_line(err)
    assert line.startswith("error: positions[0].leverage: 1000 exceeds the maximum leverage 125 "
                           "of tier 1")
    assert "BTC/USDT:USDT" in line


def test_leverage_at_the_bracket_maximum_is_evaluated_15() -> None:
    code, out, err = _margin(_snapshot(leverage=125))

    assert code == 0, err
    result = json.loads(out)
    assert result["initial_margin"] == pytest.approx(2_000 / 125)  # 16 USDT
    assert result["maintenance_margin"] == pytest.approx(2_000 * 0.004)  # 8 USDT
