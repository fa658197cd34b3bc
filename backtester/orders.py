"""Orders, their validation against the instrument, and order events.

Order types: market, limit, stop-market, stop-limit, take-profit (market when touched);
flags reduce-only and post-only; time in force GTC / IOC / FOK; attached stop-loss and
take-profit (one-cancels-other children placed when the parent fills).

Validation failures that are market rules (lot, tick, minimums, post-only, reduce-only, margin)
are :class:`OrderRejected` *events* with a reason code, never exceptions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from backtester.instruments import Instrument

__all__ = [
    "ORDER_FIELDS",
    "CancelReason",
    "Fill",
    "OpenOrder",
    "Order",
    "OrderCancelled",
    "OrderRecord",
    "OrderRejected",
    "OrderStatus",
    "OrderType",
    "RejectReason",
    "Side",
    "TimeInForce",
    "validate_order",
]


class Side(StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    """Order types."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"  # stop-market
    STOP_LIMIT = "stop_limit"
    TAKE_PROFIT = "take_profit"  # market when the target is touched


class TimeInForce(StrEnum):
    """Time in force: good till cancelled, immediate or cancel, fill or kill."""

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class RejectReason(StrEnum):
    """Why an order was rejected."""

    QTY_NOT_POSITIVE = "qty_not_positive"
    QTY_NOT_FINITE = "qty_not_finite"
    PRICE_NOT_FINITE = "price_not_finite"
    QTY_NOT_LOT_MULTIPLE = "qty_not_lot_multiple"
    PRICE_NOT_TICK_MULTIPLE = "price_not_tick_multiple"
    BELOW_MIN_QTY = "below_min_qty"
    BELOW_MIN_NOTIONAL = "below_min_notional"
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    REDUCE_ONLY_WOULD_INCREASE = "reduce_only_would_increase"
    INSUFFICIENT_MARGIN = "insufficient_margin"
    LEVERAGE_EXCEEDS_BRACKET = "leverage_exceeds_bracket"
    INSTRUMENT_EXPIRED = "instrument_expired"
    NO_MARKET_DATA = "no_market_data"
    FOK_NOT_FILLED = "fok_not_filled"
    TRADING_HALTED = "trading_halted"


class CancelReason(StrEnum):
    """Why a working order left the book without filling (compares equal to its value)."""

    #: ``ctx.cancel`` (or ``ctx.close_all``)
    STRATEGY = "strategy"
    #: its one-cancels-other sibling filled
    OCO = "oco"
    #: an IOC order did not fill at the first bar it could
    IOC_NOT_FILLED = "ioc_not_filled"
    #: a FOK order did not fill at the first bar it could
    FOK_NOT_FILLED = "fok_not_filled"
    #: a reduce-only order found no position to reduce when it triggered
    REDUCE_ONLY_NOTHING_TO_REDUCE = "reduce_only_nothing_to_reduce"
    #: the exchange cancels working orders before it liquidates
    LIQUIDATION = "liquidation"
    #: its instrument expired
    EXPIRED = "expired"


class OrderStatus(StrEnum):
    """How an order stands: working, or how it ended (compares equal to its value)."""

    WORKING = "working"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class Order:
    """A working order. Mutable only through the engine's order book.

    ``qty`` is unsigned contracts; ``side`` gives the direction. ``price`` is the limit price
    (limit, stop-limit), ``stop_price`` the trigger (stop, stop-limit, take-profit).
    """

    __slots__ = ("created_ms", "id", "is_post_only", "is_reduce_only", "is_triggered",
                 "oco_id", "order_type", "parent_id", "price", "qty", "side",
                 "stop_loss", "stop_price", "symbol", "tag", "take_profit", "tif")

    def __init__(self, *, id: int, symbol: str, side: Side, qty: Decimal,
                 order_type: OrderType, created_ms: int, price: Decimal | None = None,
                 stop_price: Decimal | None = None, tif: TimeInForce = TimeInForce.GTC,
                 is_reduce_only: bool = False, is_post_only: bool = False, tag: str = "",
                 stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
                 parent_id: int | None = None) -> None:
        self.id = id
        self.symbol = symbol
        self.side = side
        self.qty = qty
        self.order_type = order_type
        self.created_ms = created_ms
        self.price = price
        self.stop_price = stop_price
        self.tif = tif
        self.is_reduce_only = is_reduce_only
        self.is_post_only = is_post_only
        self.tag = tag
        self.stop_loss = stop_loss
        self.take_profit = take_profit
        self.parent_id = parent_id
        self.oco_id: int | None = None
        self.is_triggered = False

    @property
    def signed_qty(self) -> Decimal:
        """Contracts with sign: positive buys, negative sells."""
        return self.qty if self.side is Side.BUY else -self.qty

    @property
    def order_id(self) -> int:
        """The order's id (as :attr:`OpenOrder.order_id` names it)."""
        return self.id

    def as_dict(self) -> dict[str, object]:
        """Return a flat record for results tables (the fields of :data:`ORDER_FIELDS`)."""
        return {k: get(self) for k, get in ORDER_FIELDS}

    def __repr__(self) -> str:
        return (f"Order(#{self.id} {self.side} {self.qty} {self.symbol} {self.order_type}"
                f" price={self.price} stop={self.stop_price})")


