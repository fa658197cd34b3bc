"""The fill model: orders against a bar's price path, slippage, maker/taker.

A bar's path is open → nearer extreme → farther extreme → close (the extreme nearer to the open
is visited first). A price level is reached at the open (a gap: stops fill at the open) or at the
first point of the path that crosses it. Positions on the path are "path times" in [0, 3]
(segment index + fraction) so that several orders in one bar fill in path order.
"""

from __future__ import annotations

from dataclasses import dataclass

from backtester.orders import Order, OrderType, Side

__all__ = ["BarPath", "Match", "SlippageModel", "match_order"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlippageModel:
    """Slippage of taker fills, as a fraction of price, always against the order.

    ``rate = bps / 10_000 + volume_impact * qty_share``, where ``qty_share`` is the order's
    contracts as a fraction of the bar's volume (volume in contracts; 0 when volume is unknown).

    Parameters
    ----------
    bps
        Fixed slippage in basis points (2 = 0.02 %).
    volume_impact
        Extra slippage (fraction of price) per unit of volume share: 0.1 means an order of 10 % of
        the bar's volume slips a further 1 %.
    """

    bps: float = 2.0
    volume_impact: float = 0.0

    def rate(self, qty: float, bar_volume: float) -> float:
        """Return the slippage fraction for ``qty`` contracts in a bar of ``bar_volume``."""
        share = qty / bar_volume if bar_volume > 0 and self.volume_impact else 0.0
        return self.bps * 1e-4 + self.volume_impact * share

    def apply(self, side: Side, price: float, qty: float, bar_volume: float) -> float:
        """Move ``price`` against a taker order of ``side``."""
        r = self.rate(qty, bar_volume)
        return price * (1.0 + r) if side is Side.BUY else price * (1.0 - r)


class BarPath:
    """The four path points of a bar and helpers to find when a level is reached."""

    __slots__ = ("points",)

    def __init__(self, o: float, h: float, lo: float, c: float) -> None:
        if h - o <= o - lo:
            self.points = (o, h, lo, c)
        else:
            self.points = (o, lo, h, c)

    def first_at_or_above(self, level: float, start: float = 0.0) -> float | None:
        """Return the first path time >= ``start`` at which price >= ``level``, or None."""
        return self._first(level, start, above=True)

    def first_at_or_below(self, level: float, start: float = 0.0) -> float | None:
        """Return the first path time >= ``start`` at which price <= ``level``, or None."""
        return self._first(level, start, above=False)

    def price_at(self, t: float) -> float:
        """Return the path price at path time ``t``."""
        k = min(int(t), 2)
        a, b = self.points[k], self.points[k + 1]
        return a + (b - a) * (t - k)

    def _first(self, level: float, start: float, *, above: bool) -> float | None:
        pts = self.points
        k0 = min(int(start), 2)
        for k in range(k0, 3):
            a = self.price_at(start) if k == k0 else pts[k]
            b = pts[k + 1]
            s0 = max(start, float(k))
            if (a >= level) if above else (a <= level):
                return s0
            if (b >= level) if above else (b <= level):
                return k + (level - pts[k]) / (b - pts[k]) if b != pts[k] else float(k + 1)
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """Where and how an order fills in a bar: path time, raw price (before slippage), maker."""

    t: float
    price: float
    is_maker: bool
    is_gap: bool


def match_order(order: Order, path: BarPath) -> Match | None:
    """Find the fill of a working order on one bar's path, or None if it does not fill.

    Market orders fill at the open (taker). Limits fill at the open when it is already better
    (a gap through a resting limit fills at the open) else at the limit price when touched
    (maker). Stops and take-profits trigger at their level (at the open when gapped through)
    and fill as taker at the trigger price. Stop-limits trigger at the stop, then act as a limit.
    """
    buy = order.side is Side.BUY
    ot = order.order_type
    o = path.points[0]
    if ot is OrderType.MARKET:
        return Match(t=0.0, price=o, is_maker=False, is_gap=False)
    if ot is OrderType.LIMIT or (ot is OrderType.STOP_LIMIT and order.is_triggered):
        return _limit(buy, float(order.price), path, 0.0, resting=True)  # type: ignore[arg-type]
    stop = float(order.stop_price)  # type: ignore[arg-type]
    # stops trigger on adverse moves (buy stop above, sell stop below); take-profits on
    # favourable ones (buy take-profit below, sell take-profit above).
    if ot is OrderType.TAKE_PROFIT:
        rising = not buy
    else:
        rising = buy
    t = path.first_at_or_above(stop) if rising else path.first_at_or_below(stop)
    if t is None:
        return None
    gap = t == 0.0 and ((o > stop) if rising else (o < stop))
    trigger_px = o if gap else stop
    if ot is OrderType.STOP_LIMIT:
        limit = float(order.price)  # type: ignore[arg-type]
        if (trigger_px <= limit) if buy else (trigger_px >= limit):
            return Match(t=t, price=trigger_px, is_maker=False, is_gap=gap)
        m = _limit(buy, limit, path, t, resting=False)
        return m
    return Match(t=t, price=trigger_px, is_maker=False, is_gap=gap)


def _limit(buy: bool, limit: float, path: BarPath, start: float, *, resting: bool) -> Match | None:
    t = path.first_at_or_below(limit, start) if buy else path.first_at_or_above(limit, start)
    if t is None:
        return None
    px_at = path.price_at(t)
    better = (px_at < limit) if buy else (px_at > limit)
    if better and t == start:
        return Match(t=t, price=px_at, is_maker=resting, is_gap=True)
    return Match(t=t, price=limit, is_maker=True, is_gap=False)
