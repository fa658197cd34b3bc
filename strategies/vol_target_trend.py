"""Volatility-targeted trend following on BTC and ETH perps, cut when correlation is high.

Idea
----
Each asset is held long or short by the sign of its slow momentum (log return over
``momentum_bars``). Its leverage (position notional / equity) is set so that its share of the
book runs at ``target_vol``:

    leverage_i = target_vol / realised_vol_i / n_assets        (capped at ``max_leverage``)

with ``realised_vol_i`` the annualised standard deviation of hourly log returns over
``vol_bars``. Two trend positions in assets that move together are one bet, not two: when the
rolling BTC-ETH return correlation over ``corr_bars`` is above ``corr_level`` every leverage is
multiplied by ``corr_cut``. So leverage falls when volatility rises and again when diversification
disappears — the situation of a correlated crash. Positions are re-sized every
``rebalance_bars`` bars (or at once when a signal flips or leverage falls by more than
``band``). ``ctx.record`` stores ``leverage`` (the gross leverage used), ``raw_leverage``
(before the correlation cut), per-asset ``lev_*`` and ``vol_*``, and ``corr``.

Parameters
----------
btc, eth
    The two perpetual symbols.
momentum_bars
    Bars in the momentum signal (336 = 14 days of hourly bars).
vol_bars, corr_bars
    Bars in the realised volatility and correlation windows.
target_vol
    Target annualised volatility of the whole book (0.4 = 40 %).
max_leverage
    Cap on each asset's leverage.
corr_level, corr_cut
    Above this correlation, multiply leverage by ``corr_cut`` (0.5 = halve).
rebalance_bars, band
    Re-size every this many bars, or earlier when the wanted leverage is lower than the held one
    by more than the fraction ``band``.
periods_per_year
    Bars per year used to annualise volatility (hourly: 8760).

Risks
-----
Trend signals whipsaw in ranges and pay fees on every flip; realised volatility lags a shock, so
the first bars of a crash are held at pre-crash leverage (gap risk); both legs share one pool and
in a correlated crash they lose together; funding is paid on both perps.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from backtester import Strategy


def _log_returns(close: np.ndarray) -> pd.Series:
    return pd.Series(np.log(close)).diff()


def _momentum(close: np.ndarray, bars: int) -> np.ndarray:
    return pd.Series(np.log(close)).diff(bars).to_numpy()


def _realised_vol(close: np.ndarray, bars: int, periods_per_year: float) -> np.ndarray:
    return (_log_returns(close).rolling(bars).std() * math.sqrt(periods_per_year)).to_numpy()


def _correlation(a: np.ndarray, b: np.ndarray, bars: int) -> np.ndarray:
    return _log_returns(a).rolling(bars).corr(_log_returns(b)).to_numpy()


class VolTargetTrend(Strategy):
    """BTC + ETH perp trend, leverage from a vol target, cut when correlation is high."""

    btc: str = "BTC/USDT:USDT"
    eth: str = "ETH/USDT:USDT"
    momentum_bars: int = 336
    vol_bars: int = 72
    corr_bars: int = 168
    target_vol: float = 0.6
    max_leverage: float = 3.0
    corr_level: float = 0.85
    corr_cut: float = 0.5
    rebalance_bars: int = 24
    band: float = 0.2
    periods_per_year: float = 8760.0

    def on_start(self, ctx):
        closes = {s: ctx.series(s, "close") for s in (self.btc, self.eth)}
        self.mom = {s: ctx.indicator(_momentum, c, self.momentum_bars, symbol=s, name="mom")
                    for s, c in closes.items()}
        self.vol = {s: ctx.indicator(_realised_vol, c, self.vol_bars, self.periods_per_year,
                                     symbol=s, name="vol") for s, c in closes.items()}
        self.corr = ctx.indicator(_correlation, closes[self.btc], closes[self.eth],
                                  self.corr_bars, symbol=self.btc, name="corr")
        self.held_lev = {self.btc: 0.0, self.eth: 0.0}
        self.held_sign = {self.btc: 0, self.eth: 0}
        self.bars = 0

    def on_bar(self, ctx):
        self.bars += 1
        corr = self.corr.now
        syms = (self.btc, self.eth)
        vols = {s: self.vol[s].now for s in syms}
        moms = {s: self.mom[s].now for s in syms}
        if not all(math.isfinite(v) and v > 0 for v in vols.values()) or not math.isfinite(corr) \
                or not all(math.isfinite(m) for m in moms.values()):
            return
        is_cut = corr > self.corr_level
        cut = self.corr_cut if is_cut else 1.0
        raw = {s: min(self.target_vol / vols[s] / len(syms), self.max_leverage) for s in syms}
        lev = {s: raw[s] * cut for s in syms}
        signs = {s: (1 if moms[s] > 0 else -1) for s in syms}
        equity = ctx.account.equity
        gross = sum(abs(ctx.position(s).notional) for s in syms)
        ctx.record(leverage=sum(lev.values()), raw_leverage=sum(raw.values()), corr=corr,
                   held_leverage=gross / equity if equity > 0 else float("nan"),
                   is_corr_cut=float(is_cut), lev_btc=lev[self.btc], lev_eth=lev[self.eth],
                   vol_btc=vols[self.btc], vol_eth=vols[self.eth])
        flip = any(signs[s] != self.held_sign[s] for s in syms)
        shrink = any(lev[s] < self.held_lev[s] * (1.0 - self.band) for s in syms)
        if not (flip or shrink or self.bars % self.rebalance_bars == 0):
            return
        if equity <= 0:
            return
        for s in syms:
            ctx.set_leverage(s, max(self.max_leverage * 2.0, 1.0))
            qty = ctx.contracts_for(s, notional=lev[s] * equity)
            ctx.target(s, qty if signs[s] > 0 else -qty, tag="trend")
            self.held_lev[s], self.held_sign[s] = lev[s], signs[s]
