"""Settlement: funding (at its stamps or accrued continuously), daily sessions, expiry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from backtester.accounting import EntryKind
from backtester.config import FundingMode
from backtester.data.feed import SymbolFeed
from backtester.engine.base import EngineParts
from backtester.errors import (
    DataError,
)
from backtester.events import FundingPaid, InstrumentExpired
from backtester.hints import option
from backtester.numeric import ZERO, dec, to_money
from backtester.orders import (
    CancelReason,
)
from backtester.timeutil import ms_to_iso

__all__ = ["SettlementMixin"]


class SettlementMixin(EngineParts):
    """Funding, daily settlement and expiry (mixed into ``Engine``)."""

    def _funding(self, f: SymbolFeed, *, before_ms: int) -> None:
        stamps = f.funding_ts
        j = f.next_funding
        n = len(stamps)
        while j < n and stamps[j] < before_ms:
            self._pay_funding(f, stamps[j], f.funding_rate[j])
            j += 1
        f.next_funding = j

    def _special_funding(self, f: SymbolFeed) -> None:
        pos = self.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0:
            return
        if not f.funding_ts:
            self._check_funding_coverage(f)
            return
        # continuous accrual (Deribit): the 8-hour rate in force at the bar's open, pro rata
        # for the bar's length, on the position held through the bar, at the bar's mark close
        j = f.next_funding - 1
        if j < 0 or f.funding_rate[j] != f.funding_rate[j]:  # no rate in force: uncovered
            self._uncovered_funding(f, f.ts[f.idx])  # this bar's accrual
            return
        i = f.idx
        mark = f.mc[i]
        rate = f.funding_rate[j] * f.tf_ms / (8 * 3_600_000)
        self._book_funding(f, pos, self.now_ms, rate, mark, "mark" if not f.mark_missing[i]
                           else "trade")

    def _check_funding_coverage(self, f: SymbolFeed) -> None:
        pos = self.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0 or f.symbol in self._funding_checked:
            return
        if not f.funding_ts:
            if self.config.funding is FundingMode.HISTORY_OR_ZERO:
                self.funding_uncovered.setdefault(f.symbol, []).append(self.now_ms)
                self._funding_checked.add(f.symbol)
                return
            msg = (f"no funding history for {f.symbol}, which is held at "
                   f"{ms_to_iso(self.now_ms)}: fetch its funding, or run with "
                   f"{option('funding', 'history_or_zero')} to charge zero where history is "
                   f"missing ({option('funding', 'zero')}: no funding at all)")
            raise DataError(msg)
        self._funding_checked.add(f.symbol)

    def _uncovered_funding(self, f: SymbolFeed, stamp: int) -> None:
        # a funding stamp outside the symbol's history (feed._set_funding) while it is held:
        # an error naming the uncovered span, or zero when the run opted in (then warned)
        pos = self.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0:
            return
        if self.config.funding is FundingMode.HISTORY_OR_ZERO:
            self.funding_uncovered.setdefault(f.symbol, []).append(stamp)
            return
        first, last = f.funding_covered or (stamp, stamp)
        if stamp < first:
            where = f"before its funding history starts at {ms_to_iso(first)}"
            span = f"from {ms_to_iso(f.ts[0])} to {ms_to_iso(first)}"
        else:
            where = f"after its funding history ends at {ms_to_iso(last)}"
            span = f"from {ms_to_iso(last)} to {ms_to_iso(f.ts[-1] + f.tf_ms)}"
        msg = (f"{f.symbol} is held at the funding time {ms_to_iso(stamp)}, {where}: no "
               f"funding rates {span}; fetch funding for that span, or run with "
               f"{option('funding', 'history_or_zero')} to charge zero there")
        raise DataError(msg)

    def _pay_funding(self, f: SymbolFeed, stamp: int, rate: float) -> None:
        pos = self.account.positions.get(f.symbol)
        if self.config.funding is FundingMode.ZERO or pos is None or pos.qty == 0 \
                or self.profile.funding_style == "continuous":
            return
        if rate != rate:  # a stamp outside the history (NaN rate)
            self._uncovered_funding(f, stamp)
            return
        mark, source = self._funding_mark(f, stamp)
        self._book_funding(f, pos, stamp, rate, mark, source)

    def _book_funding(self, f: SymbolFeed, pos: Any, stamp: int, rate: float, mark: float,
                      source: str) -> None:
        inst = f.instrument
        # payment = size x contract size x mark x rate (inverse: face / mark x rate, in coin);
        # a positive rate makes longs pay.
        if inst.is_linear:
            amount = to_money(-pos.qty * inst.contract_size * dec(mark) * dec(rate))
        else:
            amount = to_money(-pos.qty * inst.contract_size / dec(mark) * dec(rate))
        if amount != 0:
            self.account.book(stamp, EntryKind.FUNDING, inst.settle, amount, symbol=f.symbol,
                              ref=f"rate {rate}")
        pos.funding -= amount
        ev = FundingPaid(ts_ms=stamp, symbol=f.symbol, rate=rate, mark=mark, qty=pos.qty,
                         amount=amount, asset=inst.settle, mark_source=source)
        self.events.append(ev)
        self.pending.append(("funding", ev))

    @staticmethod
    def _funding_mark(f: SymbolFeed, stamp: int) -> tuple[float, str]:
        # the open of the mark candle opening at T, else the last mark close before T (mark
        # candles of another timeframe than the trade bars: read as given)
        raw = f.mark_at_stamp(stamp)
        if raw is not None:
            return raw, "mark"
        i = f.idx
        while i >= 0 and f.ts[i] > stamp:
            i -= 1
        if i >= 0 and f.ts[i] == stamp:
            return f.mo[i], "trade" if f.mark_missing[i] else "mark"
        j = i if i >= 0 and f.ts[i] + f.tf_ms <= stamp else i - 1
        if j < 0:
            j = 0
        return f.mc[j], "trade" if f.mark_missing[j] else "mark"

    def _daily_settlement(self, t: int) -> None:
        # Deribit-style session settlement at hh:00 UTC: each future's unrealized PnL at the
        # mark is realized into the session (its entry price becomes the settlement mark), then
        # the session's PnL and funding move into the wallet. Intraday they count in equity only.
        day = 86_400_000
        stamp = self._next_settlement
        while self._next_settlement <= t:
            self._next_settlement += day
        acct = self.account
        for sym, pos in sorted(acct.positions.items()):
            inst = pos.instrument
            if pos.qty == 0 or inst.is_option:
                continue
            f = self.feed.symbols[sym]
            mark = dec(f.mc[f.idx])
            pnl = inst.pnl_exact(pos.qty, pos.entry_price, mark)
            if pnl != 0:
                acct.book(stamp, EntryKind.TRADE_PNL, inst.settle, pnl, symbol=sym,
                          ref="daily settlement")
                pos.realized_pnl += pnl
            pos.entry_price = mark
            pos.entry_f = float(mark)
            acct.version += 1  # the position changed outside Account's methods
        acct.settle_session(stamp)

    def _expire(self, t: int) -> None:
        while self._expiries and self._expiries[0][0] <= t:
            expiry_ms, sym = self._expiries.pop(0)
            self._settle_expiry(self.feed.symbols[sym], expiry_ms)

    def _settle_expiry(self, f: SymbolFeed, expiry_ms: int) -> None:
        """Cash-settle an expiring future or option at the delivery price and cancel its orders."""
        self.cancel(None, symbol=f.symbol, reason=CancelReason.EXPIRED)
        price, source = self._delivery_price(f, expiry_ms)
        pos = self.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0:
            return
        inst = f.instrument
        qty = pos.qty
        s = dec(price)
        if inst.is_option:
            payoff = to_money(qty * inst.contract_size * dec(inst.option_payoff(price)))
            fee_base = abs(qty) * inst.contract_size * (s if inst.is_linear else Decimal(1))
            fee = to_money(min(self.profile.delivery_fee_rate * fee_base,
                               self.profile.option_fee_cap * abs(payoff)))
            pnl = payoff
            if payoff != 0:
                self.account.book(expiry_ms, EntryKind.SETTLEMENT, inst.settle, payoff,
                               symbol=f.symbol, ref="option expiry")
            self.account.close_settled(pos)
        else:
            fee = to_money(inst.notional_exact(qty, s) * self.profile.delivery_fee_rate)
            pnl = self.account.apply_fill(expiry_ms, inst, -qty, s, ZERO, ref="expiry")
            # apply_fill booked the PnL as trade PnL; settlement is labelled by the event
        if fee != 0:
            self.account.book(expiry_ms, EntryKind.DELIVERY_FEE, inst.settle, -fee,
                           symbol=f.symbol, ref="delivery fee")
            pos.fees += fee
        ev = InstrumentExpired(ts_ms=expiry_ms, symbol=f.symbol, qty=qty, settlement_price=price,
                               pnl=pnl, fee=fee, asset=inst.settle, price_source=source)
        self.emit(ev, "expiry")

    def _delivery_price(self, f: SymbolFeed, expiry_ms: int) -> tuple[float, str]:
        # index TWAP over the profile's window before expiry, from the index bars that overlap
        # it (weighted by overlap, each bar at its close); else the last index, else the mark
        g = self.feed.index_feeds.get(f.instrument.base, f)
        start = expiry_ms - self.profile.delivery_window_ms
        num = den = 0.0
        for i in range(max(g.idx, 0), -1, -1):
            a, b = g.ts[i], g.ts[i] + g.tf_ms
            if b <= start:
                break
            overlap = min(b, expiry_ms) - max(a, start)
            if overlap > 0:
                num += g.ic[i] * overlap
                den += overlap
        if den > 0 and (g.has_index or g.has_mark):
            return num / den, "index_twap" if g.has_index else "mark_twap"
        if g.idx >= 0:
            return g.ic[g.idx], "index" if g.has_index else "trade"
        return f.mc[max(f.idx, 0)], "mark"
