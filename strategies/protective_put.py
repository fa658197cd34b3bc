"""Protective put: a long perp insured by a long put, rolled each expiry.

Idea
----
Hold ``notional_usd`` of the perp long and buy puts for the same number of coins about ``wing``
below the index on the nearest expiry at least ``min_days`` away. In a crash the put's value
rises as the perp loses, in the same pool, so the account's margin balance falls less than the
perp's loss alone — the put pays for the margin the perp needs.

Parameters
----------
perp, underlying
    The perpetual and its coin.
notional_usd
    Perp position size in USD.
wing
    Put strike about ``wing`` below the index (0.10 = 10 %).
min_days
    Minimum days to expiry when buying the put.

Risks
-----
The premium is a steady cost (theta); between expiries the perp is insured only to the strike;
funding on the perp is paid as usual.
"""

from __future__ import annotations

from backtester import Strategy


class ProtectivePut(Strategy):
    """Long perp + long OTM put, rolled at expiry."""

    perp: str = "BTC/USDT:USDT"
    underlying: str = "BTC"
    notional_usd: float = 50_000.0
    wing: float = 0.10
    min_days: float = 10.0

    def on_start(self, ctx):
        self.put: str | None = None

    def on_expiry(self, ctx, event):
        if event.symbol == self.put:
            self.put = None

    def on_bar(self, ctx):
        if ctx.position(self.perp).is_flat:
            ctx.buy(self.perp, ctx.contracts_for(self.perp, notional=self.notional_usd),
                    tag="perp")
        if self.put is None:
            chain = ctx.chain(self.underlying)
            chain = chain[(chain["option_type"] == "put")
                          & (chain["expiry_ms"] - ctx.now >= self.min_days * 86_400_000)]
            if chain.empty:
                return
            first = chain[chain["expiry_ms"] == chain["expiry_ms"].min()]
            spot = float(first["underlying"].iloc[0])
            row = first.iloc[(first["strike"] - spot * (1 - self.wing)).abs().argmin()]
            qty = ctx.contracts_for(row["symbol"], notional=self.notional_usd)
            if qty > 0 and ctx.buy(row["symbol"], qty, tag="put").is_accepted:
                self.put = row["symbol"]
