"""Option strategies on the (synthetic) sample dataset, June-August 2025 (the window holds the
2025-07-20 crash and three monthly expiries)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import backtester
from backtester import Strategy

WINDOW = {"start": "2025-06-01", "end": "2025-09-01"}


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backtester.data.sample import ensure_sample

    root = tmp_path_factory.mktemp("datasets")
    ensure_sample(root)
    return root


def test_delta_hedged_strangle_stays_delta_neutral_and_settles(sample_root: Path):
    r = backtester.run("strategies/delta_hedged_strangle.py", dataset="sample",
                       datasets_root=sample_root, **WINDOW)
    delta = r.records["delta"].dropna()
    # re-hedged whenever |delta| > 0.1 coin: between hedges delta stays near the band
    assert len(delta) > 1000
    assert delta.abs().median() < 0.1
    assert (delta.abs() < 0.5).mean() > 0.98
    opt_expiries = [e for e in r.events if e["event"] == "InstrumentExpired"
                    and e["symbol"].endswith(("-C", "-P"))]
    assert len(opt_expiries) >= 4  # two legs per monthly cycle
    hedges = r.fills[r.fills["tag"] == "hedge"]
    assert len(hedges) > 10
    # per-position greeks (positions.parquet) add up to the account delta the strategy saw
    by_step = r.positions.groupby("ts")["delta"].sum()
    seen = r.records["delta"].dropna()
    common = seen.index.intersection(by_step.index)
    assert len(common) > 1000
    assert (by_step[common] - seen[common]).abs().max() < 1e-9
    options = r.positions[r.positions["symbol"].str.endswith(("-C", "-P"))]
    assert (options["gamma"] < 0).all()  # short options: short gamma
    assert (options["theta"] > 0).all()  # ... and collect theta


class HoldPerp(Strategy):
    def on_bar(self, ctx):
        if ctx.position("BTC/USDT:USDT").is_flat:
            ctx.buy("BTC/USDT:USDT", ctx.contracts_for("BTC/USDT:USDT", notional=50_000))


def test_protective_put_cuts_the_crash_drawdown(sample_root: Path):
    insured = backtester.run("strategies/protective_put.py", dataset="sample",
                             datasets_root=sample_root, **WINDOW)
    naked = backtester.run(HoldPerp, dataset="sample", datasets_root=sample_root, **WINDOW)
    assert insured.metrics["max_drawdown"] > naked.metrics["max_drawdown"]  # less negative
    assert (insured.fills["tag"] == "put").sum() >= 2  # rolled after an expiry


def test_covered_call_on_coin_collateral_collects_premium_and_settles(sample_root: Path):
    r = backtester.run("strategies/covered_call.py", dataset="sample",
                       datasets_root=sample_root, collateral={"BTC": 2}, **WINDOW)
    calls = r.fills[r.fills["tag"] == "call"]
    assert len(calls) >= 2
    assert (calls["qty"] < 0).all()
    premium = r.journal[r.journal["kind"] == "option_premium"]
    assert all(Decimal(a) > 0 for a in premium["amount"])  # short premium credits the pool
    # an option expired mid-run and settled at its payoff: a call pays max(0, S - K) per coin
    expiries = [e for e in r.events if e["event"] == "InstrumentExpired"]
    assert expiries
    for e in expiries:
        strike = float(e["symbol"].split("-")[-2])
        payoff = max(0.0, e["settlement_price"] - strike)
        assert float(e["pnl"]) == pytest.approx(float(e["qty"]) * payoff, abs=1e-6)
    assert r.metrics["liquidations"] == 0
    # the BTC collateral itself is untouched; option cash flows are in USDC
    assert Decimal(r.state["collateral_exact"]["BTC"]) == Decimal(2)


def test_portfolio_margin_run_flags_its_assumptions_and_nets_the_hedge(sample_root: Path):
    # the same delta-hedged strangle under portfolio margin: requirements net (less IM than
    # the standard sum recorded beside it), and the model's unverified parameters are listed
    # in the run's warnings (the report's warnings panel shows them)
    r = backtester.run("strategies/delta_hedged_strangle.py", dataset="sample",
                       datasets_root=sample_root, start="2025-06-01", end="2025-06-15",
                       margin_mode="portfolio")
    flagged = [w for w in r.warnings if w.startswith("portfolio margin assumption:")]
    assert any("mm_factor" in w for w in flagged)
    cross = backtester.run("strategies/delta_hedged_strangle.py", dataset="sample",
                           datasets_root=sample_root, start="2025-06-01", end="2025-06-15")
    held = cross.equity["portfolio_initial_margin"].notna()
    assert held.sum() > 100
    assert (cross.equity.loc[held, "portfolio_initial_margin"]
            < cross.equity.loc[held, "initial_margin"]).mean() > 0.9
    assert 0 < cross.metrics["portfolio_to_standard_margin"] < 1
