"""Covered call on coin collateral: sell calls against coins held in the pool.

Idea
----
The account holds ``coins`` of the underlying as collateral (run with e.g.
``--collateral BTC=2``). Each expiry cycle it sells that many calls about ``wing`` above the
index and collects the premium. The coins back the calls' margin (at their haircut value) and
cover the payoff: if the price ends above the strike the call's loss is offset by the coins'
gain in value.

Parameters
----------
underlying
    The coin held as collateral.
coins
    Calls sold per cycle, in coins (normally the collateral held).
wing
    Strike about ``wing`` above the index (0.10 = 10 %).
min_days
    Minimum days to expiry when selling.

Risks
-----
Upside is capped at the strike; the collateral's value falls with the price (a correlated loss:
collateral and margin move together); a short call's margin grows as the price rises.
"""

from __future__ import annotations

from decimal import Decimal

from backtester import Strategy


class CoveredCall(Strategy):
    """Sell OTM calls on coins held as collateral, rolled at expiry."""

    underlying: str = "BTC"
    coins: float = 2.0
    wing: float = 0.10
    min_days: float = 10.0

    def on_start(self, ctx):
        self.call: str | None = None
        self.premium = 0.0

    def on_expiry(self, ctx, event):
        if event.symbol == self.call:
            self.call = None

    def on_fill(self, ctx, fill):
        if fill.tag == "call":
            self.premium += -float(fill.qty) * float(fill.price)

    def on_bar(self, ctx):
        if self.call is not None:
            return
        chain = ctx.chain(self.underlying)
        chain = chain[(chain["option_type"] == "call")
                      & (chain["expiry_ms"] - ctx.now >= self.min_days * 86_400_000)]
        if chain.empty:
            return
        first = chain[chain["expiry_ms"] == chain["expiry_ms"].min()]
        spot = float(first["underlying"].iloc[0])
        row = first.iloc[(first["strike"] - spot * (1 + self.wing)).abs().argmin()]
        if ctx.sell(row["symbol"], Decimal(str(self.coins)), tag="call").is_accepted:
            self.call = row["symbol"]
