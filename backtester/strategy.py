"""The Strategy base class, its parameters and the indicators revealed bar by bar.

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
``on_funding(ctx, payment)``, ``on_margin_call(ctx, state)``, ``on_liquidation(ctx, event)``,
``on_expiry(ctx, event)``, ``on_finish(ctx)``. The context is documented in
:mod:`backtester.context`.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from backtester.errors import ConfigError

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
    def on_start(self, ctx: Any) -> None:
        """Prepare: compute indicators with ``ctx.series``/``ctx.indicator``. No orders here."""

    def on_bar(self, ctx: Any) -> None:
        """Decide at the close of each clock step; orders fill from the next bar."""
        msg = f"{self.name} must implement on_bar(self, ctx)"
        raise NotImplementedError(msg)

    def on_fill(self, ctx: Any, fill: Any) -> None:
        """React to a fill (a :class:`backtester.orders.Fill`)."""

    def on_funding(self, ctx: Any, payment: Any) -> None:
        """React to a funding payment (a :class:`backtester.events.FundingPaid`)."""

    def on_margin_call(self, ctx: Any, state: Any) -> None:
        """React to a margin call (the account's margin state); orders fill next bar."""

    def on_liquidation(self, ctx: Any, event: Any) -> None:
        """React to a liquidation (a :class:`backtester.events.PositionLiquidated`)."""

    def on_expiry(self, ctx: Any, event: Any) -> None:
        """React to an expiry settlement (a :class:`backtester.events.InstrumentExpired`)."""

    def on_finish(self, ctx: Any) -> None:
        """Clean up after the last bar (orders are no longer accepted)."""


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


class Indicator:
    """A precomputed series revealed bar by bar.

    ``ind.now`` is the value at the last closed bar of its symbol; ``ind[-1]`` the one before,
    ``ind[0]`` the same as ``now``; ``ind.values`` the array up to now. Nothing after "now" is
    reachable.

    Parameters
    ----------
    values
        One value per bar of the symbol.
    cursor
        What says which bar is the last closed one: an object with an ``idx`` attribute (the
        symbol's feed; -1 before its first bar) or a callable returning that index.
    name
        Label used in messages.
    """

    __slots__ = ("_list", "_src", "_values", "name")

    def __init__(self, values: np.ndarray, cursor: Callable[[], int] | Any, *,
                 name: str = "") -> None:
        # scalar access for now / [-k]: float64 series are read through a memoryview of one
        # copy that ends with a NaN, which index -1 (before the first bar) reads
        if values.dtype == np.float64 and values.ndim == 1:
            buf = np.empty(len(values) + 1)
            buf[:-1] = values
            buf[-1] = np.nan
            self._values = buf[:-1]
            self._list: Any = memoryview(buf)  # type: ignore[arg-type]
        else:
            self._values = values
            self._list = [*values.tolist(), float("nan")]
        self._src = cursor if hasattr(cursor, "idx") else _CallCursor(cursor)
        self.name = name

    @property
    def now(self) -> float:
        """Value at the last closed bar (NaN before the first bar)."""
        return self._list[self._src.idx]  # type: ignore[no-any-return]

    def __getitem__(self, back: int) -> float:
        if back > 0:
            msg = f"indicator {self.name!r}: index {back} looks into the future; use 0 or -k"
            raise IndexError(msg)
        i = self._src.idx + back
        if i < 0:
            return float("nan")
        return self._list[i]  # type: ignore[no-any-return]

    @property
    def values(self) -> np.ndarray:
        """Values up to and including now (a read-only view)."""
        v = self._values[: self._src.idx + 1]
        v.flags.writeable = False
        return v

    def __len__(self) -> int:
        return int(self._src.idx) + 1

    def __repr__(self) -> str:
        return f"Indicator({self.name!r}, now={self.now})"


class _CallCursor:
    # adapts a callable cursor to the ``idx`` attribute Indicator reads
    __slots__ = ("_func",)

    def __init__(self, func: Callable[[], int]) -> None:
        self._func = func

    @property
    def idx(self) -> int:
        return self._func()


def hook_names() -> Sequence[str]:
    """Return the names of the strategy hooks, in call order."""
    return _HOOKS


def resolve_params(cls: type[Strategy], params: Mapping[str, Any] | None) -> Strategy:
    """Instantiate ``cls`` with ``params`` (validated)."""
    return cls(**dict(params or {}))
