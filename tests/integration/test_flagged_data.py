"""A funding rate of 10 through import, validate and a run (issue 15, item 4).

freqtrade's recorded XRP/USDT:USDT 5m candles and 8h funding (shared/data PROVENANCE.md), with
the funding rate of 2021-11-19 00:00 set to 10 (1000 % per interval) as in the issue.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from backtester.cli import _register
from tests.cli_helpers import invoke as _invoke

_register()
FUT = "freqtrade-testdata/futures"
XRP = "XRP/USDT:USDT"
FLAG = ("funding XRP/USDT:USDT at 2021-11-19T00:00:00Z: funding rate 10 (1000.00%) is beyond "
        "the exchange's cap ±0.03 (binance-usdm profile)")
HOLD = '''
from decimal import Decimal
from backtester import Strategy

class HoldXrp(Strategy):
    def on_bar(self, ctx):
        if not getattr(self, "sent", False):
            self.sent = True
            ctx.buy("XRP/USDT:USDT", Decimal("1000"))
'''


def test_absurd_funding_is_shown_on_import_failed_by_validate_and_warned_by_a_run_15(
        shared_data: Path, tmp_path: Path) -> None:
    funding = pd.read_feather(shared_data / FUT / "XRP_USDT_USDT-8h-funding_rate.feather")
    funding.loc[3, "open"] = 10.0  # the stamp of 2021-11-19 00:00
    bad = tmp_path / "XRP_USDT_USDT-8h-funding_rate.feather"
    funding.to_feather(bad)
    datasets = str(tmp_path / "datasets")
    code, _, err = _invoke("data", "import", str(shared_data / FUT / "XRP_USDT_USDT-5m-futures"
                                                  ".feather"), "--exchange", "binanceusdm",
                           "--symbol", XRP, "--kind", "ohlcv", "--datasets", datasets)
    assert code == 0, err
    assert "flagged" not in err  # the real candles are plausible

    code, out, err = _invoke("data", "import", str(bad), "--exchange", "binanceusdm", "--symbol",
                             XRP, "--kind", "funding", "--datasets", datasets)

    assert code == 0, err
    assert "imported" in out
    assert err.strip().splitlines() == [f"warning: flagged: {FLAG}"]

    code, out, err = _invoke("data", "validate", "--datasets", datasets)

    assert code == 1
    assert f"flagged: {FLAG}" in err.splitlines()
    assert "2 files checked, 1 problem(s)" in out

    strategy = tmp_path / "hold.py"
    strategy.write_text(HOLD)
    out_dir = tmp_path / "reports"
    # the funding history starts on 2021-11-18, three days after the candles: charged zero
    # before it, by request (issue 16 item 5)
    code, _, err = _invoke("run", str(strategy), "--dataset", "binanceusdm", "--datasets",
                           datasets, "--output-dir", str(out_dir), "--run-id", "r",
                           "--collateral", "USDT=10000", "--funding", "history_or_zero",
                           "--quiet")

    assert code == 0, err
    warnings = json.loads((out_dir / "r" / "warnings.json").read_text())
    assert f"flagged data used by this run (see `backtester data validate`): {FLAG}" in warnings