#: The columns of an order's record in the results (``orders.parquet``) and how each is read
#: from the order (an :class:`Order` or an :class:`OpenOrder`): amounts as exact decimal
#: strings, enums by value. The keys are also those of the dicts ``ctx.open_orders()``
#: returned before it returned :class:`OpenOrder` records.
ORDER_FIELDS: tuple[tuple[str, Callable[[Order | OpenOrder], object]], ...] = (
    ("order_id", lambda o: o.order_id),
    ("symbol", lambda o: o.symbol),
    ("side", lambda o: o.side.value),
    ("qty", lambda o: str(o.qty)),
    ("type", lambda o: o.order_type.value),
    ("price", lambda o: None if o.price is None else str(o.price)),
    ("stop_price", lambda o: None if o.stop_price is None else str(o.stop_price)),
    ("tif", lambda o: o.tif.value),
    ("reduce_only", lambda o: o.is_reduce_only),
    ("post_only", lambda o: o.is_post_only),
    ("tag", lambda o: o.tag),
    ("created_ms", lambda o: o.created_ms),
    ("parent_id", lambda o: o.parent_id),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """An execution. ``qty`` is signed contracts (positive bought); ``fee`` positive = paid.

    ``liquidity`` is ``maker``, ``taker``, ``liquidation`` or ``settlement``.

    Times (int ms UTC): ``ts_ms`` is when the fill happened — the open of the bar it filled in
    (market orders at the open; stops and limits inside the bar, whose time within it is not
    known: ``path_time`` says where on the bar's path, 0 = open, then the nearer extreme 1, the
    farther one 2, the close 3, fractions between), or the bar's close for a fill at the close
    (``fill="close"``). ``step_ms`` is the clock step at which the engine processed it (the
    bar's close); None means ``ts_ms`` (liquidations, found by the margin check of the step, are
    stamped with the step and have no path time).
    """

    ts_ms: int
    order_id: int
    symbol: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: str
    realized_pnl: Decimal
    tag: str = ""
    is_ambiguous: bool = False
    step_ms: int | None = None
    path_time: float = float("nan")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected:
    """An order was refused; ``reason`` is a :class:`RejectReason`, ``message`` says why."""

    ts_ms: int
    order_id: int
    symbol: str
    reason: RejectReason
    message: str
    tag: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelled:
    """A working order was cancelled; ``reason`` says by what (:class:`CancelReason`)."""

    ts_ms: int
    order_id: int
    symbol: str
    reason: CancelReason

    def __post_init__(self) -> None:
        if type(self.reason) is not CancelReason:
            object.__setattr__(self, "reason", CancelReason(self.reason))


@dataclass(slots=True, kw_only=True)
class OrderRecord:
    """How one order placed during a run stands or ended: one row of ``orders.parquet``.

    ``status`` is an :class:`OrderStatus`; ``reason`` says why a cancelled order was cancelled
    (:class:`CancelReason`) or a rejected one rejected (:class:`RejectReason`), None otherwise;
    ``closed_ms`` is when it left the book (ms UTC; None while working). The engine's order log
    owns these records and updates them as the order fills or is cancelled.
    """

    order: Order
    status: OrderStatus = OrderStatus.WORKING
    reason: CancelReason | RejectReason | None = None
    closed_ms: int | None = None

    @property
    def status_text(self) -> str:
        """The status as written to the ``status`` column of ``orders.parquet``: the status,
        then the reason after a colon (``cancelled: oco``, ``rejected: below_min_qty``)."""
        if self.reason is None:
            return self.status.value
        return f"{self.status.value}: {self.reason.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenOrder:
    """A working order as ``ctx.open_orders()`` returns it (a snapshot; it does not change).

    Attributes
    ----------
    order_id
        The id ``ctx.buy``/``ctx.sell``/``ctx.order`` returned (``OrderTicket.order_id``).
    symbol
        The instrument's ccxt symbol.
    side
        :class:`Side` (``buy`` or ``sell``).
    qty
        Unsigned contracts still to fill (see :attr:`signed_qty`).
    order_type
        :class:`OrderType`.
    price
        Limit price (limit, stop-limit; quote currency per unit), else None.
    stop_price
        Trigger price (stop, stop-limit, take-profit), else None.
    tif
        :class:`TimeInForce`.
    is_reduce_only, is_post_only
        The order's flags.
    tag
        The strategy's label (attached exits: the parent's tag, or ``stop_loss`` /
        ``take_profit``).
    created_ms
        When it was placed (ms UTC).
    parent_id
        The order whose fill placed it (attached stop-loss / take-profit), else None.

    Notes
    -----
    ``open_orders()`` used to return dicts: ``order["symbol"]`` and ``order.get("tag")`` still
    work for one release, with a ``DeprecationWarning``, and return the old values under the
    old keys (``qty`` and prices as exact decimal strings; ``type``, ``side`` and ``tif`` as
    strings; ``reduce_only`` and ``post_only``).
    """

    order_id: int
    symbol: str
    side: Side
    qty: Decimal
    order_type: OrderType
    price: Decimal | None
    stop_price: Decimal | None
    tif: TimeInForce
    is_reduce_only: bool
    is_post_only: bool
    tag: str
    created_ms: int
    parent_id: int | None

    @classmethod
    def from_order(cls, order: Order) -> OpenOrder:
        """Return the record of a working order."""
        return cls(order_id=order.id, symbol=order.symbol, side=order.side, qty=order.qty,
                   order_type=order.order_type, price=order.price, stop_price=order.stop_price,
                   tif=order.tif, is_reduce_only=order.is_reduce_only,
                   is_post_only=order.is_post_only, tag=order.tag, created_ms=order.created_ms,
                   parent_id=order.parent_id)

    @property
    def signed_qty(self) -> Decimal:
        """Contracts with sign: positive buys, negative sells."""
        return self.qty if self.side is Side.BUY else -self.qty

    def __getitem__(self, key: str) -> object:
        """Read a field by its old dict key (deprecated: use the attribute)."""
        get = _LEGACY_KEYS.get(key)
        if get is None:
            raise KeyError(key)
        warnings.warn(f"ctx.open_orders() returns OpenOrder records: read order[{key!r}] as an "
                      f"attribute (order.{_ATTRIBUTE_OF.get(key, key)}); dict access will be "
                      "removed in the next release", DeprecationWarning, stacklevel=2)
        return get(self)

    def get(self, key: str, default: object = None) -> object:
        """Read a field by its old dict key, or ``default`` (deprecated: use the attribute)."""
        get = _LEGACY_KEYS.get(key)
        if get is None:
            return default
        warnings.warn(f"ctx.open_orders() returns OpenOrder records: read order.get({key!r}) "
                      f"as an attribute (order.{_ATTRIBUTE_OF.get(key, key)}); dict access will "
                      "be removed in the next release", DeprecationWarning, stacklevel=2)
        return get(self)


_LEGACY_KEYS = dict(ORDER_FIELDS)
_ATTRIBUTE_OF = {"type": "order_type", "reduce_only": "is_reduce_only",
                 "post_only": "is_post_only"}


def _is_multiple(value: Decimal, step: Decimal) -> bool:
    return step <= 0 or (value % step) == 0


def validate_order(order: Order, instrument: Instrument, *,
                   ref_price: float) -> OrderRejected | None:
    """Check an order against the instrument's rules; return a rejection or None.

    ``ref_price`` (the last close) values the order for the minimum-notional check of market
    and stop orders.
    """
    sym = instrument.symbol

    def reject(reason: RejectReason, message: str) -> OrderRejected:
        return OrderRejected(ts_ms=order.created_ms, order_id=order.id, symbol=sym,
                             reason=reason, message=message, tag=order.tag)

    if order.qty <= 0:
        return reject(RejectReason.QTY_NOT_POSITIVE, f"qty {order.qty} must be positive")
    if not _is_multiple(order.qty, instrument.lot_size):
        return reject(RejectReason.QTY_NOT_LOT_MULTIPLE,
                      f"qty {order.qty} is not a multiple of lot size {instrument.lot_size} for "
                      f"{sym}; round with ctx.contracts_for()")
    if instrument.min_qty > 0 and order.qty < instrument.min_qty:
        return reject(RejectReason.BELOW_MIN_QTY,
                      f"qty {order.qty} is below the minimum {instrument.min_qty} for {sym}")
    for name, px in (("price", order.price), ("stop price", order.stop_price)):
        if px is not None:
            if px <= 0:
                return reject(RejectReason.PRICE_NOT_TICK_MULTIPLE,
                              f"{name} {px} must be positive for {sym}")
            if not _is_multiple(px, instrument.tick_size):
                return reject(RejectReason.PRICE_NOT_TICK_MULTIPLE,
                              f"{name} {px} is not a multiple of tick size {instrument.tick_size}"
                              f" for {sym}; round with ctx.round_price()")
    if instrument.min_notional > 0 and not order.is_reduce_only:
        value_px = ref_price if instrument.is_option or order.price is None \
            else float(order.price)
        notional = instrument.notional_usd(float(order.qty), value_px)
        if notional < float(instrument.min_notional):
            return reject(RejectReason.BELOW_MIN_NOTIONAL,
                          f"notional {notional:.2f} is below the minimum "
                          f"{instrument.min_notional} for {sym}")
    return None


