"""Risk controls a strategy uses in one line: size limits, account leverage, exits, margin guard.

Every control reads the market and the account through the strategy's context (see
:mod:`backtester.context`) and acts only through ordinary orders, so what it does is visible in
the fills (tags ``risk_guard``, ``stop_loss``, ``take_profit``)::

    from backtester.risk import MarginGuard, PositionLimits, RiskControls

    class MyStrategy(Strategy):
        def on_start(self, ctx):
            self.risk = RiskControls(limits=PositionLimits(max_notional_usd=200_000),
                                     max_leverage=5.0, guard=MarginGuard(de_risk_at=0.6))

        def on_bar(self, ctx):
            self.risk.apply(ctx)                              # de-risk before the exchange
            qty = self.risk.size(ctx, "BTC/USDT:USDT", 0.5)   # signed contracts, clipped
            ...

Conventions: ``qty`` is a signed order quantity in contracts (positive buys, negative sells);
notionals are in USD (``Instrument.notional_usd``: ``|qty| * cs * price`` for linear contracts
and options, ``|qty| * cs`` for inverse ones); leverage is gross notional / equity; the margin
ratio is maintenance margin / margin balance (1.0 = the exchange liquidates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from backtester.errors import ConfigError
from backtester.numeric import ZERO, dec, to_qty

if TYPE_CHECKING:
    from backtester.context import Context

__all__ = ["ExitBracket", "MarginGuard", "PositionLimits", "RiskControls", "attach_exits",
           "gross_notional_usd", "limit_leverage"]


def _position_qty(ctx: Context, symbol: str) -> Decimal:
    return dec(ctx.position(symbol).qty)


def _notional_usd(ctx: Context, symbol: str, qty: Decimal) -> float:
    inst = ctx.instrument(symbol)
    px = ctx.index(symbol) if inst.is_option else ctx.price(symbol)
    return inst.notional_usd(float(qty), px)


def _toward_zero(value: Decimal, lot: Decimal) -> Decimal:
    return to_qty(value, lot)


def gross_notional_usd(ctx: Context) -> float:
    """Return the sum of ``|notional|`` of every open position, USD.

    Options count at their underlying notional (``|qty| * cs * index``).
    """
    total = 0.0
    for sym in ctx.symbols:
        q = ctx.position(sym).qty
        if q != 0.0:
            total += _notional_usd(ctx, sym, dec(q))
    return total


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionLimits:
    """Per-symbol position size limits.

    Parameters
    ----------
    max_qty
        Largest absolute position in contracts (None = no limit).
    max_notional_usd
        Largest absolute position notional in USD at the current price (None = no limit).
    per_symbol
        Overrides by symbol: ``{"ETH/USDT:USDT": PositionLimits(max_qty=10)}``.
    """

    max_qty: float | None = None
    max_notional_usd: float | None = None
    per_symbol: Mapping[str, PositionLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_qty", "max_notional_usd"):
            v = getattr(self, name)
            if v is not None and not v >= 0:
                msg = f"PositionLimits.{name} must be >= 0, got {v!r}"
                raise ConfigError(msg)

    def max_abs_qty(self, ctx: Context, symbol: str) -> Decimal | None:
        """Return the largest allowed ``|position|`` of ``symbol`` in contracts (None = any)."""
        lim = self.per_symbol.get(symbol, self)
        inst = ctx.instrument(symbol)
        caps: list[Decimal] = []
        if lim.max_qty is not None:
            caps.append(_toward_zero(dec(lim.max_qty), inst.lot_size))
        if lim.max_notional_usd is not None:
            per_contract = _notional_usd(ctx, symbol, Decimal(1))
            if per_contract > 0 and math.isfinite(per_contract):
                caps.append(to_qty(lim.max_notional_usd / per_contract, inst.lot_size))
        return min(caps) if caps else None

    def clip(self, ctx: Context, symbol: str, qty: Decimal | float | str) -> Decimal:
        """Return the part of the signed order ``qty`` (contracts) the limits allow.

        The resulting position ``position + qty`` is clipped to ``±max_abs_qty``; an order that
        only reduces the position is never cut. The result has the sign of ``qty`` (or is 0)
        and is a multiple of the lot.
        """
        want = dec(qty)
        cap = self.max_abs_qty(ctx, symbol)
        if cap is None or want == 0:
            return want
        have = _position_qty(ctx, symbol)
        after = have + want
        if abs(after) <= abs(have) and (after == 0 or (after > 0) == (have > 0)):
            return want  # reducing only
        allowed_after = max(min(after, cap), -cap)
        out = allowed_after - have
        if (out > 0) != (want > 0):
            return ZERO  # already beyond the limit on this side: allow nothing more
        return _toward_zero(out, ctx.instrument(symbol).lot_size)


def limit_leverage(ctx: Context, symbol: str, qty: Decimal | float | str, *,
                   max_leverage: float) -> Decimal:
    """Shrink the signed order ``qty`` so gross notional / equity stays <= ``max_leverage``.

    Gross notional is :func:`gross_notional_usd` (USD) and equity ``ctx.account.equity``.
    Orders that do not increase ``|position|`` pass unchanged; an increase is cut to what the
    headroom ``max_leverage * equity - gross`` allows (0 when there is none), rounded down to
    the lot. Worked example: equity 10,000, gross 30,000, ``max_leverage=4``: headroom 10,000;
    buying 0.5 BTC at 40,000 (20,000) is cut to 0.25.
    """
    if not max_leverage > 0:
        msg = f"max_leverage must be > 0, got {max_leverage!r}"
        raise ConfigError(msg)
    want = dec(qty)
    have = _position_qty(ctx, symbol)
    added = abs(have + want) - abs(have)
    if want == 0 or added <= 0:
        return want
    equity = ctx.account.equity
    per_contract = _notional_usd(ctx, symbol, Decimal(1))
    if not per_contract > 0 or not math.isfinite(per_contract):
        return want
    headroom = max_leverage * max(equity, 0.0) - gross_notional_usd(ctx)
    if headroom <= 0:
        keep = abs(want) - added  # the reducing part of a flip is still fine
    else:
        room = to_qty(headroom / per_contract, ctx.instrument(symbol).lot_size)
        keep = abs(want) - added + min(added, room)
    keep = _toward_zero(keep, ctx.instrument(symbol).lot_size)
    return keep if want > 0 else -keep


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitBracket:
    """The ids of the exit orders :func:`attach_exits` placed (None where not placed)."""

    symbol: str
    stop_order_id: int | None
    take_order_id: int | None
    stop_price: float | None
    take_price: float | None


def attach_exits(ctx: Context, symbol: str, *, stop_pct: float | None = None,
                 take_pct: float | None = None, tag: str = "") -> ExitBracket | None:
    """Place reduce-only stop-loss and take-profit orders around the position's entry.

    For a long at entry ``E``: a stop-market sell at ``E * (1 - stop_pct)`` and a take-profit
    sell at ``E * (1 + take_pct)``; mirrored for a short. Both are for the whole position and
    reduce-only: once one closes the position the other cannot fill (the engine drops a
    reduce-only order with nothing to reduce), and :meth:`RiskControls.apply` cancels the
    survivor at the next bar (one cancels the other). Prices are rounded to the tick.
    Returns None when flat. ``stop_pct``/``take_pct`` are fractions (0.05 = 5 %).
    """
    for name, v in (("stop_pct", stop_pct), ("take_pct", take_pct)):
        if v is not None and not v > 0:
            msg = f"attach_exits {name} must be > 0 (a fraction, 0.05 = 5 %), got {v!r}"
            raise ConfigError(msg)
    pos = ctx.position(symbol)
    if pos.qty == 0.0:
        return None
    qty = abs(dec(pos.qty))
    side = "sell" if pos.qty > 0 else "buy"
    sign = 1.0 if pos.qty > 0 else -1.0
    stop_id = take_id = None
    stop_px = take_px = None
    if stop_pct is not None:
        stop_px = float(ctx.round_price(symbol, pos.entry_price * (1.0 - sign * stop_pct)))
        t = ctx.order(symbol, side, qty, order_type="stop", stop_price=stop_px,
                      reduce_only=True, tag=tag or "stop_loss")
        stop_id = t.order_id if t.is_accepted else None
    if take_pct is not None:
        take_px = float(ctx.round_price(symbol, pos.entry_price * (1.0 + sign * take_pct)))
        t = ctx.order(symbol, side, qty, order_type="take_profit", stop_price=take_px,
                      reduce_only=True, tag=tag or "take_profit")
        take_id = t.order_id if t.is_accepted else None
    return ExitBracket(symbol=symbol, stop_order_id=stop_id, take_order_id=take_id,
                       stop_price=stop_px, take_price=take_px)


@dataclass(slots=True, kw_only=True)
class MarginGuard:
    """Cut positions when the account's margin ratio reaches ``de_risk_at``.

    Parameters
    ----------
    de_risk_at
        Margin ratio (maintenance margin / margin balance; the exchange liquidates at 1.0) at
        or above which the guard acts. Must be in (0, 1).
    reduce_fraction
        Fraction of each position closed per action (0.5 = halve).
    mode
        ``"pro_rata"`` cuts every position by ``reduce_fraction``; ``"largest"`` cuts only the
        position with the largest USD notional (a proxy for the largest maintenance margin).
    cooldown_bars
        Bars to wait after an action before acting again (the cut fills at the next bar).

    Calling the guard (``guard(ctx)``) submits reduce-only market orders tagged ``risk_guard``
    and returns how many it placed; they fill at the next bar. ``actions`` counts calls that
    placed orders.

    Choosing the level: at ratio ``r`` the margin balance is ``maintenance / r``, so the loss
    the account can still take before the exchange liquidates is ``maintenance x (1/r - 1)``.
    With a 0.4 % maintenance rate, ``r = 0.6`` leaves about 0.27 % of notional — less than one
    hourly bar of a volatile coin, so the exchange usually acts first; ``r = 0.05`` leaves about
    7.6 % of notional, room for one or two bars of a crash.
    """

    de_risk_at: float = 0.6
    reduce_fraction: float = 0.5
    mode: Literal["pro_rata", "largest"] = "pro_rata"
    cooldown_bars: int = 1
    actions: int = field(default=0, init=False)
    _wait: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.de_risk_at < 1:
            msg = f"MarginGuard.de_risk_at must be in (0, 1), got {self.de_risk_at!r}"
            raise ConfigError(msg)
        if not 0 < self.reduce_fraction <= 1:
            msg = f"MarginGuard.reduce_fraction must be in (0, 1], got {self.reduce_fraction!r}"
            raise ConfigError(msg)
        if self.mode not in ("pro_rata", "largest"):
            msg = f"MarginGuard.mode must be 'pro_rata' or 'largest', got {self.mode!r}"
            raise ConfigError(msg)

    def __call__(self, ctx: Context) -> int:
        """Cut positions when ``ctx.account.margin_ratio >= de_risk_at``; return orders placed."""
        if self._wait > 0:
            self._wait -= 1
            return 0
        ratio = ctx.account.margin_ratio
        if not (math.isfinite(ratio) and ratio >= self.de_risk_at):
            return 0
        held = [(sym, ctx.position(sym).qty) for sym in ctx.symbols]
        held = [(s, q) for s, q in held if q != 0.0]
        if self.mode == "largest" and held:
            held = [max(held, key=lambda sq: _notional_usd(ctx, sq[0], abs(dec(sq[1]))))]
        placed = 0
        for sym, q in held:
            lot = ctx.instrument(sym).lot_size
            cut = to_qty(abs(dec(q)) * dec(self.reduce_fraction), lot)
            if cut == 0:
                cut = min(abs(dec(q)), lot)
            t = ctx.order(sym, "sell" if q > 0 else "buy", cut, reduce_only=True,
                          tag="risk_guard")
            placed += int(t.is_accepted)
        if placed:
            self.actions += 1
            self._wait = self.cooldown_bars
        return placed


@dataclass(slots=True, kw_only=True)
class RiskControls:
    """A bundle of controls for one-line use: ``apply(ctx)`` each bar, ``size(...)`` per order.

    Parameters
    ----------
    limits
        Per-symbol position limits (None = none).
    max_leverage
        Largest gross notional / equity the account may reach through new orders (None = any).
    guard
        The margin-ratio guard run by :meth:`apply` (None = none).
    """

    limits: PositionLimits | None = None
    max_leverage: float | None = None
    guard: MarginGuard | None = None
    brackets: list[ExitBracket] = field(default_factory=list, init=False)

    def size(self, ctx: Context, symbol: str, qty: Decimal | float | str) -> Decimal:
        """Return the signed order ``qty`` (contracts) allowed by the limits and leverage."""
        out = dec(qty)
        if self.limits is not None:
            out = self.limits.clip(ctx, symbol, out)
        if self.max_leverage is not None:
            out = limit_leverage(ctx, symbol, out, max_leverage=self.max_leverage)
        return out

    def order(self, ctx: Context, symbol: str, qty: Decimal | float | str, *,
              tag: str = "") -> Decimal:
        """Submit a market order for the allowed part of signed ``qty``; return what was sent."""
        allowed = self.size(ctx, symbol, qty)
        if allowed != 0:
            ctx.order(symbol, "buy" if allowed > 0 else "sell", abs(allowed), tag=tag)
        return allowed

    def exits(self, ctx: Context, symbol: str, *, stop_pct: float | None = None,
              take_pct: float | None = None) -> ExitBracket | None:
        """Attach stop-loss / take-profit exits (see :func:`attach_exits`) and track them."""
        b = attach_exits(ctx, symbol, stop_pct=stop_pct, take_pct=take_pct)
        if b is not None:
            self.brackets.append(b)
        return b

    def apply(self, ctx: Context) -> int:
        """Run the guard and cancel orphaned exit orders; return orders placed by the guard."""
        if self.brackets:
            working = {o.order_id for o in ctx.open_orders()}
            keep = []
            for b in self.brackets:
                ids = [i for i in (b.stop_order_id, b.take_order_id) if i is not None]
                alive = [i for i in ids if i in working]
                if len(alive) == len(ids):
                    keep.append(b)
                    continue
                for i in alive:  # its sibling filled or was cancelled: one cancels the other
                    ctx.cancel(i)
            self.brackets = keep
        return self.guard(ctx) if self.guard is not None else 0
