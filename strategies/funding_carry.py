"""Funding carry: collect perpetual funding with a dated-future hedge in one pool.

Idea
----
A perpetual's funding rate pays shorts when it is positive (longs pay) and longs when it is
negative. When the trailing average rate, annualised, is above ``enter_apr`` the strategy shorts
the perp and buys the same coin amount of the longest-dated listed future of the same coin: the
pair is delta-neutral (perp coins + future coins = 0) and earns the funding, paying or earning
the future's basis as it converges. When funding is deeply negative (below ``-enter_apr``) it
does the reverse (long perp, short future) if ``allow_reverse``. It exits both legs when the
trailing rate flips through ``exit_apr`` (zero by default) against the position, and rolls the
future leg into the next one ``roll_days`` before expiry (or exits if none is listed).

Parameters
----------
perp
    The perpetual (``BTC/USDT:USDT``).
avg_hours
    Hours in the trailing average of the last funding rate (72 = nine 8-hour payments).
payments_per_year
    Funding payments per year used to annualise (8-hourly: 3 x 365 = 1095).
enter_apr, exit_apr
    Enter when ``|annualised rate| > enter_apr``; exit when it crosses ``exit_apr`` against the
    position (fractions: 0.3 = 30 % a year).
notional_usd
    USD notional of each leg at entry.
leverage
    Leverage setting of both legs.
roll_days
    Roll (or exit) the future leg when fewer days than this remain to its expiry; a future is
    only opened with at least twice this many days left.
allow_reverse
    Also trade negative funding (long perp, short future).

Risks
-----
Funding is paid on the perp's notional and can flip quickly; the future's basis moves against
the position between entry and expiry (mark-to-market losses before convergence); in a crash the
losing leg's maintenance margin grows while the winning leg's gain sits in the same pool (fine
in cross margin, dangerous in isolated margin); rolls and exits pay fees and slippage twice.
"""

from __future__ import annotations

import math
from decimal import Decimal

from backtester import Strategy


class FundingCarry(Strategy):
    """Short perp / long dated future when funding is rich (and the reverse), delta-neutral."""

    perp: str = "BTC/USDT:USDT"
    avg_hours: int = 72
    payments_per_year: float = 1095.0
    enter_apr: float = 0.3
    exit_apr: float = 0.0
    notional_usd: float = 50_000.0
    leverage: float = 5.0
    roll_days: float = 7.0
    allow_reverse: bool = True

    def on_start(self, ctx):
        self.rates: list[float] = []
        self.future: str | None = None
        self.side = 0  # -1: short perp / long future; +1: long perp / short future

    def _pick_future(self, ctx) -> str | None:
        base = self.perp + "-"
        best, best_exp = None, -1
        for sym in ctx.symbols:
            if not sym.startswith(base):
                continue
            inst = ctx.instrument(sym)
            if inst.expiry_ms is None or not math.isfinite(ctx.price(sym)):
                continue
            left = inst.expiry_ms - ctx.now
            if left >= 2 * self.roll_days * 86_400_000 and inst.expiry_ms > best_exp:
                best, best_exp = sym, inst.expiry_ms
        return best

    def _future_qty(self, ctx, perp_qty: Decimal, future: str) -> Decimal:
        # the same coin amount: perp contracts x perp contract size / future contract size
        coins = perp_qty * ctx.instrument(self.perp).contract_size
        lot = ctx.instrument(future).lot_size
        return (coins / ctx.instrument(future).contract_size // lot) * lot

    def _open(self, ctx, side: int) -> None:
        future = self._pick_future(ctx)
        if future is None:
            return
        qty = ctx.contracts_for(self.perp, notional=self.notional_usd)
        fqty = self._future_qty(ctx, qty, future)
        if qty <= 0 or fqty <= 0:
            return
        for sym in (self.perp, future):
            ctx.set_leverage(sym, self.leverage)
        perp_side, fut_side = (ctx.sell, ctx.buy) if side < 0 else (ctx.buy, ctx.sell)
        perp_side(self.perp, qty, tag="carry")
        fut_side(future, fqty, tag="carry")
        self.future, self.side = future, side

    def _exit(self, ctx, tag: str) -> None:
        ctx.close(self.perp, tag=tag)
        if self.future is not None:
            ctx.close(self.future, tag=tag)
        self.future, self.side = None, 0

    def on_liquidation(self, ctx, event):
        # one leg is gone: the rest is a naked position, not a carry trade any more
        self._exit(ctx, "liquidated_leg")

    def on_expiry(self, ctx, event):
        if event.symbol == self.future:  # should not happen (rolled before), but stay safe
            self._exit(ctx, "expired")

    def on_bar(self, ctx):
        rate = ctx.funding_rate(self.perp)
        if rate is None:
            return
        self.rates.append(rate)
        window = self.rates[-self.avg_hours:]
        apr = sum(window) / len(window) * self.payments_per_year
        perp_q = ctx.position(self.perp).qty
        fut_q = ctx.position(self.future).qty if self.future is not None else 0.0
        ctx.record(funding_apr=apr, perp_coins=perp_q * ctx.instrument(self.perp).cs,
                   future_coins=fut_q * (ctx.instrument(self.future).cs if self.future else 1.0),
                   carry_side=float(self.side))
        if len(window) < self.avg_hours:
            return
        if self.side == 0:
            if apr > self.enter_apr:
                self._open(ctx, -1)
            elif self.allow_reverse and apr < -self.enter_apr:
                self._open(ctx, +1)
            return
        # funding flipped against the position: collect no more, leave
        if (self.side < 0 and apr < self.exit_apr) or (self.side > 0 and apr > -self.exit_apr):
            self._exit(ctx, "exit")
            return
        inst = ctx.instrument(self.future)
        if inst.expiry_ms - ctx.now < self.roll_days * 86_400_000:
            nxt = self._pick_future(ctx)
            if nxt is None or nxt == self.future:
                self._exit(ctx, "expiry_exit")
                return
            ctx.close(self.future, tag="roll")
            ctx.set_leverage(nxt, self.leverage)
            fqty = self._future_qty(ctx, Decimal(str(abs(perp_q))), nxt)
            (ctx.buy if self.side < 0 else ctx.sell)(nxt, fqty, tag="roll")
            self.future = nxt
