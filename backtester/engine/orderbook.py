"""The order book: submission, validation, working orders, cancels, OCO and attached exits."""

from __future__ import annotations

import math
from decimal import Decimal

from backtester.config import FillMode
from backtester.context import OrderTicket, Phase
from backtester.engine.base import EngineParts
from backtester.errors import (
    ConfigError,
    PhaseError,
)
from backtester.execution import Match
from backtester.numeric import ZERO, dec
from backtester.orders import (
    CancelReason,
    Order,
    OrderCancelled,
    OrderRecord,
    OrderRejected,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
    validate_order,
)
from backtester.timeutil import ms_to_iso

__all__ = ["OrderBookMixin"]


class OrderBookMixin(EngineParts):
    """Submitting, checking, placing and cancelling orders (mixed into ``Engine``)."""

    def _attach_exits(self, parent: Order, qty: Decimal) -> None:
        side = Side.SELL if parent.side is Side.BUY else Side.BUY
        ids = []
        if parent.stop_loss is not None:
            ids.append(self._place(parent.symbol, side, qty, OrderType.STOP, None,
                                   parent.stop_loss, TimeInForce.GTC, True, False,
                                   parent.tag or "stop_loss", parent_id=parent.id))
        if parent.take_profit is not None:
            ids.append(self._place(parent.symbol, side, qty, OrderType.TAKE_PROFIT, None,
                                   parent.take_profit, TimeInForce.GTC, True, False,
                                   parent.tag or "take_profit", parent_id=parent.id))
        if len(ids) == 2:
            self.orders[ids[0]].oco_id = ids[1]
            self.orders[ids[1]].oco_id = ids[0]

    def _remove(self, order: Order, reason: CancelReason | None) -> None:
        if self.orders.pop(order.id, None) is not None:
            self.orders_version += 1
        record = self._order_rec.get(order.id)
        if record is not None:
            record.status = OrderStatus.FILLED if reason is None else OrderStatus.CANCELLED
            record.reason = reason
            record.closed_ms = self.now_ms
        lst = self.by_symbol.get(order.symbol)
        if lst is not None and order in lst:
            lst.remove(order)
        if reason is not None:
            ev = OrderCancelled(ts_ms=self.now_ms, order_id=order.id, symbol=order.symbol,
                                reason=reason)
            self.cancels.append(ev)

    def submit(self, symbol: str, side: Side, qty: Decimal | float | str, *,
               order_type: OrderType, price: float | Decimal | None,
               stop_price: float | Decimal | None, tif: TimeInForce | None, reduce_only: bool,
               post_only: bool, tag: str, stop_loss: float | Decimal | None,
               take_profit: float | Decimal | None) -> OrderTicket:
        """Validate and place an order; rejections are recorded events, not exceptions."""
        if self.phase is not Phase.BAR:
            msg = f"orders cannot be placed in on_{self.phase.value}; place them from on_bar"
            raise PhaseError(msg)
        f = self.feed_of(symbol)
        if type(qty) is Decimal and price is None and stop_price is None and stop_loss is None \
                and take_profit is None and not _is_non_finite(qty):
            q = qty  # a finite Decimal quantity and no prices (what _refuse_non_finite and
            # _as_decimal let through as it is)
        else:
            refused = self._refuse_non_finite(symbol, side, order_type, tag, qty=qty,
                                              limit=price, stop=stop_price,
                                              stop_loss=stop_loss, take_profit=take_profit)
            if refused is not None:
                return refused
            q = _as_decimal("qty", qty)
        if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and price is None:
            msg = f"{order_type} order on {symbol} needs a limit price"
            raise ConfigError(msg)
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT) \
                and stop_price is None:
            msg = f"{order_type} order on {symbol} needs a trigger price (stop=)"
            raise ConfigError(msg)
        if tif is None:
            tif = TimeInForce.IOC if order_type is OrderType.MARKET else TimeInForce.GTC
        oid = self._place(symbol, side, q, order_type,
                          None if price is None else _as_decimal("limit", price),
                          None if stop_price is None else _as_decimal("stop", stop_price),
                          tif, reduce_only, post_only, tag,
                          stop_loss=None if stop_loss is None else _as_decimal("stop_loss",
                                                                               stop_loss),
                          take_profit=None if take_profit is None
                          else _as_decimal("take_profit", take_profit), check=True)
        order = self.orders.get(oid)
        rejection = self.rejections[-1] if order is None and self.rejections and \
            self.rejections[-1].order_id == oid else None
        if order is not None and self.config.fill is FillMode.CLOSE and \
                order.order_type is OrderType.MARKET and f.idx >= 0:
            c = f.c[f.idx]
            self._fill(order, f, Match(t=3.0, price=c, is_maker=False, is_gap=False))
        return OrderTicket(order_id=oid, rejection=rejection)

    def _refuse_non_finite(self, symbol: str, side: Side, order_type: OrderType, tag: str,
                           **numbers: Decimal | float | str | int | None) -> OrderTicket | None:
        # a NaN or infinite quantity or price (a strategy's division by zero, an empty
        # window's mean) is refused like any other order: a rejection event, not an abort
        for name, value in numbers.items():
            if value is None or not _is_non_finite(value):
                continue
            oid = self._next_id
            self._next_id += 1
            reason = RejectReason.QTY_NOT_FINITE if name == "qty" else \
                RejectReason.PRICE_NOT_FINITE
            rej = OrderRejected(ts_ms=self.now_ms, order_id=oid, symbol=symbol, reason=reason,
                                message=f"{side} {order_type} order on {symbol}: {name} "
                                        f"{value!r} is not a finite number (or beyond the "
                                        f"float range margin is computed in)", tag=tag)
            self.rejections.append(rej)
            return OrderTicket(order_id=oid, rejection=rej)
        return None

    def _place(self, symbol: str, side: Side, qty: Decimal, order_type: OrderType,
               price: Decimal | None, stop_price: Decimal | None, tif: TimeInForce,
               reduce_only: bool, post_only: bool, tag: str, *, parent_id: int | None = None,
               stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
               check: bool = False) -> int:
        oid = self._next_id
        self._next_id += 1
        order = Order(id=oid, symbol=symbol, side=side, qty=qty, order_type=order_type,
                      created_ms=self.now_ms, price=price, stop_price=stop_price, tif=tif,
                      is_reduce_only=reduce_only, is_post_only=post_only, tag=tag,
                      stop_loss=stop_loss, take_profit=take_profit, parent_id=parent_id)
        record = OrderRecord(order=order)
        self.order_log.append(record)
        self._order_rec[oid] = record
        if check:
            rej = self._check(order)
            if rej is not None:
                self.rejections.append(rej)
                record.status = OrderStatus.REJECTED
                record.reason = rej.reason
                record.closed_ms = self.now_ms
                return oid
        self.orders[oid] = order
        self.orders_version += 1
        self.by_symbol.setdefault(symbol, []).append(order)
        return oid

    def _check(self, order: Order) -> OrderRejected | None:
        f = self.feed.symbols[order.symbol]
        inst = f.instrument
        last = f.c[f.idx] if f.idx >= 0 else float("nan")

        def reject(reason: RejectReason, message: str) -> OrderRejected:
            return OrderRejected(ts_ms=self.now_ms, order_id=order.id, symbol=order.symbol,
                                 reason=reason, message=message, tag=order.tag)

        if f.idx < 0:
            return reject(RejectReason.NO_MARKET_DATA,
                          f"no bar of {order.symbol} has closed yet at "
                          f"{ms_to_iso(self.now_ms)}")
        if inst.is_expired(self.now_ms):
            return reject(RejectReason.INSTRUMENT_EXPIRED, f"{order.symbol} has expired")
        if self.stopped_reason is not None:
            return reject(RejectReason.TRADING_HALTED, f"trading stopped: {self.stopped_reason}")
        rej = validate_order(order, inst, ref_price=last)
        if rej is not None:
            return rej
        if order.is_post_only and order.price is not None:
            takes = float(order.price) >= last if order.side is Side.BUY else \
                float(order.price) <= last
            if takes:
                return reject(RejectReason.POST_ONLY_WOULD_TAKE,
                              f"post-only {order.side} limit {order.price} would take at last "
                              f"price {last} on {order.symbol}")
        pos = self.account.positions.get(order.symbol)
        have = pos.qty if pos is not None else ZERO
        if order.is_reduce_only and (have == 0 or (have > 0) == (order.side is Side.BUY)):
            return reject(RejectReason.REDUCE_ONLY_WOULD_INCREASE,
                          f"reduce-only {order.side} of {order.qty} {order.symbol} would not "
                          f"reduce the position {have}")
        if order.is_reduce_only:
            return None  # reduce-only orders are always admitted
        if not self.config.check_initial_margin:
            return None  # survival re-runs keep the run's trades whatever the collateral
        return self.margin.admit(order, f)

    def cancel(self, order_id: int | None, *, symbol: str | None,
               reason: CancelReason | str) -> int:
        """Cancel one order, all orders of a symbol, or all orders; ``reason`` is a
        :class:`~backtester.orders.CancelReason` (or its value)."""
        reason = CancelReason(reason)
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None:
                return 0
            self._remove(order, reason)
            return 1
        victims = [o for o in self.orders.values() if symbol is None or o.symbol == symbol]
        for o in victims:
            self._remove(o, reason)
        return len(victims)

    def set_leverage(self, symbol: str, leverage: float) -> None:
        """Set the leverage of ``symbol`` after checking it against the profile's brackets."""
        f = self.feed_of(symbol)
        if not leverage > 0:
            msg = f"leverage for {symbol} must be positive, got {leverage}"
            raise ConfigError(msg)
        self.profile.check_leverage(symbol, float(leverage),
                                    instrument_max=f.instrument.max_leverage)
        self.account.set_leverage(symbol, float(leverage))


def _is_non_finite(value: Decimal | float | str | int) -> bool:
    # NaN or infinite — or a Decimal beyond float64's range (about 1.8e308), in which the
    # margin arithmetic values every order: it would be infinite there
    if isinstance(value, Decimal):
        return not value.is_finite() or math.isinf(float(value))
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except ArithmeticError:
            return False  # not a number at all: _as_decimal names it
        return not d.is_finite() or math.isinf(float(d))
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _as_decimal(name: str, value: Decimal | float | str | int) -> Decimal:
    try:
        d = dec(value)
    except (ValueError, ArithmeticError):
        msg = f"{name} must be a number, got {value!r}"
        raise ConfigError(msg) from None
    if not d.is_finite():
        msg = f"{name} must be finite, got {value!r}"
        raise ConfigError(msg)
    return d

