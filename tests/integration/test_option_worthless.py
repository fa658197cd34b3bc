"""Worthless options and debts after settlement (issue 14 item 9).

A mark of 0 is a worthless option, not bad data; an option marked at (or under) its intrinsic
value has IV 0; a stablecoin balance that ends negative after a short put settles against coin
collateral is a liability, and ``margin.json`` is still written.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.data.feed import MarketFrames
from backtester.data.store import Store
from backtester.instruments import instrument_from_symbol

PERP = "BTC/USDT:USDT"
ZERO_FEES = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}


def _candles(ts: pd.DatetimeIndex, close: list[float] | np.ndarray) -> pd.DataFrame:
    c = np.asarray(close, dtype="float64")
    return pd.DataFrame({"ts": ts, "open": c, "high": c, "low": c, "close": c, "volume": 1e9})


class Trades(Strategy):
    """At the first step sell ``sell`` and buy ``buy`` (one each); keep the chains seen."""

    sell: str = ""
    buy: str = ""

    def on_start(self, ctx: Any) -> None:
        self.chains: list[pd.DataFrame] = []

    def on_bar(self, ctx: Any) -> None:
        if not getattr(self, "done", False):
            self.done = True
            if self.sell:
                ctx.sell(self.sell, 1)
            if self.buy:
                ctx.buy(self.buy, 1)
        self.chains.append(ctx.chain("BTC"))


@pytest.mark.shared
def test_recorded_zero_marks_run_as_worthless_options(shared_data: Path, tmp_path: Path) -> None:
    # Deribit 2020-05-14 05:41-05:44 (schepal-deribit_data_collector): BTC-14MAY20-8500-P and
    # -8000-P were marked 0 BTC (mark IV 116.52 and 117.55 %), 2.3 hours before expiry. Store
    # them as a dataset of option marks only (their candles are the marks, as for any option
    # known by its marks) over two 1-minute bars with a BTC perp at the index.
    d = pd.read_csv(shared_data / "schepal-deribit_data_collector"
                    / "btc_options_data_2020-05-14.csv")
    rows = d[d["instrument_name"].isin(["BTC-14MAY20-8500-P", "BTC-14MAY20-8000-P"])]
    assert (rows["mark_price"] == 0).all()
    ts = pd.date_range("2020-05-14 05:42", periods=2, freq="1min", tz="UTC")
    store = Store(tmp_path)
    perp = "BTC/USD:BTC"
    index = _candles(ts, [float(rows["index_price"].mean())] * 2)
    for kind in ("ohlcv", "mark", "index"):
        store.write("deribit-zero", kind, perp, "1m", index)
    markets = {perp: {"symbol": perp, "base": "BTC", "quote": "USD", "settle": "BTC",
                      "type": "swap", "swap": True, "linear": False, "inverse": True,
                      "contract": True, "contractSize": 10, "precision": {"price": 0.5,
                                                                           "amount": 1}}}
    for r in rows.itertuples():
        code = r.instrument_name.split("-")[2]
        sym = f"BTC/USD:BTC-200514-{code}-P"
        store.write("deribit-zero", "option_marks", sym, "1m", pd.DataFrame({
            "ts": ts, "mark_price": r.mark_price, "mark_iv": r.mark_iv,
            "underlying_price": r.underlying_price}))
        markets[sym] = {"symbol": sym, "base": "BTC", "quote": "USD", "settle": "BTC",
                        "type": "option", "option": True, "linear": False, "inverse": True,
                        "contract": True, "contractSize": 1, "expiry": 1589443200000,
                        "strike": float(code), "optionType": "put",
                        "precision": {"price": 0.0005, "amount": 0.1}}
    store.write_json("deribit-zero", "markets", {"markets": markets, "precision_mode": 4})
    s = Trades(buy="BTC/USD:BTC-200514-8500-P")
    r = backtester.run(s, dataset="deribit-zero", datasets_root=tmp_path, funding="zero",
                       profile="deribit", collateral={"BTC": 1})
    assert r.meta["mark_source"]["BTC/USD:BTC-200514-8500-P"] == "option_marks"
    chain = s.chains[-1].set_index("symbol")
    assert chain["mark"].tolist() == [0.0, 0.0]
    # the recorded mark IV stands (Deribit's own), and so do greeks on it: Deribit's delta of
    # the 8500 put was -0.00001 (recorded to 5 decimals)
    assert chain.loc["BTC/USD:BTC-200514-8500-P", "iv"] == pytest.approx(1.1652)
    assert abs(chain.loc["BTC/USD:BTC-200514-8500-P", "delta"]) < 5e-5
    # bought at the next bar's open, 0: no exchange takes an order at 0, so the fill is at
    # the minimum price, one tick (0.0005 BTC), with Deribit's option fee min(0.0003 × 1,
    # 12.5 % × 0.0005) = 0.0000625 BTC; the position is worth 0 at its mark
    fill = r.fills.iloc[0]
    assert (fill["price"], fill["fee"]) == (0.0005, 0.0000625)
    assert Decimal(r.state["collateral_exact"]["BTC"]) == Decimal("0.9994375")
    assert r.positions["mark"].iloc[-1] == 0.0


def _linear_put_run(option_close: list[tuple[int, list[float]]], *, profile: str,
                    **keys: Any) -> backtester.BacktestResult:
    # BTC index 50,000 on 2025-01-02, 45,000 from 2025-01-03 00:00; the USDC put
    # BTC/USDC:USDC-250103-<K>-P trades (and is marked) at ``option_close``, no mark IV
    idx = pd.date_range("2025-01-02 00:00", "2025-01-03 12:00", freq="1h", tz="UTC")
    px = [50_000.0] * 24 + [45_000.0] * (len(idx) - 24)
    live = idx[idx < pd.Timestamp("2025-01-03 08:00", tz="UTC")]
    data: dict[str, Any] = {PERP: MarketFrames(ohlcv=_candles(idx, px), index=_candles(idx, px))}
    for strike, close in option_close:
        sym = f"BTC/USDC:USDC-250103-{strike}-P"
        marks = pd.DataFrame({"ts": live, "mark_price": close})
        data[sym] = MarketFrames(ohlcv=_candles(live, close), option_marks=marks)
    insts = {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
    return backtester.run(Trades(**keys), data=data, instruments=insts, funding="zero",
                          slippage_bps=0, collateral={"BTC": 1}, profile=profile)


@pytest.mark.parametrize("profile", ["bybit", "okx"])
def test_options_at_zero_or_at_intrinsic_get_iv_zero(profile: str) -> None:
    # the 40,000 put is worthless all along (0); the 50,000 put trades at its intrinsic value
    # once the index is at 45,000 (5,000): no vol reproduces either, both are valued at
    # intrinsic with IV 0 — delta 0 for the worthless put, −1 for the one at intrinsic —
    # instead of NaN, which left them without greeks and stopped the run in the portfolio
    # requirement (capital-efficiency comparison) with "no implied vol".
    n_live = 32
    worthless = [0.0] * n_live
    at_intrinsic = [1_000.0] * 24 + [5_000.0] * (n_live - 24)
    r = _linear_put_run([(40000, worthless), (50000, at_intrinsic)], profile=profile,
                        sell="BTC/USDC:USDC-250103-40000-P")
    pos = r.positions
    held = pos[pos["symbol"] == "BTC/USDC:USDC-250103-40000-P"]
    assert len(held) > 20
    assert (held["delta"] == 0.0).all()
    assert (held["theta"] == 0.0).all()
    assert (held["mark"] == 0.0).all()


class Chains(Strategy):
    def on_start(self, ctx: Any) -> None:
        self.seen: list[pd.DataFrame] = []

    def on_bar(self, ctx: Any) -> None:
        self.seen.append(ctx.chain("BTC").assign(now=ctx.now))


def test_chain_of_options_at_zero_and_at_intrinsic() -> None:
    n_live = 32
    s = Chains()
    idx = pd.date_range("2025-01-02 00:00", "2025-01-03 12:00", freq="1h", tz="UTC")
    px = [50_000.0] * 24 + [45_000.0] * (len(idx) - 24)
    live = idx[:n_live]
    data: dict[str, Any] = {PERP: MarketFrames(ohlcv=_candles(idx, px), index=_candles(idx, px))}
    for strike, close in ((40000, [0.0] * n_live),
                          (50000, [1_000.0] * 24 + [5_000.0] * (n_live - 24))):
        sym = f"BTC/USDC:USDC-250103-{strike}-P"
        data[sym] = MarketFrames(ohlcv=_candles(live, close),
                                 option_marks=pd.DataFrame({"ts": live, "mark_price": close}))
    insts = {sym: instrument_from_symbol(sym, **ZERO_FEES) for sym in data}
    backtester.run(s, data=data, instruments=insts, funding="zero", collateral={"BTC": 1},
                   profile="bybit")
    last = s.seen[30].set_index("symbol")  # 2025-01-03 07:00 close: index 45,000
    assert last.loc["BTC/USDC:USDC-250103-40000-P", ["iv", "delta", "gamma"]].tolist() == \
        [0.0, 0.0, 0.0]
    assert last.loc["BTC/USDC:USDC-250103-50000-P", ["iv", "delta"]].tolist() == [0.0, -1.0]
    # before, at 1,000 with the index at 50,000 (ATM, 32 hours left) the IV is solved
    first = s.seen[0].set_index("symbol")
    assert 0.5 < first.loc["BTC/USDC:USDC-250103-50000-P", "iv"] < 2.0


def test_negative_usdc_after_a_short_put_settles_still_writes_margin_json(
        tmp_path: Path) -> None:
    # Bybit, 1 BTC of collateral. Short 1 BTC/USDC:USDC-250103-50000-P sold at 1,000 USDC
    # (fees 0) at the 01:00 bar's open; it settles at 08:00 on 2025-01-03 at the index TWAP
    # 45,000: payoff (50,000 − 45,000) × 1 = 5,000 USDC. USDC: +1,000 − 5,000 = −4,000.
    # Margin balance: 1 BTC × 45,000 × 0.95 (Bybit's BTC collateral ratio) − 4,000 × 1 (a debt
    # counts in full) = 38,750 USD, no position left: status ok, available 38,750.
    r = _linear_put_run([(50000, [1_000.0] * 24 + [5_100.0] * 8)], profile="bybit",
                        sell="BTC/USDC:USDC-250103-50000-P")
    exp = [e for e in r.events if e["event"] == "InstrumentExpired"]
    assert (exp[0]["settlement_price"], exp[0]["pnl"]) == (45_000.0, Decimal("-5000"))
    assert Decimal(r.state["collateral_exact"]["USDC"]) == Decimal(-4000)
    assert r.equity["margin_balance"].iloc[-1] == pytest.approx(38_750.0)
    final = r.meta["final_margin"]
    assert final["margin_balance"] == pytest.approx(38_750.0)
    assert (final["status"], final["available"]) == ("ok", pytest.approx(38_750.0))
    assert any(w.startswith("liability assumption: a negative balance is a loan") for w in
               r.warnings)
    assert not any("final margin snapshot not evaluated" in w for w in r.warnings)
    out = r.write(tmp_path / "run")
    written = json.loads((out / "margin.json").read_text())
    assert written["margin_balance"] == pytest.approx(38_750.0)
