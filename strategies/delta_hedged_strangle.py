"""Delta-hedged short strangle: options and a perp hedge in one collateral pool.

Idea
----
Sell an out-of-the-money call and put on the nearest expiry at least ``min_days`` away, collect
the premium (theta), and keep the book delta-neutral with the perpetual: whenever the account's
net delta (options N(d1) x size plus the perp) leaves ``± hedge_band`` coins, trade the perp
back to zero delta. The hedge's PnL and the options' PnL meet in one pool, so in cross or
portfolio margin the hedge offsets the options' losses on a move.

Parameters
----------
underlying, hedge
    The coin and the perpetual that hedges it.
wing
    Strikes about ``wing`` out of the money (0.10 = 10 % away from the index).
min_days
    Minimum days to expiry when opening.
size
    Contracts of each option leg.
hedge_band
    Re-hedge when ``|delta|`` exceeds this many coins.

Risks
-----
Short gamma: a large move between re-hedges loses more than the premium; a volatility spike
raises the short options' marks and their margin at the same time; re-hedging costs fees.
"""

from __future__ import annotations

from decimal import Decimal

from backtester import Strategy


class DeltaHedgedStrangle(Strategy):
    """Short OTM call + put, perp delta hedge, rolled at expiry."""

    underlying: str = "BTC"
    hedge: str = "BTC/USDT:USDT"
    wing: float = 0.10
    min_days: float = 10.0
    size: float = 1.0
    hedge_band: float = 0.1

    def on_start(self, ctx):
        self.legs: list[str] = []
        self.deltas: list[float] = []

    def on_expiry(self, ctx, event):
        if event.symbol in self.legs:
            self.legs.remove(event.symbol)

    def _open(self, ctx) -> None:
        chain = ctx.chain(self.underlying)
        if chain.empty:
            return
        chain = chain[chain["expiry_ms"] - ctx.now >= self.min_days * 86_400_000]
        if chain.empty:
            return
        first = chain[chain["expiry_ms"] == chain["expiry_ms"].min()]
        spot = float(first["underlying"].iloc[0])
        calls = first[first["option_type"] == "call"]
        puts = first[first["option_type"] == "put"]
        if calls.empty or puts.empty:
            return
        call = calls.iloc[(calls["strike"] - spot * (1 + self.wing)).abs().argmin()]
        put = puts.iloc[(puts["strike"] - spot * (1 - self.wing)).abs().argmin()]
        qty = Decimal(str(self.size))
        for sym in (call["symbol"], put["symbol"]):
            if ctx.sell(sym, qty, tag="strangle").is_accepted:
                self.legs.append(sym)

    def on_bar(self, ctx):
        if not self.legs:
            if not ctx.position(self.hedge).is_flat:
                ctx.close(self.hedge, tag="unhedge")
            self._open(ctx)
            return
        delta = ctx.account.greeks.get(f"{self.underlying}.delta", 0.0)
        self.deltas.append(delta)
        ctx.record(delta=delta)
        if abs(delta) > self.hedge_band:
            qty = ctx.contracts_for(self.hedge, notional=abs(delta) * ctx.price(self.hedge))
            if qty > 0:
                (ctx.sell if delta > 0 else ctx.buy)(self.hedge, qty, tag="hedge")
