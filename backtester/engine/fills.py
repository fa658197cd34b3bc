"""Execution: working orders fill along the bar's path, fees, the fill record; liquidation fills."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from backtester.data.feed import SymbolFeed
from backtester.engine.base import EngineParts
from backtester.execution import BarPath, Match, match_order
from backtester.numeric import dec, to_price
from backtester.orders import (
    CancelReason,
    Fill,
    Order,
    OrderRecord,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from backtester.timeutil import ms_to_iso

__all__ = ["FillsMixin"]


_LIQUIDATION = "liquidation"  # the tag and liquidity of a liquidation's order and fill


class FillsMixin(EngineParts):
    """Matching working orders on a bar and recording fills (mixed into ``Engine``)."""

    def _execute(self, f: SymbolFeed) -> None:
        i = f.idx
        bar_open = f.ts[i]
        path = BarPath(f.o[i], f.h[i], f.l[i], f.c[i])
        matches: list[tuple[float, int, Order, Match]] = []
        expired_ioc: list[Order] = []
        for order in list(self.by_symbol.get(f.symbol, ())):
            if order.created_ms > bar_open:
                continue  # submitted after this bar opened: eligible from the next bar
            m = match_order(order, path)
            if order.tif is not TimeInForce.GTC and order.order_type is not OrderType.MARKET \
                    and (m is None or m.t > 0.0):
                expired_ioc.append(order)
                continue
            if m is not None:
                matches.append((m.t, order.id, order, m))
        matches.sort(key=lambda x: (x[0], x[1]))
        ambiguous = self._resolve_oco(matches)
        # funding stamped before this bar's open (a gap in the data) sees the old position
        self._funding(f, before_ms=bar_open)
        k = 0
        while k < len(matches) and matches[k][0] == 0.0:
            _, _, order, m = matches[k]
            if order.id in self.orders:
                self._fill(order, f, m, is_ambiguous=order.id in ambiguous)
            k += 1
        # stamps at the open see the fills at the open; stamps inside the bar only those
        self._funding(f, before_ms=f.ts[i] + f.tf_ms)
        for _, _, order, m in matches[k:]:
            if order.id in self.orders:
                self._fill(order, f, m, is_ambiguous=order.id in ambiguous)
        for order in expired_ioc:
            if order.id in self.orders:
                self._remove(order, CancelReason.FOK_NOT_FILLED if order.tif is TimeInForce.FOK
                             else CancelReason.IOC_NOT_FILLED)

    def _resolve_oco(self, matches: list[tuple[float, int, Order, Match]]) -> set[int]:
        # both legs of an OCO pair touched in one bar: the bar cannot say which came first, so
        # the outcome worse for the strategy (the stop) is taken and a warning recorded.
        ids = {m[1] for m in matches}
        ambiguous: set[int] = set()
        drop: set[int] = set()
        for _, oid, order, _ in matches:
            sib = order.oco_id
            if sib is not None and sib in ids and oid not in drop:
                stop_id = oid if order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) \
                    else sib
                other = sib if stop_id == oid else oid
                ambiguous.add(stop_id)
                drop.add(other)
                msg = (f"ambiguous bar at {ms_to_iso(self.now_ms)}: stop-loss and take-profit "
                       f"of {order.symbol} both touched; the stop-loss was taken")
                self.warnings.append(msg)
        matches[:] = [m for m in matches if m[1] not in drop]
        return ambiguous

    def _fill(self, order: Order, f: SymbolFeed, m: Match, *, is_ambiguous: bool = False) -> None:
        inst = f.instrument
        pos = self.account.position(inst)
        qty = order.qty
        if order.is_reduce_only:
            if pos.qty == 0 or (pos.qty > 0) == (order.side is Side.BUY):
                self._remove(order, CancelReason.REDUCE_ONLY_NOTHING_TO_REDUCE)
                return
            qty = min(qty, abs(pos.qty))
        price = m.price
        if not m.is_maker:
            price = self.slippage.apply(order.side, price, float(qty), f.v[f.idx])
        fill_px = to_price(price, inst.tick_size)
        if fill_px <= 0:
            fill_px = inst.tick_size
        signed = qty if order.side is Side.BUY else -qty
        fee = self._fee(inst, signed, fill_px, is_maker=m.is_maker, f=f)
        old_qty = pos.qty
        realized = self.account.apply_fill(self.now_ms, inst, signed, fill_px, fee,
                                           ref=f"order {order.id}")
        allocation = self.margin.isolated_allocation(pos, old_qty, fill_px)
        if allocation is not None:
            self.book_decision(allocation)
        # the fill happened in its bar: at the open, or on the path inside the bar (its time
        # there unknown: the bar's open, with the path position), or at the close
        bar_open = f.ts[f.idx]
        fill = Fill(ts_ms=bar_open + f.tf_ms if m.t >= 3.0 else bar_open, order_id=order.id,
                    symbol=inst.symbol, qty=signed, price=fill_px, fee=fee,
                    fee_asset=inst.settle, liquidity="maker" if m.is_maker else "taker",
                    realized_pnl=realized, tag=order.tag, is_ambiguous=is_ambiguous,
                    step_ms=self.now_ms, path_time=m.t)
        self.fills.append(fill)
        self.pending.append(("fill", fill))
        self._remove(order, None)
        if order.oco_id is not None and order.oco_id in self.orders:
            self._remove(self.orders[order.oco_id], CancelReason.OCO)
        if order.stop_loss is not None or order.take_profit is not None:
            self._attach_exits(order, qty)

    def _fee(self, inst: Any, qty: Decimal, price: Decimal, *, is_maker: bool,
             f: SymbolFeed) -> Decimal:
        if inst.is_option:
            und = dec(f.ic[f.idx])
            return inst.fee_exact(qty, price, is_maker=is_maker, underlying_price=und,
                                  option_fee_cap=self.profile.option_fee_cap)
        return inst.fee_exact(qty, price, is_maker=is_maker)

    def record_liquidation_fill(self, ts_ms: int, symbol: str, qty: Decimal, price: Decimal,
                                fee: Decimal, realized_pnl: Decimal) -> Fill:
        """Record a liquidation's fill (already booked to the account by the ledger) as
        the fill of an order of its own: a reduce-only market order tagged ``liquidation`` in
        the order log, filled in full at ``ts_ms`` (``qty`` signed contracts, ``price`` the
        liquidation or bankruptcy price, ``fee`` the liquidation fee in the settle asset)."""
        inst = self.feed.symbols[symbol].instrument
        oid = self._next_id
        self._next_id += 1
        order = Order(id=oid, symbol=symbol, side=Side.BUY if qty > 0 else Side.SELL,
                      qty=abs(qty), order_type=OrderType.MARKET, created_ms=ts_ms,
                      tif=TimeInForce.IOC, is_reduce_only=True, tag=_LIQUIDATION)
        record = OrderRecord(order=order, status=OrderStatus.FILLED, closed_ms=ts_ms)
        self.order_log.append(record)
        self._order_rec[oid] = record
        fill = Fill(ts_ms=ts_ms, order_id=oid, symbol=symbol, qty=qty, price=price, fee=fee,
                    fee_asset=inst.settle, liquidity=_LIQUIDATION, realized_pnl=realized_pnl,
                    tag=_LIQUIDATION)
        self.fills.append(fill)
        return fill
