"""Hedged BTC/ETH pair in one collateral pool — the flagship demo strategy.

Idea
----
BTC and ETH move together; their log price ratio mean-reverts more than either price does. The
strategy holds a dollar-neutral pair (long one perp, short the other) when the ratio's z-score
is stretched and closes it when the z-score returns toward zero. Both legs share one cross-margin
pool, so in a correlated crash the short leg's gain pays for the long leg's loss — the pool offsets
PnL, while requirements still add up.

Parameters
----------
btc, eth
    The two perpetual symbols.
lookback
    Bars in the rolling mean and standard deviation of the log ratio.
entry_z, exit_z
    Open when ``|z| > entry_z``; close when ``|z| < exit_z``.
notional_usd
    USD notional of each leg.
leverage
    Leverage setting of both perps (initial margin = notional / leverage).

Risks
-----
The ratio can trend (regime change) instead of reverting; each leg pays funding; in isolated
margin each leg stands alone and the losing leg can be liquidated even though the pair is flat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtester import Strategy


def _zscore(btc: np.ndarray, eth: np.ndarray, lookback: int) -> np.ndarray:
    ratio = pd.Series(np.log(btc) - np.log(eth))
    mean = ratio.rolling(lookback).mean()
    std = ratio.rolling(lookback).std()
    return ((ratio - mean) / std).to_numpy()


class HedgedPair(Strategy):
    """Dollar-neutral BTC/ETH perp pair on the z-score of their log price ratio."""

    btc: str = "BTC/USDT:USDT"
    eth: str = "ETH/USDT:USDT"
    lookback: int = 168
    entry_z: float = 2.0
    exit_z: float = 0.5
    notional_usd: float = 50_000.0
    leverage: float = 10.0

    def on_start(self, ctx):
        btc = ctx.series(self.btc, "close")
        eth = ctx.series(self.eth, "close")
        self.z = ctx.indicator(_zscore, btc, eth, self.lookback, symbol=self.btc, name="z")

    def on_bar(self, ctx):
        z = self.z.now
        if not np.isfinite(z):
            return
        held = not ctx.position(self.btc).is_flat
        if not held and abs(z) > self.entry_z:
            ctx.set_leverage(self.btc, self.leverage)
            ctx.set_leverage(self.eth, self.leverage)
            btc_qty = ctx.contracts_for(self.btc, notional=self.notional_usd)
            eth_qty = ctx.contracts_for(self.eth, notional=self.notional_usd)
            if z > 0:  # BTC rich versus ETH: short BTC, long ETH
                ctx.sell(self.btc, btc_qty, tag="pair")
                ctx.buy(self.eth, eth_qty, tag="pair")
            else:
                ctx.buy(self.btc, btc_qty, tag="pair")
                ctx.sell(self.eth, eth_qty, tag="pair")
        elif held and abs(z) < self.exit_z:
            ctx.close(self.btc, tag="exit")
            ctx.close(self.eth, tag="exit")
        ctx.record(z=z)
