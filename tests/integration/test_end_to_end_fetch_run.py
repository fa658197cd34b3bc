"""End to end: fetch over loopback with the real ccxt client → store → ``backtester run``.

The fake exchange serves freqtrade's recorded XRP/USDT:USDT 5m candles and 8h funding in
Binance's wire format. The run holds 1,000 XRP long from the second bar; funding is charged at
each of the 12 stamps from the fetched history (no mark candles were fetched, so the 5m trade
candle opening at each stamp is the mark, and the results say so). The recorded funding starts
on 2021-11-18, three days after the candles: the run opts in to charging zero at the 8 stamps
before it (``--funding history_or_zero``) and says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from backtester.cli import _register, cli
from backtester.data.fetch import FetchReport
from backtester.data.store import Store

STRATEGY = '''
from decimal import Decimal
from backtester import Strategy

class HoldXrp(Strategy):
    qty: str = "1000"

    def on_bar(self, ctx):
        if not getattr(self, "sent", False):
            self.sent = True
            ctx.buy("XRP/USDT:USDT", Decimal(self.qty))
'''


def test_fetch_store_run_charges_fetched_funding(run_fetch: Callable[..., FetchReport],
                                                 store: Store, shared_data: Path,
                                                 tmp_path: Path) -> None:
    run_fetch(kinds=("ohlcv", "funding"), timeframe="5m", since="2021-11-15",
              until="2021-11-21T22:35",
              tiers_file=shared_data / "exchange" / "binance_leverage_tiers.json")
    strategy = tmp_path / "hold_xrp.py"
    strategy.write_text(STRATEGY)
    _register()
    out = tmp_path / "reports"
    res = CliRunner().invoke(cli, ["run", str(strategy), "--dataset", "binanceusdm",
                                   "--datasets", str(store.root), "--output-dir", str(out),
                                   "--collateral", "USDT=10000", "--slippage-bps", "0",
                                   "--funding", "history_or_zero", "--run-id", "e2e",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    run_dir = out / "e2e"
    events = json.loads((run_dir / "events.json").read_text())
    paid = [e for e in events if e["event"] == "FundingPaid"]
    assert len(paid) == 12
    assert {e["mark_source"] for e in paid} == {"trade"}
    # each payment = -qty x mark x rate, mark = open of the 5m trade candle at the stamp
    candles = store.read("binanceusdm", "ohlcv", "XRP/USDT:USDT", "5m").set_index("ts")
    expected = Decimal(0)
    for e in paid:
        t = pd.Timestamp(e["time"])
        mark = candles.loc[t, "open"]
        term = -Decimal(1000) * Decimal(repr(float(mark))) * Decimal(repr(e["rate"]))
        expected += term.quantize(Decimal("1e-12"))
    assert sum(Decimal(e["amount"]) for e in paid) == expected
    warnings = json.loads((run_dir / "warnings.json").read_text())
    assert any("mark candles missing" in w for w in warnings)
    # 2021-11-15 08:00 .. 2021-11-17 16:00, every 8 hours: 8 stamps without history
    assert ("funding charged zero for XRP/USDT:USDT at 8 funding time(s) outside its history "
            "(2021-11-15T08:00:00Z .. 2021-11-17T16:00:00Z; the history covers "
            "2021-11-18T00:00:00Z .. 2021-11-21T16:00:00Z), as asked "
            "(--funding history_or_zero)") in warnings
    config = json.loads((run_dir / "config.json").read_text())
    assert config["profile"] == "binance-usdm"
    assert config["is_synthetic"] is False
