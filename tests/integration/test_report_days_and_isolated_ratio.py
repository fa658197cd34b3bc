"""Two report fixes of issue 16 (item 13) that change results.

* An isolated liquidation is recorded and drawn at the ratio it breached, the position's own
  (its maintenance margin over its margin plus PnL), not the account's (all markers sat at
  0 %).
* Daily closes: steps are stamped at bar closes, so the step at D+1 00:00 closes day D. The
  tearsheet no longer invents a calendar year (and an all-zero EOY row) from the run's last
  step at 2026-01-01 00:00; the run's metrics use the same days.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester.report import write_report
from backtester.report.tearsheet import daily_returns, tearsheet
from tests.integration.test_report_weight_and_fixes import figure


def _flat(prices: list[float]) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=len(prices), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": prices, "high": prices, "low": prices,
                         "close": prices, "volume": 1e9})


def test_isolated_liquidation_is_drawn_at_the_positions_own_ratio_16(tmp_path: Path) -> None:
    # Isolated long 10 ETH @ 2,500 at 10x: its margin is 2,500 (bybit, maintenance 0.5 %, no
    # fees, checks at closes). At 2,260: PnL = 10 x (2,260 - 2,500) = -2,400, its margin
    # balance 2,500 - 2,400 = 100, its maintenance 0.5 % x 22,600 = 113 -> liquidated at its
    # own ratio 113 / 100 = 113 %. The account's ratio is 113 / (10,000 - 2,400) = 1.49 %:
    # drawn there, the marker sat at the bottom of the chart.
    from backtester.instruments import instrument_from_symbol
    from tests.integration.test_cross_margin_scenarios import ZERO_FEES, OpenAndHold

    eth = "ETH/USDT:USDT"
    result = backtester.run(OpenAndHold, data={eth: _flat([2_500.0] * 3 + [2_260.0] * 3)},
                            instruments={eth: instrument_from_symbol(eth, **ZERO_FEES)},
                            funding="zero", collateral={"USDT": 10_000}, margin_mode="isolated",
                            margin_check="close", slippage_bps=0,
                            params={"legs": f"{eth}=10", "leverage": 10.0})
    (liq,) = [e for e in result.events if e["event"] == "PositionLiquidated"]
    assert liq["scope"] == "position"
    assert liq["margin_ratio_before"] == pytest.approx(113 / 100, rel=1e-12)

    doc = write_report(result.write(tmp_path / "run"), tearsheet_enabled=False).read_text()
    traces = {t["name"]: t for t in figure(doc, "fig-margin-ratio")["data"]}
    own = traces["isolated liquidation (the position's own margin ratio)"]
    assert own["y"] == pytest.approx([1.13], rel=1e-12)
    assert "liquidation" not in traces or not traces["liquidation"]["y"]


def test_tearsheet_invents_no_year_from_a_bar_at_midnight_16() -> None:
    # steps are stamped at bar closes: the step at 2026-01-01 00:00 closes 2025's last bar.
    # The old boundary made it a day (and an EOY row) of 2026 on its own.
    idx = pd.date_range("2025-11-01 01:00", "2026-01-01 00:00", freq="1h", tz="UTC")
    rng = np.random.default_rng(3)
    equity = pd.Series(1e5 * np.exp(np.cumsum(rng.normal(0.0, 0.002, len(idx)))), index=idx)
    rets = daily_returns(equity)
    assert rets.index[-1] == pd.Timestamp("2025-12-31")
    assert rets.iloc[-1] == pytest.approx(equity.iloc[-1] / equity.iloc[-25] - 1.0, rel=1e-12)
    doc = tearsheet(equity, title="t").html
    assert doc is not None
    eoy = doc.split("<h3>EOY")[1].split("</table>")[0]
    assert re.findall(r"<td>(\d{4})</td>", eoy) == ["2025"]
    # quantstats' "CAGR﹪" (U+FE6A, missing from every font) is written with a plain %
    assert "CAGR%" in doc
    assert "\ufe6a" not in doc
