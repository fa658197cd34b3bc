"""The context a strategy receives: read the market and the account, place orders.

Reads: ``now``, ``price``, ``bar``, ``mark``, ``index``, ``history``, ``funding_rate``,
``position``, ``account``, ``open_orders``, ``instrument``, ``contracts_for``,
``round_price``; in ``on_start`` only: ``series`` and ``indicator``.
Writes: ``buy``, ``sell``, ``order``, ``target``, ``close``, ``close_all``, ``cancel``,
``set_leverage``, ``record``, ``log``. Order keywords after ``qty`` are keyword-only.

The context reaches the run only through :class:`ContextHost` (the engine satisfies it), so
this module sits below the engine and the strategy base class, whose hooks it types.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from backtester.errors import ConfigError, PhaseError
from backtester.indicator import Indicator
from backtester.margin.status import MarginStatus
from backtester.numeric import ZERO, dec, to_price, to_qty
from backtester.orders import (
    CancelReason,
    OpenOrder,
    OrderRejected,
    OrderType,
    Side,
    TimeInForce,
)

if TYPE_CHECKING:
    from backtester.accounting import Account
    from backtester.data.feed import Feed, SymbolFeed
    from backtester.instruments import Instrument
    from backtester.margin.state import MarginEngine
    from backtester.orders import Order

__all__ = ["AccountView", "Bar", "Context", "ContextHost", "OrderTicket", "Phase", "PositionView"]

logger = logging.getLogger("backtester.strategy")


def _expiry_ms(value: int | str) -> int:
    from backtester.timeutil import parse_utc_ms

    if isinstance(value, int):
        return value
    text = str(value)
    if len(text) == 6 and text.isdigit():  # YYMMDD, 08:00 UTC as in ccxt symbols
        return parse_utc_ms(f"20{text[:2]}-{text[2:4]}-{text[4:]}T08:00")
    return parse_utc_ms(text)


class Phase(StrEnum):
    """Which part of the run is under way; what the context allows depends on it.

    ``start`` (``on_start``): ``ctx.series``, ``ctx.indicator`` and ``ctx.wake_on``, no orders;
    ``bar`` (``on_bar`` and the event hooks): orders; ``finish`` (``on_finish``): no orders.
    Compares equal to its value.
    """

    #: the engine is being built
    INIT = "init"
    START = "start"
    BAR = "bar"
    FINISH = "finish"


@dataclass(frozen=True, slots=True)
class Bar:
    """The last closed bar of an instrument (``ts_ms`` = open time)."""

    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionView:
    """A read-only view of a position: signed ``qty`` contracts, average ``entry_price``,
    ``unrealized_pnl`` at the current mark (settle currency), ``notional`` (settle currency)."""

    symbol: str
    qty: float
    entry_price: float
    mark: float
    unrealized_pnl: float
    notional: float
    leverage: float
    isolated_margin: float | None

    @property
    def is_flat(self) -> bool:
        """True when no contracts are held."""
        return self.qty == 0.0

    @property
    def is_long(self) -> bool:
        """True for a long position."""
        return self.qty > 0.0

    @property
    def is_short(self) -> bool:
        """True for a short position."""
        return self.qty < 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountView:
    """The account at the last evaluation, in the valuation currency (USD for USD pools).

    ``margin_ratio`` is maintenance margin / margin balance (1.0 = liquidation); ``status`` is
    a :class:`~backtester.margin.status.MarginStatus` (``ok``, ``call`` or ``liquidate``; it
    compares equal to those strings).
    """

    equity: float
    wallet_balance: float
    margin_balance: float
    unrealized_pnl: float
    initial_margin: float
    maintenance_margin: float
    margin_ratio: float
    available: float
    balances: dict[str, Decimal]
    status: MarginStatus
    greeks: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderTicket:
    """What ``ctx.buy``/``ctx.sell`` returns: the order id, or the rejection."""

    order_id: int
    rejection: OrderRejected | None = None

    @property
    def is_accepted(self) -> bool:
        """True when the order is working (or filled)."""
        return self.rejection is None


class ContextHost(Protocol):
    """What the context reads and asks of the run's engine (``backtester.engine.Engine``
    satisfies it; the context never imports the engine)."""

    @property
    def now_ms(self) -> int: ...

    @property
    def phase(self) -> Phase: ...

    @property
    def feed(self) -> Feed: ...

    @property
    def account(self) -> Account: ...

    @property
    def margin(self) -> MarginEngine: ...

    @property
    def orders(self) -> dict[int, Order]: ...

    @property
    def wake_signals(self) -> list[Any]: ...

    def feed_of(self, symbol: str) -> SymbolFeed:
        """Return the feed of ``symbol``."""
        ...

    def submit(self, symbol: str, side: Side, qty: Decimal | float | str, *,
               order_type: OrderType, price: float | Decimal | None,
               stop_price: float | Decimal | None, tif: TimeInForce | None, reduce_only: bool,
               post_only: bool, tag: str, stop_loss: float | Decimal | None,
               take_profit: float | Decimal | None) -> OrderTicket:
        """Validate and place an order."""
        ...

    def cancel(self, order_id: int | None, *, symbol: str | None,
               reason: CancelReason | str) -> int:
        """Cancel one order, all orders of a symbol, or all orders; return how many."""
        ...

    def set_leverage(self, symbol: str, leverage: float) -> None:
        """Set the leverage of ``symbol``."""
        ...

    def adjust_isolated_margin(self, symbol: str, amount: Decimal) -> None:
        """Add (positive) or remove (negative) margin of the isolated position in ``symbol``."""
        ...

    def record_user(self, values: dict[str, float]) -> None:
        """Store user series values for the current step."""
        ...

    def position_view(self, symbol: str) -> PositionView:
        """A read-only view of the position in ``symbol``."""
        ...

    def account_view(self) -> AccountView:
        """The account at the last evaluation."""
        ...


class Context:
    """The strategy's window on the run. One instance per run; see the module docstring."""

    def __init__(self, engine: ContextHost) -> None:
        self._e = engine
        self.log = logger

    # -- time and market ------------------------------------------------------------------
    @property
    def now(self) -> int:
        """Current time: the close of the current clock step, int ms UTC."""
        return self._e.now_ms

    @property
    def now_utc(self) -> pd.Timestamp:
        """Current time as a tz-aware UTC Timestamp."""
        return pd.Timestamp(self._e.now_ms, unit="ms", tz="UTC")

    @property
    def symbols(self) -> list[str]:
        """Symbols of the run, sorted."""
        return sorted(self._e.feed.symbols)

    def instrument(self, symbol: str) -> Instrument:
        """Return the instrument of ``symbol``."""
        return self._e.feed_of(symbol).instrument

    def price(self, symbol: str) -> float:
        """Last close of ``symbol`` (NaN before its first bar)."""
        f = self._e.feed_of(symbol)
        return f.c[f.idx] if f.idx >= 0 else float("nan")

    def bar(self, symbol: str) -> Bar | None:
        """The last closed bar of ``symbol`` or None before its first bar."""
        f = self._e.feed_of(symbol)
        i = f.idx
        if i < 0:
            return None
        return Bar(f.ts[i], f.o[i], f.h[i], f.l[i], f.c[i], f.v[i])

    def mark(self, symbol: str) -> float:
        """Last mark close of ``symbol`` (trade close where no mark data exists)."""
        f = self._e.feed_of(symbol)
        return f.mc[f.idx] if f.idx >= 0 else float("nan")

    def index(self, symbol: str) -> float:
        """Last index close of ``symbol``'s underlying (mark where no index data exists)."""
        f = self._e.feed_of(symbol)
        return f.ic[f.idx] if f.idx >= 0 else float("nan")

    def funding_rate(self, symbol: str) -> float | None:
        """Last funding rate stamped at or before now; None before the first, or when that
        stamp is outside the funding history (no rate is known there)."""
        f = self._e.feed_of(symbol)
        j = f.next_funding - 1
        rate = f.funding_rate[j] if j >= 0 else None
        return rate if rate is not None and rate == rate else None

    def history(self, symbol: str, n: int | None = None) -> pd.DataFrame:
        """Bars of ``symbol`` up to now (last ``n``), indexed by open time (UTC)."""
        f = self._e.feed_of(symbol)
        end = f.idx + 1
        start = 0 if n is None else max(0, end - n)
        a = f.arrays
        idx = pd.to_datetime(f.ts_np[start:end], unit="ms", utc=True)
        return pd.DataFrame({k: a[k][start:end] for k in ("open", "high", "low", "close",
                                                          "volume")}, index=idx)

    def series(self, symbol: str, field: str = "close") -> np.ndarray:
        """The whole series of ``symbol`` (``on_start`` only), to build indicators from.

        Wrap what you compute with :meth:`indicator` so that bars are revealed one by one.
        """
        if self._e.phase is not Phase.START:
            msg = "ctx.series() is for on_start (use ctx.indicator(...).now in on_bar)"
            raise PhaseError(msg)
        f = self._e.feed_of(symbol)
        key = {"mark": "mark_close", "index": "index_close",
               "forward": "forward_close"}.get(field, field)
        if key not in f.arrays:
            msg = (f"unknown field {field!r}; use open, high, low, close, volume, mark, index "
                   "or forward")
            raise ConfigError(msg)
        arr = f.arrays[key].copy()
        arr.flags.writeable = False
        return arr

    def indicator(self, func: Callable[..., Any], *args: Any, symbol: str,
                  name: str = "") -> Indicator:
        """Compute ``func(*args)`` once over the whole series and reveal it bar by bar.

        The result must have one value per bar of ``symbol``.
        """
        if self._e.phase is not Phase.START:
            msg = "ctx.indicator() is for on_start"
            raise PhaseError(msg)
        f = self._e.feed_of(symbol)
        values = np.asarray(func(*args), dtype="float64")
        if values.shape != (f.n,):
            msg = (f"indicator {name or getattr(func, '__name__', '')!r} returned shape "
                   f"{values.shape}, expected ({f.n},) for {symbol}")
            raise ConfigError(msg)
        return Indicator(values, f, name=name or getattr(func, "__name__", ""))

    def chain(self, underlying: str, expiry: int | str | None = None) -> pd.DataFrame:
        """Options on ``underlying`` listed now (optionally one expiry: ms, ``YYMMDD`` or a date).

        One row per option: ``symbol``, ``expiry_ms``, ``strike``, ``option_type``, ``mark``
        (premium currency), ``iv`` (fraction), ``underlying`` (the option's forward, USD: its
        own ``underlying_price`` where the option marks give it, else the index),
        ``forward_source`` (``underlying_price`` or ``index``), and Black-76 greeks on that
        forward in exchange conventions: ``delta`` (N(d1)), ``gamma`` (per USD), ``vega`` (per
        vol point), ``theta`` (per calendar day, Deribit's convention), sorted by expiry,
        strike and type.
        """
        from backtester.pricing import black76

        want = None if expiry is None else _expiry_ms(expiry)
        now = self._e.now_ms
        rows = []
        for sym, f in sorted(self._e.feed.symbols.items()):
            inst = f.instrument
            if not inst.is_option or inst.base != underlying or f.idx < 0 or inst.is_expired(now):
                continue
            if want is not None and inst.expiry_ms != want:
                continue
            i = f.idx
            iv = f.option_iv[i] if f.option_iv is not None else float("nan")
            fwd = f.fc[i]
            t = max((inst.expiry_ms or 0) - now, 0) / (365.0 * 86_400_000)
            k = inst.strike or 0.0
            call = inst.option_type is not None and inst.option_type.value == "call"
            ok = iv == iv and iv >= 0
            rows.append({"symbol": sym, "expiry_ms": inst.expiry_ms, "strike": k,
                         "option_type": "call" if call else "put", "mark": f.mc[i], "iv": iv,
                         "underlying": fwd,
                         "forward_source": "index" if f.forward_missing[i:i + 1] == b"\x01"
                         else f.forward_source,
                         "delta": float(black76.delta(fwd, k, t, iv, call)) if ok else np.nan,
                         "gamma": float(black76.gamma(fwd, k, t, iv, call)) if ok else np.nan,
                         "vega": float(black76.vega(fwd, k, t, iv, call)) if ok else np.nan,
                         "theta": float(black76.theta(fwd, k, t, iv, call)) if ok else np.nan})
        cols = ["symbol", "expiry_ms", "strike", "option_type", "mark", "iv", "underlying",
                "forward_source", "delta", "gamma", "vega", "theta"]
        out = pd.DataFrame(rows, columns=cols)
        return out.sort_values(["expiry_ms", "strike", "option_type"]).reset_index(drop=True)

    # -- account --------------------------------------------------------------------------
    def position(self, symbol: str) -> PositionView:
        """The position in ``symbol`` (flat when none)."""
        return self._e.position_view(symbol)

    @property
    def account(self) -> AccountView:
        """The account at the last evaluation."""
        return self._e.account_view()

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Working orders (all, or of ``symbol``), in the order they were placed.

        Returns
        -------
        list of OpenOrder
            One frozen record per working order (id, symbol, side, unsigned ``qty``, type,
            prices, time in force, flags, tag, time placed, parent): a snapshot that does not
            change as the order fills or is cancelled.
        """
        return [OpenOrder.from_order(o) for o in self._e.orders.values()
                if symbol is None or o.symbol == symbol]

    def contracts_for(self, symbol: str, *, notional: float, price: float | None = None) -> Decimal:
        """Contracts worth ``notional`` USD at ``price`` (default last close), rounded down to
        the lot. Inverse contracts: ``notional / contract_size`` (their face is in USD)."""
        inst = self.instrument(symbol)
        px = self.price(symbol) if price is None else price
        if inst.is_linear or inst.is_option:
            if inst.is_option:
                px = self.index(symbol)
            raw = notional / (px * inst.cs) if px > 0 else 0.0
        else:
            raw = notional / inst.cs
        return to_qty(abs(raw), inst.lot_size) if np.isfinite(raw) else ZERO

    def round_price(self, symbol: str, price: float) -> Decimal:
        """``price`` rounded to the nearest tick of ``symbol``."""
        return to_price(price, self.instrument(symbol).tick_size)

    # -- orders ---------------------------------------------------------------------------
    def order(self, symbol: str, side: Side | str, qty: Decimal | float | str, *,
              order_type: OrderType | str = OrderType.MARKET, price: float | Decimal | None = None,
              stop_price: float | Decimal | None = None, tif: TimeInForce | str | None = None,
              reduce_only: bool = False, post_only: bool = False, tag: str = "",
              stop_loss: float | Decimal | None = None,
              take_profit: float | Decimal | None = None) -> OrderTicket:
        """Submit an order of any type (see :class:`backtester.orders.OrderType`)."""
        # the enums as given are used as they are (an Enum call costs as much as a lookup)
        return self._e.submit(symbol, side if type(side) is Side else Side(side), qty,
                              order_type=order_type if type(order_type) is OrderType
                              else OrderType(order_type),
                              price=price, stop_price=stop_price,
                              tif=None if tif is None else TimeInForce(tif),
                              reduce_only=reduce_only, post_only=post_only, tag=tag,
                              stop_loss=stop_loss, take_profit=take_profit)

    def buy(self, symbol: str, qty: Decimal | float | str, *, limit: float | Decimal | None = None,
            stop: float | Decimal | None = None, stop_loss: float | Decimal | None = None,
            take_profit: float | Decimal | None = None, reduce_only: bool = False,
            post_only: bool = False, tif: TimeInForce | str | None = None,
            tag: str = "") -> OrderTicket:
        """Buy ``qty`` contracts: market, or limit (``limit=``), stop (``stop=``) or
        stop-limit (both). ``stop_loss``/``take_profit`` attach reduce-only exit orders
        (one cancels the other) once this order fills."""
        return self._side(Side.BUY, symbol, qty, limit, stop, stop_loss, take_profit,
                          reduce_only, post_only, tif, tag)

    def sell(self, symbol: str, qty: Decimal | float | str, *, limit: float | Decimal | None = None,
             stop: float | Decimal | None = None, stop_loss: float | Decimal | None = None,
             take_profit: float | Decimal | None = None, reduce_only: bool = False,
             post_only: bool = False, tif: TimeInForce | str | None = None,
             tag: str = "") -> OrderTicket:
        """Sell ``qty`` contracts; see :meth:`buy`."""
        return self._side(Side.SELL, symbol, qty, limit, stop, stop_loss, take_profit,
                          reduce_only, post_only, tif, tag)

    def _side(self, side: Side, symbol: str, qty: Decimal | float | str,
              limit: float | Decimal | None, stop: float | Decimal | None,
              stop_loss: float | Decimal | None, take_profit: float | Decimal | None,
              reduce_only: bool, post_only: bool, tif: TimeInForce | str | None,
              tag: str) -> OrderTicket:
        if stop is not None:
            otype = OrderType.STOP_LIMIT if limit is not None else OrderType.STOP
        else:
            otype = OrderType.LIMIT if limit is not None else OrderType.MARKET
        return self.order(symbol, side, qty, order_type=otype, price=limit, stop_price=stop,
                          tif=tif, reduce_only=reduce_only, post_only=post_only, tag=tag,
                          stop_loss=stop_loss, take_profit=take_profit)

    def target(self, symbol: str, qty: Decimal | float | str, *,
               tag: str = "") -> OrderTicket | None:
        """Trade to a signed position of ``qty`` contracts with one market order (None if
        already there)."""
        want = dec(qty)
        e = self._e
        have = e.account.position(e.feed_of(symbol).instrument).qty
        delta = want - have
        if delta == 0:
            return None
        reduce_only = abs(want) < abs(have) and (want == 0 or (want > 0) == (have > 0))
        side = Side.BUY if delta > 0 else Side.SELL
        # what ctx.order(symbol, side, abs(delta), reduce_only=..., tag=tag) submits
        return e.submit(symbol, side, abs(delta), order_type=OrderType.MARKET, price=None,
                        stop_price=None, tif=None, reduce_only=reduce_only, post_only=False,
                        tag=tag, stop_loss=None, take_profit=None)

    def close(self, symbol: str, *, tag: str = "") -> OrderTicket | None:
        """Close the position in ``symbol`` with a reduce-only market order."""
        return self.target(symbol, ZERO, tag=tag)

    def close_all(self, *, tag: str = "") -> list[OrderTicket]:
        """Cancel every working order and close every position."""
        self.cancel()
        out = []
        for pos in self._e.account.open_positions():
            t = self.close(pos.symbol, tag=tag)
            if t is not None:
                out.append(t)
        return out

    def cancel(self, order_id: int | None = None, *, symbol: str | None = None) -> int:
        """Cancel one order, all orders of a symbol, or all orders; return how many."""
        return self._e.cancel(order_id, symbol=symbol, reason=CancelReason.STRATEGY)

    def set_leverage(self, symbol: str, leverage: float) -> None:
        """Set the leverage (initial margin = notional / leverage) of ``symbol``."""
        self._e.set_leverage(symbol, leverage)

    def add_margin(self, symbol: str, amount: Decimal | float | str) -> None:
        """Isolated mode: move ``amount`` (settle currency) from the pool to the position's
        margin; a negative amount removes margin (not below the initial margin)."""
        self._e.adjust_isolated_margin(symbol, dec(amount))

    def wake_on(self, *signals: Indicator) -> None:
        """Call ``on_bar`` only at bars where one of ``signals`` is true (non-zero, not NaN).

        For strategies that act on precomputed events (a crossover, a rebalance date, an
        entry filter): the engine still processes every bar — fills, funding, expiries, the
        margin check and liquidations, recording, and the ``on_fill`` / ``on_funding`` /
        ``on_margin_call`` / ``on_liquidation`` / ``on_expiry`` hooks — but calls ``on_bar``
        only at the clock steps where a signal's symbol closes a bar whose signal value is
        non-zero. Without it ``on_bar`` runs at every step. Call from ``on_start``.

        Parameters
        ----------
        signals
            Indicators made with :meth:`indicator` (their symbols may differ).
        """
        if self._e.phase is not Phase.START:
            msg = "ctx.wake_on() is for on_start"
            raise PhaseError(msg)
        for sig in signals:
            if not isinstance(sig, Indicator) or not hasattr(sig._src, "ts_np"):
                msg = f"wake_on takes indicators made with ctx.indicator(), got {sig!r}"
                raise ConfigError(msg)
        self._e.wake_signals.extend(signals)

    def record(self, **values: float) -> None:
        """Record user series at this bar (they appear in the results' ``records``)."""
        self._e.record_user(values)
