"""Calendar basis: sell a rich quarterly future against the perp and hold to convergence.

Idea
----
A dated future trades at a premium (contango) or discount to the perpetual; at expiry it settles
at the index, so the basis converges to zero. When the annualised basis

    basis_apr = (future / perp - 1) x 365 / days_to_expiry

is above ``enter_apr`` the strategy shorts the future and buys the same coin amount of the perp
(delta-neutral) and holds to expiry: the future is settled by the exchange at the delivery price
(``on_expiry``), then the perp leg is closed. The locked-in gain is the entry basis
``qty x (future - perp)``, less the perp's funding over the holding period and fees. With
``allow_reverse`` a discount below ``-enter_apr`` is traded the other way. After an expiry it
may enter the next quarterly future.

Parameters
----------
perp
    The perpetual leg (``BTC/USDT:USDT``); futures are the symbols ``perp + "-YYMMDD"``.
enter_apr
    Enter when the annualised basis exceeds this fraction (0.05 = 5 % a year).
min_days, max_days
    Only futures with this many days to expiry (too short: little basis; too long: long
    exposure to basis swings).
notional_usd
    USD notional of each leg at entry.
leverage
    Leverage setting of both legs.
allow_reverse
    Also trade a discount (long future, short perp).

Risks
-----
The basis can widen before it converges (mark-to-market loss, margin on both legs); the long
perp pays funding while held, which can exceed the basis captured; the delivery price is an index
average, not the perp's last price; in isolated margin a sharp rally can liquidate the short
future while the long perp's gain sits in another bucket.
"""

from __future__ import annotations

import math

from backtester import Strategy

_DAY_MS = 86_400_000


class CalendarBasis(Strategy):
    """Short the quarterly future / long the perp when the basis is rich; hold to expiry."""

    perp: str = "BTC/USDT:USDT"
    enter_apr: float = 0.05
    min_days: float = 10.0
    max_days: float = 100.0
    notional_usd: float = 50_000.0
    leverage: float = 5.0
    allow_reverse: bool = True

    def on_start(self, ctx):
        self.future: str | None = None
        self.side = 0  # -1: short future / long perp; +1: long future / short perp
        self.settled: list[str] = []

    def on_expiry(self, ctx, event):
        if event.symbol == self.future:
            # the exchange settled the future at the delivery price; close the perp leg too
            ctx.close(self.perp, tag="converged")
            self.settled.append(event.symbol)
            self.future, self.side = None, 0

    def on_liquidation(self, ctx, event):
        # one leg is gone: close the other rather than hold a naked position
        ctx.close(self.perp, tag="liquidated_leg")
        if self.future is not None:
            ctx.close(self.future, tag="liquidated_leg")
            self.settled.append(self.future)
        self.future, self.side = None, 0

    def _candidate(self, ctx) -> tuple[str, float] | None:
        base = self.perp + "-"
        perp_px = ctx.price(self.perp)
        best = None
        for sym in ctx.symbols:
            if not sym.startswith(base) or sym in self.settled:
                continue
            inst = ctx.instrument(sym)
            px = ctx.price(sym)
            if inst.expiry_ms is None or not math.isfinite(px):
                continue
            days = (inst.expiry_ms - ctx.now) / _DAY_MS
            if not self.min_days <= days <= self.max_days:
                continue
            apr = (px / perp_px - 1.0) * 365.0 / days
            if best is None or abs(apr) > abs(best[1]):
                best = (sym, apr)
        return best

    def on_bar(self, ctx):
        if self.future is not None:
            fut = ctx.position(self.future).qty
            ctx.record(perp_coins=ctx.position(self.perp).qty * ctx.instrument(self.perp).cs,
                       future_coins=fut * ctx.instrument(self.future).cs)
            return
        if not ctx.position(self.perp).is_flat:
            return  # the perp leg's close after an expiry has not filled yet
        cand = self._candidate(ctx)
        if cand is None:
            return
        sym, apr = cand
        ctx.record(basis_apr=apr)
        if apr > self.enter_apr:
            side = -1
        elif self.allow_reverse and apr < -self.enter_apr:
            side = +1
        else:
            return
        qty = ctx.contracts_for(self.perp, notional=self.notional_usd)
        finst = ctx.instrument(sym)
        coins = qty * ctx.instrument(self.perp).contract_size
        fqty = coins / finst.contract_size // finst.lot_size * finst.lot_size
        if qty <= 0 or fqty <= 0:
            return
        for s in (self.perp, sym):
            ctx.set_leverage(s, self.leverage)
        if side < 0:
            ctx.sell(sym, fqty, tag="basis")
            ctx.buy(self.perp, qty, tag="basis")
        else:
            ctx.buy(sym, fqty, tag="basis")
            ctx.sell(self.perp, qty, tag="basis")
        self.future, self.side = sym, side
        ctx.record(entry_basis_apr=apr)
