"""The example cross-margin strategies on the (synthetic) sample dataset, each with an assertion
about the behaviour it is built for. Windows are short (days to weeks) to keep the module fast;
the 2025-07-20 crash is BTC -28 % / ETH -36 % over six hours from 00:00 UTC."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import backtester
from backtester import BacktestResult, Strategy
from backtester.context import Context
from backtester.risk import MarginGuard
from strategies.hedged_pair import HedgedPair


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backtester.data.sample import ensure_sample

    root = tmp_path_factory.mktemp("datasets")
    ensure_sample(root)
    return root


def _run(strategy: str | type[Strategy], root: Path, start: str, end: str,
         **keys: Any) -> BacktestResult:
    return backtester.run(strategy, dataset="sample", datasets_root=root, start=start, end=end,
                          **keys)


# -- funding carry --------------------------------------------------------------------------
def test_funding_carry_is_delta_neutral_while_held_and_exits_when_funding_flips(
        sample_root: Path) -> None:
    r = _run("strategies/funding_carry.py", sample_root, "2025-05-01", "2025-07-01")
    rec = r.records
    held = rec[(rec["perp_coins"] != 0) | (rec["future_coins"] != 0)]
    assert len(held) > 500  # held most of the two months
    # delta-neutral: perp coins + future coins = 0 at every held bar (same coin amount)
    assert (held["perp_coins"] + held["future_coins"]).abs().max() < 1e-9
    assert set(np.sign(held["perp_coins"])) == {-1.0, 1.0}  # both carry directions traded
    perp = "BTC/USDT:USDT"
    exits = r.fills[(r.fills["tag"] == "exit") & (r.fills["symbol"] == perp)]
    assert len(exits) >= 4
    for _, f in exits.iterrows():
        # decided at the close before the fill (the step at the fill's bar open, its ts): the
        # trailing funding had crossed zero against the position (a short perp leaves when
        # funding < 0, a long perp when it is > 0)
        apr = rec["funding_apr"].loc[f["ts"]]
        assert apr < 0 if f["qty"] > 0 else apr > 0
    entries = r.fills[(r.fills["tag"] == "carry") & (r.fills["symbol"] == perp)]
    for _, f in entries.iterrows():
        apr = rec["funding_apr"].loc[f["ts"]]
        assert abs(apr) > 0.3
        assert np.sign(apr) == -np.sign(f["qty"])  # short the perp when funding is rich
    # the future leg is rolled or closed at least roll_days (7) before its expiry: it is never
    # held into the last week, and never delivered
    fut_pos = r.positions[(r.positions["symbol"] != perp) & (r.positions["qty"] != 0)]
    expiry = pd.to_datetime(fut_pos["symbol"].str[-6:], format="%y%m%d", utc=True)
    assert ((expiry - fut_pos["ts"]) > pd.Timedelta(days=7)).all()
    assert not [e for e in r.events if e["event"] == "InstrumentExpired"]
    assert r.metrics["funding_paid"] < 0  # funding was collected
    assert r.metrics["liquidations"] == 0


def test_funding_carry_rolls_the_future_leg_a_week_before_expiry(sample_root: Path) -> None:
    # never exit on funding (exit_apr far below any rate): the hedge must be rolled instead
    r = _run("strategies/funding_carry.py", sample_root, "2025-05-01", "2025-07-01",
             params={"exit_apr": -10.0, "allow_reverse": False})
    rolls = r.fills[r.fills["tag"] == "roll"]
    assert list(rolls["symbol"]) == ["BTC/USDT:USDT-250627", "BTC/USDT:USDT-250926"]
    assert rolls["qty"].sum() == 0  # the same coins moved from one expiry to the next
    # decided at the 2025-06-20 09:00 close, 6 days 23 hours before the 06-27 08:00 expiry
    # (roll_days = 7), filled at the open of the bar opening then
    assert rolls["ts"].iloc[0] == pd.Timestamp("2025-06-20 09:00", tz="UTC")
    assert rolls["step_ts"].iloc[0] == pd.Timestamp("2025-06-20 10:00", tz="UTC")
    rec = r.records
    held = rec[(rec["perp_coins"] != 0) | (rec["future_coins"] != 0)]
    assert (held["perp_coins"] + held["future_coins"]).abs().max() < 1e-9
    assert (r.fills["symbol"] == "BTC/USDT:USDT").sum() == 1  # the perp leg never moved


# -- calendar basis -------------------------------------------------------------------------
def test_calendar_basis_holds_to_expiry_and_the_basis_converges(sample_root: Path) -> None:
    r = _run("strategies/calendar_basis.py", sample_root, "2025-05-20", "2025-07-01")
    fut = "BTC/USDT:USDT-250627"
    entry = r.fills[(r.fills["tag"] == "basis") & (r.fills["symbol"] == fut)].iloc[0]
    perp_in = r.fills[(r.fills["tag"] == "basis") & (r.fills["symbol"] == "BTC/USDT:USDT")].iloc[0]
    assert entry["qty"] < 0 < perp_in["qty"]  # rich basis: short future, long perp
    assert entry["qty"] == -perp_in["qty"]
    # never traded the future again before expiry: held to convergence
    assert (r.fills["symbol"] == fut).sum() == 1
    expiry = next(e for e in r.events if e["event"] == "InstrumentExpired" and e["symbol"] == fut)
    assert expiry["qty"] == Decimal(str(entry["qty"]))
    assert expiry["time"] == "2025-06-27T08:00:00Z"
    perp_out = r.fills[(r.fills["tag"] == "converged")].iloc[0]
    assert perp_out["qty"] == -perp_in["qty"]
    # converged: the legs' price PnL (future settled at the delivery price, perp closed just
    # after) equals the entry basis qty x (F0 - P0), less the small perp-vs-index gap at exit
    locked = perp_in["qty"] * (entry["price"] - perp_in["price"])
    legs = float(expiry["pnl"]) + perp_out["realized_pnl"]
    assert locked > 0
    assert legs == pytest.approx(locked, rel=0.15)
    # the perp was closed within 0.1 % of the delivery price
    assert perp_out["price"] == pytest.approx(expiry["settlement_price"], rel=1e-3)


# -- volatility-targeted trend --------------------------------------------------------------
def test_vol_target_leverage_falls_when_vol_rises_and_is_cut_when_correlation_is_high(
        sample_root: Path) -> None:
    r = _run("strategies/vol_target_trend.py", sample_root, "2025-06-20", "2025-08-01")
    rec = r.records.dropna(subset=["leverage"])
    before = rec.loc["2025-07-17":"2025-07-19 23:00", "leverage"].mean()
    after = rec.loc["2025-07-20 06:00":"2025-07-22", "leverage"].mean()
    assert after < before / 3  # realised vol more than tripled after the crash
    held_before = rec.loc["2025-07-17":"2025-07-19 23:00", "held_leverage"].mean()
    held_after = rec.loc["2025-07-20 08:00":"2025-07-22", "held_leverage"].mean()
    assert held_after < held_before / 3  # the positions really were cut
    # over the whole run leverage moves against realised vol
    assert rec["raw_leverage"].corr(rec["vol_btc"], method="spearman") < -0.8
    # correlation above 0.85 halves the leverage, and only then
    cut = rec["corr"] > 0.85
    assert cut.sum() > 24
    assert (~cut).sum() > 24
    np.testing.assert_allclose(rec.loc[cut, "leverage"], 0.5 * rec.loc[cut, "raw_leverage"])
    np.testing.assert_allclose(rec.loc[~cut, "leverage"], rec.loc[~cut, "raw_leverage"])


# -- the BTC/ETH pair in one pool -----------------------------------------------------------
class PairThroughCrash(HedgedPair):
    """The hedged pair entered once (at the first z-score) and held through the crash."""

    def on_bar(self, ctx: Context) -> None:
        if getattr(self, "entered", False):
            return
        super().on_bar(ctx)
        self.entered = bool(ctx.open_orders())


class LegAlone(Strategy):
    """One leg of the pair, same size and leverage, held alone."""

    symbol: str = "BTC/USDT:USDT"
    notional_usd: float = 50_000.0
    leverage: float = 10.0
    start_ms: int = 0

    def on_bar(self, ctx: Context) -> None:
        if getattr(self, "entered", False) or ctx.now < self.start_ms:
            return
        ctx.set_leverage(self.symbol, self.leverage)
        ctx.buy(self.symbol, ctx.contracts_for(self.symbol, notional=self.notional_usd))
        self.entered = True


def test_pair_survives_the_crash_in_cross_margin_where_its_weak_leg_alone_is_liquidated(
        sample_root: Path) -> None:
    window = ("2025-07-12", "2025-07-23")
    pair = {"entry_z": 0.0, "exit_z": 0.0, "lookback": 48, "notional_usd": 50_000.0,
            "leverage": 10.0}
    collateral = {"USDT": 12_000}  # 50k per leg at 10x: 10k initial margin for the pair
    cross = _run(PairThroughCrash, sample_root, *window, params=pair, collateral=collateral)
    iso = _run(PairThroughCrash, sample_root, *window, params=pair, collateral=collateral,
               margin_mode="isolated")
    long_leg = cross.fills[cross.fills["qty"] > 0].iloc[0]
    assert long_leg["ts"] < pd.Timestamp("2025-07-20", tz="UTC")
    # cross: one pool, the short leg's gain pays for the long leg's loss; both legs survive
    assert cross.metrics["liquidations"] == 0
    last = cross.positions[cross.positions["ts"] == cross.positions["ts"].max()]
    assert (last["qty"] != 0).sum() == 2
    # isolated: the long leg stands alone on its 5k and is liquidated in the crash
    liq = [e for e in iso.events if e["event"] == "PositionLiquidated"]
    assert len(liq) == 1
    assert liq[0]["steps"][0]["symbol"] == long_leg["symbol"]
    assert liq[0]["time"].startswith("2025-07-20")
    # the long leg held alone with its half of the collateral is liquidated as well
    alone = _run(LegAlone, sample_root, *window, collateral={"USDT": 6_000},
                 params={"symbol": long_leg["symbol"],
                         "start_ms": int(long_leg["ts"].value // 1_000_000) - 3_600_000})
    assert alone.metrics["liquidations"] == 1
    assert cross.equity["equity"].min() > 0.5 * 12_000


# -- margin guard ---------------------------------------------------------------------------
class LeveragedLong(Strategy):
    """A 4x BTC long opened before the crash, optionally guarded."""

    notional_usd: float = 40_000.0
    de_risk_at: float = 0.0

    def on_start(self, ctx: Context) -> None:
        self.guard = MarginGuard(de_risk_at=self.de_risk_at) if self.de_risk_at > 0 else None
        self.entered = False

    def on_bar(self, ctx: Context) -> None:
        if self.guard is not None:
            self.guard(ctx)
        ctx.record(margin_ratio=ctx.account.margin_ratio)
        if not self.entered:
            ctx.set_leverage("BTC/USDT:USDT", 20)
            ctx.buy("BTC/USDT:USDT", ctx.contracts_for("BTC/USDT:USDT",
                                                       notional=self.notional_usd))
            self.entered = True


def test_margin_guard_de_risks_before_the_exchange_liquidates(sample_root: Path) -> None:
    window = ("2025-07-17", "2025-07-23")
    keys: dict[str, Any] = {"collateral": {"USDT": 10_000}}
    bare = _run(LeveragedLong, sample_root, *window, **keys)
    guarded = _run(LeveragedLong, sample_root, *window, params={"de_risk_at": 0.05}, **keys)
    assert bare.metrics["liquidations"] == 1
    assert bare.metrics["total_return"] == pytest.approx(-1.0, abs=0.01)
    cuts = guarded.fills[guarded.fills["tag"] == "risk_guard"]
    assert len(cuts) >= 1
    assert cuts["ts"].min() < pd.Timestamp("2025-07-20 06:00", tz="UTC")  # inside the crash
    assert (cuts["qty"] < 0).all()  # reduce-only sells of the long
    assert guarded.metrics["liquidations"] == 0
    assert guarded.equity["equity"].iloc[-1] > 1_000


# -- risk controls through the engine ---------------------------------------------------------
class ControlledLong(Strategy):
    """Ask for 10x BTC; the controls allow 2x and bracket the position with 3 % exits."""

    def on_start(self, ctx: Context) -> None:
        from backtester.risk import PositionLimits, RiskControls

        self.risk = RiskControls(limits=PositionLimits(max_qty=5.0), max_leverage=2.0)
        self.sent: list[float] = []

    def on_bar(self, ctx: Context) -> None:
        self.risk.apply(ctx)
        pos = ctx.position("BTC/USDT:USDT")
        ctx.record(leverage=abs(pos.notional) / ctx.account.equity)
        if pos.is_flat and not ctx.open_orders():
            if self.sent and len(self.sent) >= 3:
                return
            want = ctx.contracts_for("BTC/USDT:USDT", notional=10 * ctx.account.equity)
            qty = self.risk.order(ctx, "BTC/USDT:USDT", want, tag="entry")
            self.sent.append(float(qty))
        elif not pos.is_flat and not ctx.open_orders():
            self.risk.exits(ctx, "BTC/USDT:USDT", stop_pct=0.03, take_pct=0.03)


def test_risk_controls_cap_leverage_and_bracket_exits_in_a_run(sample_root: Path) -> None:
    r = _run(ControlledLong, sample_root, "2025-03-01", "2025-03-08")
    entries = r.fills[r.fills["tag"] == "entry"]
    assert len(entries) == 3
    # 2x of ~100k equity at ~85-95k BTC is ~2.2 BTC, well under the 5-contract limit
    assert entries["qty"].abs().max() < 5.0
    lev = r.records["leverage"]
    assert lev.max() < 2.1  # the 10x request was cut to 2x (plus drift before the next bar)
    assert lev.max() > 1.8
    exits = r.fills[r.fills["tag"].isin(["stop_loss", "take_profit"])]
    assert len(exits) == 3  # every position left through one of its two exits
    # one cancels the other: the sibling of each filled exit was cancelled, none filled twice
    cancelled = r.orders[r.orders["tag"].isin(["stop_loss", "take_profit"])
                         & r.orders["status"].str.startswith("cancelled")]
    assert len(cancelled) == 3
    for _, f in exits.iterrows():
        entry = entries[entries["ts"] < f["ts"]].iloc[-1]
        move = f["price"] / entry["price"] - 1.0
        # the stop sells about 3 % below the entry, the take profit about 3 % above
        target = -0.03 if f["tag"] == "stop_loss" else 0.03
        assert move == pytest.approx(target, abs=0.01)
