"""Small builders shared by the tests: synthetic bars and scripted strategies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

import backtester as bt
from backtester.instruments import Instrument, instrument_from_symbol

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = "2024-01-01"


def bars(rows: Sequence[tuple[float, float, float, float]], *, start: str = T0,
         tf: str = "1h", volume: float = 1_000.0) -> pd.DataFrame:
    """Candles (open, high, low, close) from ``start`` every ``tf``, tz-aware UTC."""
    ts = pd.date_range(start, periods=len(rows), freq=tf, tz="UTC")
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c,
                         "volume": volume})


def flat(n: int, price: float = 100.0, **kw: Any) -> pd.DataFrame:
    """``n`` bars at one price (open = high = low = close)."""
    return bars([(price, price, price, price)] * n, **kw)


Action = Callable[[Any], Any]


class Scripted(bt.Strategy):
    """Run ``actions[k](ctx)`` at the k-th clock step (0-based); keep the results."""

    def __init__(self, actions: dict[int, Action] | None = None,
                 fill_hook: Callable[[Any, Any], None] | None = None) -> None:
        super().__init__()
        self.actions = actions or {}
        self.fill_hook = fill_hook
        self.step = -1
        self.out: dict[int, Any] = {}
        self.seen_fills: list[Any] = []

    def on_bar(self, ctx: Any) -> None:
        self.step += 1
        action = self.actions.get(self.step)
        if action is not None:
            self.out[self.step] = action(ctx)

    def on_fill(self, ctx: Any, fill: Any) -> None:
        self.seen_fills.append(fill)
        if self.fill_hook is not None:
            self.fill_hook(ctx, fill)


def run(strategy: Any, data: dict[str, pd.DataFrame], *,
        instruments: dict[str, Instrument] | None = None, **keys: Any) -> bt.BacktestResult:
    """``backtester.run`` with zero funding, 100,000 USDT and no slippage unless overridden."""
    keys.setdefault("funding", "zero")
    keys.setdefault("collateral", {"USDT": 100_000})
    keys.setdefault("slippage_bps", 0.0)
    return bt.run(strategy, data=data, instruments=instruments, **keys)


def perp(symbol: str = BTC, **overrides: Any) -> Instrument:
    """A linear perp from the symbol grammar with overrides (tick, lot, fees...)."""
    return instrument_from_symbol(symbol, **overrides)


class RecordingProgress:
    """A :class:`backtester.progress.Progress` that records what it was told.

    ``log`` holds ``("open", description, total)``, ``("update", completed, description)``
    and ``("close", description)`` tuples in order; polled tasks are polled once at close.
    """

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def task(self, description: str, *, total: float | None = None,
             poll: Callable[[], float] | None = None) -> RecordingTask:
        self.log.append(("open", description, total))
        return RecordingTask(self, description, poll)

    def descriptions(self) -> list[str]:
        """Every description a task was opened or renamed with, in order."""
        return [e[1] if e[0] == "open" else e[2] for e in self.log
                if e[0] == "open" or (e[0] == "update" and e[2] is not None)]


class RecordingTask:
    """One task of :class:`RecordingProgress`."""

    def __init__(self, owner: RecordingProgress, description: str,
                 poll: Callable[[], float] | None) -> None:
        self._owner = owner
        self._description = description
        self._poll = poll

    def update(self, completed: float | None = None, *, total: float | None = None,
               description: str | None = None) -> None:
        self._owner.log.append(("update", completed, description))

    def close(self) -> None:
        if self._poll is not None:
            self._owner.log.append(("update", self._poll(), None))
        self._owner.log.append(("close", self._description))
