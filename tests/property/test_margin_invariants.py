"""Property tests of the money and margin invariants under random trading and crashes."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backtester
from backtester import Strategy
from backtester.instruments import instrument_from_symbol

pytestmark = pytest.mark.property
SYMS = ("BTC/USDT:USDT", "ETH/USDT:USDT")


def bars(path: list[float], rng: np.random.Generator) -> pd.DataFrame:
    close = np.asarray(path)
    open_ = np.concatenate([[close[0]], close[:-1]])
    wig = rng.uniform(0.0, 0.02, (2, len(close)))
    high = np.maximum(open_, close) * (1 + wig[0])
    low = np.minimum(open_, close) * (1 - wig[1])
    ts = pd.date_range("2025-01-01", periods=len(close), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close,
                         "volume": 1e6})


class RandomTrader(Strategy):
    """Trades from a pre-drawn script of actions; checks that liquidations leave no orders."""

    script: str = ""
    violations: int = 0

    def on_start(self, ctx):
        self.actions = [a.split(",") for a in self.script.split(";") if a]
        self.k = 0

    def on_liquidation(self, ctx, event):
        # cross liquidates the account: no order may remain; isolated liquidates a position:
        # no order may remain on its symbol
        scope = None if event.scope == "account" else set(event.trigger_price)
        if any(scope is None or o.symbol in scope for o in ctx.open_orders()):
            type(self).violations += 1

    def on_bar(self, ctx):
        if self.k >= len(self.actions):
            return
        kind, sym_i, qty, off = self.actions[self.k]
        self.k += 1
        sym = SYMS[int(sym_i)]
        q = Decimal(qty)
        px = ctx.price(sym)
        if kind == "m":
            (ctx.buy if q > 0 else ctx.sell)(sym, abs(q))
        elif kind == "l":
            lim = ctx.round_price(sym, px * (1 - float(off)))
            (ctx.buy if q > 0 else ctx.sell)(sym, abs(q), limit=lim)
        elif kind == "s":
            stop = ctx.round_price(sym, px * (1 + float(off)))
            (ctx.buy if q > 0 else ctx.sell)(sym, abs(q), stop=stop)
        elif kind == "c":
            ctx.close(sym)


action = st.tuples(st.sampled_from("mmmlsc"), st.integers(0, 1),
                   st.sampled_from(["-3", "-1", "-0.5", "0.5", "1", "2", "4"]),
                   st.sampled_from(["0.01", "0.03", "-0.02"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(action, min_size=3, max_size=20),
       crash=st.floats(-0.6, 0.3), seed=st.integers(0, 2**16),
       mode=st.sampled_from(["cross", "isolated"]), check=st.sampled_from(["intrabar", "close"]))
def test_money_and_margin_invariants(actions, crash, seed, mode, check):
    rng = np.random.default_rng(seed)
    n = 40
    paths = []
    for start in (50_000.0, 3_000.0):
        r = rng.normal(0, 0.01, n)
        r[20] += crash  # a correlated jump on both
        paths.append(list(start * np.exp(np.cumsum(r))))
    data = {s: bars(p, rng) for s, p in zip(SYMS, paths)}
    insts = {s: instrument_from_symbol(s, lot_size=Decimal("0.5"), tick_size=Decimal("0.01"))
             for s in SYMS}
    RandomTrader.violations = 0
    script = ";".join(",".join(map(str, a)) for a in actions)
    result = backtester.run(RandomTrader, data=data, instruments=insts, funding="zero",
                            collateral={"USDT": 30_000}, margin_mode=mode, margin_check=check,
                            leverage=50, params={"script": script})

    # the journal replays exactly to the final balances
    replay: dict[str, Decimal] = {}
    for asset, amount in zip(result.journal["asset"], result.journal["amount"]):
        replay[asset] = replay.get(asset, Decimal(0)) + Decimal(amount)
    assert {a: Decimal(v) for a, v in result.state["collateral_exact"].items()} == replay

    # equity = wallet + unrealized PnL at every bar
    eq = result.equity
    assert np.allclose(eq["equity"], eq["wallet"] + eq["unrealized_pnl"], rtol=0, atol=1e-6)

    # liquidation never leaves working orders
    assert RandomTrader.violations == 0

    # no negative wallet without a recorded bankruptcy/insurance entry, once flat
    flat = not result.state["positions"]
    usdt = Decimal(result.state["collateral_exact"]["USDT"])
    if flat and usdt < 0:
        pytest.fail(f"negative wallet {usdt} with no position and no insurance cover")
    if (result.journal["kind"] == "insurance_cover").any():
        assert any(e["event"] == "PositionLiquidated" for e in result.events)


@settings(max_examples=30, deadline=None)
@given(price=st.floats(100.0, 100_000.0), qty=st.sampled_from(["0.5", "1", "2.5", "10"]),
       side=st.sampled_from(["buy", "sell"]))
def test_round_trip_at_one_price_loses_exactly_the_fees(price, qty, side):
    sym = SYMS[0]
    px = round(price, 2)
    data = {sym: pd.DataFrame({"ts": pd.date_range("2025-01-01", periods=5, freq="1h",
                                                     tz="UTC"),
                               "open": px, "high": px, "low": px, "close": px,
                               "volume": 1e9})}

    class RoundTrip(Strategy):
        def on_bar(self, ctx):
            pos = ctx.position(sym)
            step = getattr(self, "step", 0)
            self.step = step + 1
            if step == 0:
                (ctx.buy if side == "buy" else ctx.sell)(sym, qty)
            elif step == 1 and not pos.is_flat:
                ctx.close(sym)

    inst = instrument_from_symbol(sym, lot_size=Decimal("0.5"), tick_size=Decimal("0.01"))
    result = backtester.run(RoundTrip, data=data, instruments={sym: inst}, funding="zero",
                            collateral={"USDT": 10_000_000}, slippage_bps=0)
    fees = sum(Decimal(f) for f in result.fills["fee_exact"])
    # the Bybit profile's taker fee 0.055 % on each side: 2 x qty x price x 0.00055
    assert fees == 2 * (Decimal(qty) * Decimal(repr(px)) * Decimal("0.00055")).quantize(
        Decimal("1e-12"))
    assert Decimal(result.state["collateral_exact"]["USDT"]) == Decimal(10_000_000) - fees
