"""What the shared pool buys: survival collateral, mode comparison, daily settlement."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

import backtester
from backtester import Strategy
from backtester.api import prepare
from backtester.instruments import instrument_from_symbol
from backtester.runs.modes import survival_collateral

PERP = "BTC/USDT:USDT"
FUT = "BTC/USDT:USDT-251226"
ZERO_FEES = {"taker_rate": Decimal(0), "maker_rate": Decimal(0)}


def flat_bars(prices: list[float]) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=len(prices), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": prices, "high": prices, "low": prices,
                         "close": prices, "volume": 1e9})


class Hedge(Strategy):
    """Long 1 BTC perp and short 1 BTC future at 20x, held."""

    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            for sym in (PERP, FUT):
                ctx.set_leverage(sym, 20)
            ctx.buy(PERP, Decimal(1))
            ctx.sell(FUT, Decimal(1))


def test_a_hedge_needs_far_less_collateral_in_cross_than_in_isolated():
    # Perp long and future short, both 1 BTC @ 50,000 at 20x: IM 2,500 each, 5,000 summed in
    # either mode. A crash to 40,000 (perp -10,000, future +10,000). The survival search keeps
    # the run's trades (initial-margin admission off) and scales the starting collateral by k
    # (in isolated mode each position's allocation scales with it).
    # Cross: the legs offset; the binding bar is the entry, MM = 0.5 % x 100,000 = 500, so
    #   C > 500 (at the crash MM is 400 and the margin balance is still C).
    # Isolated: the perp leg alone must absorb -10,000 with its allocation 2,500 x k:
    #   2,500 k - 10,000 > MM 0.5 % x 40,000 = 200 -> k > 4.08 -> C = 5,000 k > 20,400.
    data = {PERP: flat_bars([50_000.0] * 3 + [40_000.0] * 3),
            FUT: flat_bars([50_000.0] * 3 + [40_000.0] * 3)}
    insts = {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
    prep = prepare(Hedge, data=data, instruments=insts, funding="zero", slippage_bps=0,
                   margin_check="close", collateral={"USDT": 5_000})
    cross = backtester.api.run_prepared(prep)
    iso = backtester.api.run_prepared(prep, margin_mode="isolated")
    assert cross.equity["initial_margin"].iloc[2] == pytest.approx(5_000)
    assert iso.equity["initial_margin"].iloc[2] == pytest.approx(5_000)  # same summed IM
    s_cross = survival_collateral(prep, cross)
    s_iso = survival_collateral(prep, iso, margin_mode=backtester.config.MarginMode.ISOLATED)
    assert s_cross.collateral["USDT"] == pytest.approx(500, rel=0.02)
    assert s_iso.collateral["USDT"] == pytest.approx(20_400, rel=0.02)
    assert s_iso.collateral["USDT"] > 30 * s_cross.collateral["USDT"]


def test_compare_modes_table_has_every_mode():
    data = {PERP: flat_bars([50_000.0] * 3 + [40_000.0] * 3),
            FUT: flat_bars([50_000.0] * 3 + [40_000.0] * 3)}
    insts = {s: instrument_from_symbol(s, **ZERO_FEES) for s in data}
    r = backtester.run(Hedge, data=data, instruments=insts, funding="zero", slippage_bps=0,
                       margin_check="close", collateral={"USDT": 6_000},
                       compare_margin_modes=True)
    table = r.comparison.set_index("margin_mode")
    assert list(table.index) == ["cross", "isolated", "portfolio"]
    assert table.loc["cross", "liquidations"] == 0
    assert table.loc["isolated", "liquidations"] == 1


class LongDeribit(Strategy):
    def on_bar(self, ctx):
        if not getattr(self, "done", False):
            self.done = True
            ctx.buy("BTC/USDC:USDC", Decimal(1))


def test_daily_settlement_moves_session_pnl_into_the_wallet_at_0800_and_not_before():
    # Deribit profile (daily settlement 08:00 UTC). Long 1 BTC (linear USDC perp, no fees)
    # bought at 02:00 at 100; the price is 100 until 05:00 and 110 from 05:00. Until 08:00 the
    # +10 is equity only (the wallet stays 1,000); at the 08:00 settlement it is booked into
    # the wallet (1,010) and the position's unrealized PnL restarts from the settlement mark.
    ts = pd.date_range("2025-01-01 00:00", periods=12, freq="1h", tz="UTC")
    prices = [100.0] * 5 + [110.0] * 7
    data = {"BTC/USDC:USDC": pd.DataFrame({"ts": ts, "open": prices, "high": prices,
                                           "low": prices, "close": prices, "volume": 1e9})}
    insts = {"BTC/USDC:USDC": instrument_from_symbol("BTC/USDC:USDC", **ZERO_FEES)}
    r = backtester.run(LongDeribit, data=data, instruments=insts, profile="deribit",
                       funding="zero", slippage_bps=0, collateral={"USDC": 1_000})
    eq = r.equity
    before = eq.loc[eq.index < pd.Timestamp("2025-01-01 08:00", tz="UTC")]
    after = eq.loc[eq.index >= pd.Timestamp("2025-01-01 08:00", tz="UTC")]
    assert (before["wallet"] == 1_000).all()
    assert before["equity"].iloc[-1] == pytest.approx(1_010)
    assert after["wallet"].iloc[0] == pytest.approx(1_010)
    assert after["unrealized_pnl"].iloc[0] == pytest.approx(0.0)
    assert after["equity"].tolist() == pytest.approx([1_010.0] * len(after))
    transfers = r.journal[r.journal["kind"] == "session_transfer"]
    assert list(transfers["ledger"]) == ["session", "wallet"]
    assert [Decimal(a) for a in transfers["amount"]] == [Decimal(-10), Decimal(10)]
