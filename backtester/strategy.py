"""The Strategy base class and its parameters; indicators are in :mod:`backtester.indicator`.

A strategy is a class with typed class-attribute parameters and hooks::

    class SmaCross(Strategy):
        symbol: str = "BTC/USDT:USDT"
        fast: int = 20

        def on_start(self, ctx):
            close = ctx.series(self.symbol, "close")
            self.sma = ctx.indicator(lambda c: sma(c, self.fast), close, symbol=self.symbol)

        def on_bar(self, ctx):
            if self.sma.now > ctx.price(self.symbol): ...

Hooks: ``on_start(ctx)``, ``on_bar(ctx)`` (required), ``on_fill(ctx, fill)``,
``on_funding(ctx, payment)``, ``on_margin_call(ctx, event)``, ``on_liquidation(ctx, event)``,
``on_expiry(ctx, event)``, ``on_finish(ctx)``. ``ctx`` is a :class:`backtester.Context`;
each event hook receives the event as its second argument, passed by position, so an override
may name that parameter as it likes.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from backtester.context import Context
from backtester.errors import ConfigError
from backtester.events import FundingPaid, InstrumentExpired, MarginCalled, PositionLiquidated
from backtester.indicator import Indicator
from backtester.orders import Fill

__all__ = ["Indicator", "Strategy"]

_HOOKS = ("on_start", "on_bar", "on_fill", "on_funding", "on_margin_call", "on_liquidation",
          "on_expiry", "on_finish")


class Strategy:
    """Base class of user strategies.

    Parameters are the public, annotated class attributes of the subclass (``fast: int = 20``).
    ``Strategy(**params)`` validates names ("did you mean") and types (ints, floats, bools and
    strings are converted from strings, so ``--param fast=10`` works).
    """

    #: Filled in by ``__init_subclass__``: parameter name → (type, default).
    parameters: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params: dict[str, tuple[Any, Any]] = {}
        for klass in reversed(cls.__mro__):
            if klass is Strategy or not issubclass(klass, Strategy):
                continue
            try:
                hints = typing.get_type_hints(klass)
            except Exception:  # unresolvable annotations: fall back to the raw ones
                hints = dict(getattr(klass, "__annotations__", {}))
            for name in getattr(klass, "__annotations__", {}):
                if name.startswith("_") or name in ("parameters",):
                    continue
                if typing.get_origin(hints.get(name)) is ClassVar:
                    continue
                if name in klass.__dict__:
                    params[name] = (hints.get(name, type(klass.__dict__[name])),
                                    klass.__dict__[name])
        cls.parameters = params

    def __init__(self, **params: Any) -> None:
        for name, value in params.items():
            if name not in self.parameters:
                close = difflib.get_close_matches(name, list(self.parameters), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                known = ", ".join(sorted(self.parameters)) or "none"
                msg = (f"{type(self).__name__} has no parameter {name!r}{hint} "
                       f"(parameters: {known})")
                raise ConfigError(msg)
            setattr(self, name, _coerce(type(self).__name__, name, self.parameters[name][0],
                                        value))

    @property
    def name(self) -> str:
        """The strategy's class name."""
        return type(self).__name__

    def params(self) -> dict[str, Any]:
        """Return the current parameter values."""
        return {k: getattr(self, k) for k in self.parameters}

    # -- hooks (overridden by subclasses) --------------------------------------------------
    # the engine calls every hook with positional arguments: an override may name them freely
    def on_start(self, ctx: Context) -> None:
        """Prepare: compute indicators with ``ctx.series``/``ctx.indicator``. No orders here.

        Parameters
        ----------
        ctx
            The run's context; ``ctx.series``, ``ctx.indicator`` and ``ctx.wake_on`` work only
            here, orders raise :class:`~backtester.errors.PhaseError`.
        """

    def on_bar(self, ctx: Context) -> None:
        """Decide at the close of each clock step; orders fill from the next bar.

        Parameters
        ----------
        ctx
            The run's context at the step's close (``ctx.now``, ms UTC).

        Raises
        ------
        NotImplementedError
            When the subclass does not implement it (every strategy must).
        """
        msg = f"{self.name} must implement on_bar(self, ctx)"
        raise NotImplementedError(msg)

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        """React to a fill of one of the strategy's orders (liquidations: ``on_liquidation``).

        Parameters
        ----------
        ctx
            The run's context; orders placed now fill from the next bar.
        fill
            The execution: signed ``qty`` (contracts, positive bought), ``price``, ``fee``
            (positive = paid, in ``fee_asset``), ``realized_pnl`` (settle currency), the
            order's ``order_id`` and ``tag``.
        """

    def on_funding(self, ctx: Context, payment: FundingPaid) -> None:
        """React to a funding payment on a held perpetual.

        Parameters
        ----------
        ctx
            The run's context.
        payment
            The payment: ``amount`` received by the account (negative = paid; settle
            currency), the funding ``rate`` (positive: longs pay shorts), the ``mark`` used and
            the signed ``qty`` held at the stamp ``ts_ms``.
        """

    def on_margin_call(self, ctx: Context, event: MarginCalled) -> None:
        """React to a margin call: maintenance / margin balance first reached the call level.

        Parameters
        ----------
        ctx
            The run's context; ``ctx.account`` has the state now. Orders fill from the next
            bar, so reducing risk here may come before the exchange liquidates.
        event
            The call: ``margin_ratio`` (maintenance margin / margin balance), the margin
            balance and requirements (USD), the ``call_level``; ``scope`` is
            :attr:`~backtester.events.EventScope.ACCOUNT`, or
            :attr:`~backtester.events.EventScope.POOL` with ``pool`` naming the collateral pool
            called.
        """

    def on_liquidation(self, ctx: Context, event: PositionLiquidated) -> None:
        """React to a liquidation, after the exchange closed what it closed.

        Parameters
        ----------
        ctx
            The run's context (positions and balances after the liquidation).
        event
            The liquidation: ``scope`` (account, pool or isolated position), every ``steps``
            entry (:class:`~backtester.events.LiquidationStep`), equity before and after (USD),
            the insurance-fund flows and ``is_bankrupt``.
        """

    def on_expiry(self, ctx: Context, event: InstrumentExpired) -> None:
        """React to the cash settlement of an expired future or option.

        Parameters
        ----------
        ctx
            The run's context (the position is closed).
        event
            The settlement: the signed ``qty`` settled, the ``settlement_price`` and how it was
            found (``price_source``), the settlement ``pnl`` and delivery ``fee`` (settle
            currency; fee positive = paid).
        """

    def on_finish(self, ctx: Context) -> None:
        """Clean up after the last bar (orders are no longer accepted).

        Parameters
        ----------
        ctx
            The run's context after the last step.
        """


def _coerce(strategy: str, name: str, typ: Any, value: Any) -> Any:
    if typ in (int, float, str, bool) and isinstance(value, str):
        try:
            if typ is bool:
                low = value.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            return typ(value)
        except ValueError:
            msg = f"{strategy} parameter {name!r} expects {typ.__name__}, got {value!r}"
            raise ConfigError(msg) from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ in (int, float, str, bool) and not isinstance(value, typ):
        msg = (f"{strategy} parameter {name!r} expects {typ.__name__}, got "
               f"{type(value).__name__} {value!r}")
        raise ConfigError(msg)
    return value


def hook_names() -> Sequence[str]:
    """Return the names of the strategy hooks, in call order."""
    return _HOOKS


def resolve_params(cls: type[Strategy], params: Mapping[str, Any] | None) -> Strategy:
    """Instantiate ``cls`` with ``params`` (validated)."""
    return cls(**dict(params or {}))
