"""Held options' per-step values over a run, evaluated ahead in blocks of steps.

While options are held, the margin monitor needs Black-76 for every held option at every step:
the account greeks the strategy reads and the run records, and the portfolio-margin scenario
grid recorded beside the standard requirement (``portfolio_initial_margin``). One step at a
time, the pricer's per-call overhead dominates (about 1.5 ms a bar on the sample year's
delta-hedged strangle, issue 17). :class:`OptionSteps` evaluates an option over a block of
coming steps in one vectorized call and serves each step from it; a block used up is followed
by one twice as long (``block_min`` … ``block_max`` steps).

Exactness: every element is computed with the float operations a call for that step alone
performs (:mod:`backtester.pricing.black76` and :func:`~backtester.margin.portfolio.
option_pnl_grid` are elementwise), so the served values are bit-identical to per-step calls.
A step whose inputs such a call would reject or skip (no or negative implied vol, a forward
that is not a positive finite price) is not served (``None``): the caller evaluates it on its
own, as before, and gets the same value, skip or error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from backtester.instruments import OptionType
from backtester.margin.portfolio import PortfolioParams, option_pnl_grid
from backtester.pricing import black76

if TYPE_CHECKING:
    from collections.abc import Callable

    from backtester.data.feed import SymbolFeed
    from backtester.margin.portfolio import VolScenario
    from backtester.pricing.black76 import FloatArray

__all__ = ["OptionSteps", "unit_greeks"]

_CORE_COLS: tuple[VolScenario, ...] = ("up", "same", "down")


def unit_greeks(forward: float | FloatArray, strike: float, t_years: float | FloatArray,
                vol: float | FloatArray, *, is_call: bool, inverse: bool
                ) -> tuple[float | FloatArray, ...]:
    """Greeks of one unit of an option (Black-76 conventions of :mod:`~backtester.pricing.
    black76`): delta, gamma, vega, theta and — for a coin-settled option (``inverse``) — the
    premium-adjusted coin delta (``nan`` for linear options). Scalars give floats, arrays of
    one shape give arrays."""
    args = (forward, strike, t_years, vol, is_call)
    out = (black76.delta(*args), black76.gamma(*args), black76.vega(*args),
           black76.theta(*args), black76.inverse_delta(*args) if inverse else np.nan)
    return out


@dataclass(slots=True)
class _Block:
    start: int
    end: int
    valid: np.ndarray  # bool per step: the inputs a per-step call accepts
    values: tuple[np.ndarray, ...]


class OptionSteps:
    """Greeks and portfolio grids of held options per step, computed ahead in blocks.

    Parameters
    ----------
    times
        The run's step times (ms UTC, int64).
    bars
        ``bars(feed, steps)``: the feed's bar index at each step.
    params
        The profile's portfolio-margin parameters (None: Deribit's published values).
    """

    block_min = 8
    block_max = 4096

    def __init__(self, times: np.ndarray,
                 bars: Callable[[SymbolFeed, np.ndarray], np.ndarray],
                 params: PortfolioParams | None) -> None:
        self._times = times
        self._bars_of = bars
        self._params = PortfolioParams() if params is None else params
        self._blocks: dict[tuple[str, int], _Block] = {}
        self._series: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def greeks(self, f: SymbolFeed, s: int) -> tuple[float, float, float, float, float] | None:
        """One unit's delta, gamma, vega, theta and coin delta (see :func:`unit_greeks`) at
        step ``s``; None when the step's inputs are not those of a valid call."""
        b = self._block(f, s, 0)
        if b is None:
            return None
        i = s - b.start
        v = b.values
        return float(v[0][i]), float(v[1][i]), float(v[2][i]), float(v[3][i]), float(v[4][i])

    def grids(self, f: SymbolFeed, s: int) -> tuple[FloatArray, FloatArray] | None:
        """One unit's portfolio scenario grids at step ``s`` (the ``grids`` entry of
        :func:`~backtester.margin.portfolio.portfolio_margin`: core, extended); None when the
        step's inputs are not those of a valid call."""
        b = self._block(f, s, 1)
        if b is None:
            return None
        i = s - b.start
        return b.values[0][i], b.values[1][i]

    def marks(self, f: SymbolFeed, s0: int, n: int) -> np.ndarray | None:
        """One unit's mark at the option's forward low and high (Black-76 at the bar's implied
        vol: ``price``, or ``inverse_price`` for coin-settled options) at steps ``s0 … s0+n-1``,
        shape ``(n, 2)``; NaN where a step has no usable implied vol or no bar (the recorded
        mark low/high applies). A step whose inputs the pricer rejects raises its
        :class:`~backtester.errors.ConfigError`."""
        b = self._ensure(f, s0, n, 2)
        i = s0 - b.start
        if not b.valid[i:i + n].all():
            # priced as given: the pricer names the first rejected input
            b = self._compute(f, s0, s0 + n, 2, strict=True)
            i = 0
        return b.values[0][i:i + n]

    def _block(self, f: SymbolFeed, s: int, kind: int) -> _Block | None:
        b = self._ensure(f, s, 1, kind)
        return b if b.valid[s - b.start] else None

    def _ensure(self, f: SymbolFeed, s: int, n: int, kind: int) -> _Block:
        # the block of ``kind`` holding steps s … s+n-1 (a new one from s when not held)
        key = (f.symbol, kind)
        b = self._blocks.get(key)
        if b is None or not b.start <= s or s + n > b.end:
            size = self.block_min
            if b is not None and s >= b.start:
                size = min(2 * (b.end - b.start), self.block_max)
            b = self._compute(f, s, min(s + max(size, n), len(self._times)), kind)
            self._blocks[key] = b
        return b

    def _compute(self, f: SymbolFeed, start: int, end: int, kind: int, *,
                 strict: bool = False) -> _Block:
        # the block of steps [start, end); ``strict``: steps with invalid inputs are priced too
        # (the pricer raises) instead of being marked not valid
        inst = f.instrument
        series = self._series.get(f.symbol)
        if series is None:
            fwd_all = np.frombuffer(f.fc, dtype=np.float64)
            iv_all = np.asarray(f.option_iv if f.option_iv is not None else
                                np.full(len(fwd_all), np.nan), dtype=np.float64)
            series = self._series[f.symbol] = (fwd_all, iv_all)
        steps = np.arange(start, end)
        bars = self._bars_of(f, steps)
        fwd = series[0][bars]
        iv = series[1][bars]
        strike = inst.strike or 0.0
        valid = ((iv == iv) & (iv >= 0) & np.isfinite(iv) & np.isfinite(fwd) & (fwd > 0)
                 & bool(np.isfinite(strike) and strike > 0))
        t = np.maximum((inst.expiry_ms or 0) - self._times[steps], 0) / black76.MS_PER_YEAR
        ok = np.flatnonzero(valid)
        call = inst.option_type is OptionType.CALL
        values: tuple[np.ndarray, ...]
        if kind == 2:
            # the intrabar check's marks: NaN where the step has no usable vol or bar
            has = (iv == iv) & (iv >= 0) & (bars >= 0)
            lo = np.asarray(f.arrays["forward_low"], dtype=np.float64)[np.maximum(bars, 0)]
            hi = np.asarray(f.arrays["forward_high"], dtype=np.float64)[np.maximum(bars, 0)]
            valid = ~has | (np.isfinite(iv) & np.isfinite(lo) & (lo > 0) & np.isfinite(hi)
                            & (hi > 0) & bool(np.isfinite(strike) and strike > 0))
            ok = np.flatnonzero(has if strict else has & valid)
            pricer = black76.price if inst.is_linear else black76.inverse_price
            out = np.full((end - start, 2), np.nan)
            for w, und in enumerate((lo, hi)):
                out[ok, w] = np.asarray(pricer(und[ok], strike, t[ok], iv[ok], call),
                                        dtype=np.float64)
            values = (out,)
        elif kind == 0:
            got = unit_greeks(fwd[ok], strike, t[ok], iv[ok], is_call=call,
                              inverse=not inst.is_linear)
            values = tuple(_spread(np.broadcast_to(np.asarray(g, dtype=np.float64), len(ok)),
                                   ok, end - start) for g in got)
        else:
            p = self._params
            core = option_pnl_grid(fwd[ok], strike, t[ok], iv[ok], is_call=call,
                                   is_linear=inst.is_linear, moves=np.asarray(p.core_moves()),
                                   vol_columns=_CORE_COLS, params=p)
            ext = option_pnl_grid(fwd[ok], strike, t[ok], iv[ok], is_call=call,
                                  is_linear=inst.is_linear,
                                  moves=np.asarray(p.extended_moves), vol_columns=("up",),
                                  params=p)
            values = (_spread(core, ok, end - start), _spread(ext, ok, end - start))
        return _Block(start=start, end=end, valid=valid, values=values)


def _spread(values: np.ndarray, at: np.ndarray, n: int) -> np.ndarray:
    # values of the steps ``at`` placed in an array of n steps (NaN elsewhere)
    out = np.full((n, *values.shape[1:]), np.nan)
    out[at] = values
    return out
