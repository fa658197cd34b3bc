"""Volatility surfaces: parametric from a vol index (DVOL-like), or interpolated from marks.

Both surfaces answer ``vol(strike, forward, t_years)`` with vectorized numpy broadcasting and
return implied volatility as a fraction (0.55 = 55 %).

Parametric surface (:class:`IndexVolSurface`)
---------------------------------------------
With log-moneyness ``x = ln(K/F)``, time ``τ = max(t, min_t_years)`` and standardised moneyness
``z = x / √τ`` (moneyness per unit square-root time, so one smile shape fits every expiry in
delta terms):

* term structure: ``atm(τ) = level/100 · (τ / t_ref_years) ** term_power`` — the index level is the
  ATM vol at the reference tenor (DVOL: 30 days); ``term_power < 0`` gives the usual crypto shape
  with short expiries more volatile;
* smile: ``σ(K, τ) = atm(τ) · (1 + skew·z + curvature·z²)``, clipped to ``[vol_floor, vol_cap]``;
  ``skew < 0`` makes puts richer than calls, ``curvature > 0`` lifts both wings.

Surface from marks (:class:`MarkVolSurface`)
--------------------------------------------
Per expiry, mark IVs are interpolated linearly in ``x = ln(K/F)`` (flat beyond the outermost
strikes; a call and a put on the same strike are averaged). Between expiries the total variance
``σ²·t`` is interpolated linearly in ``t`` at equal ``x``; before the first and after the last
expiry the nearest expiry's vol is used (flat in vol).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import numpy.typing as npt

from backtester.errors import ConfigError
from backtester.pricing.black76 import MS_PER_YEAR, FloatArray

__all__ = [
    "IndexVolSurface",
    "MarkVolSurface",
    "SmileParams",
    "VolSurface",
]

_Real = float | int | np.floating | FloatArray


def _out(x: FloatArray) -> float | FloatArray:
    return float(x) if x.ndim == 0 else x


class VolSurface(Protocol):
    """Anything that gives an implied vol (fraction) for strike, forward and time to expiry."""

    def vol(self, strike: _Real, forward: _Real, t_years: _Real) -> float | FloatArray:
        """Return the implied volatility as a fraction."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SmileParams:
    """Parameters of the parametric smile and term structure (see the module docstring).

    Parameters
    ----------
    skew
        Linear coefficient on ``z = ln(K/F)/√τ`` (fraction of ATM vol per unit z).
    curvature
        Quadratic coefficient on ``z²``.
    t_ref_years
        Tenor at which the index level is the ATM vol (DVOL: 30/365).
    term_power
        Exponent of the term structure ``(τ / t_ref_years) ** term_power``.
    min_t_years
        Floor on the time used in the surface, so expiring options keep a finite vol.
    vol_floor, vol_cap
        Clip range of the result (fractions).
    """

    skew: float = 0.0
    curvature: float = 0.0
    t_ref_years: float = 30.0 / 365.0
    term_power: float = 0.0
    min_t_years: float = 1.0 / 365.0
    vol_floor: float = 0.05
    vol_cap: float = 5.0

    def __post_init__(self) -> None:
        if self.t_ref_years <= 0 or self.min_t_years <= 0:
            msg = "SmileParams t_ref_years and min_t_years must be > 0"
            raise ConfigError(msg)
        if not 0 < self.vol_floor < self.vol_cap:
            msg = f"SmileParams needs 0 < vol_floor < vol_cap, got {self.vol_floor}, {self.vol_cap}"
            raise ConfigError(msg)

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> SmileParams:
        """Build from a mapping of field name to value; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"unknown SmileParams keys {unknown}; expected some of {sorted(known)}"
            raise ConfigError(msg)
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexVolSurface:
    """A parametric surface anchored on a vol index level.

    Parameters
    ----------
    level_percent
        The index level, an annualised ATM vol in percent (e.g. DVOL 55.0).
    params
        Smile and term-structure parameters.

    Examples
    --------
    >>> s = IndexVolSurface(level_percent=55.0, params=SmileParams(skew=-0.1, curvature=0.05))
    >>> s.vol(60_000.0, 60_000.0, 30 / 365)
    0.55
    >>> s.vol(50_000.0, 60_000.0, 30 / 365) > s.vol(70_000.0, 60_000.0, 30 / 365)
    True
    """

    level_percent: float
    params: SmileParams = SmileParams()

    def __post_init__(self) -> None:
        if not np.isfinite(self.level_percent) or self.level_percent <= 0:
            msg = f"level_percent must be > 0 (a vol in percent), got {self.level_percent}"
            raise ConfigError(msg)

    def atm_vol(self, t_years: _Real) -> float | FloatArray:
        """Return the ATM vol (fraction) of the term structure at ``t_years``."""
        p = self.params
        tau = np.maximum(np.asarray(t_years, dtype=np.float64), p.min_t_years)
        return _out(self.level_percent / 100.0 * (tau / p.t_ref_years) ** p.term_power)

    def vol(self, strike: _Real, forward: _Real, t_years: _Real) -> float | FloatArray:
        """Return the implied vol (fraction) at ``strike`` for ``forward`` and ``t_years``."""
        return smile_vol(self.level_percent, strike, forward, t_years, self.params)


def smile_vol(level_percent: _Real, strike: _Real, forward: _Real, t_years: _Real,
              params: SmileParams = SmileParams()) -> float | FloatArray:
    """Vectorized :meth:`IndexVolSurface.vol` where the index level may vary (one per bar).

    ``vol = atm(t) * (1 + skew * z + curvature * z**2)``, ``z = ln(K/F) / sqrt(t)``,
    ``atm(t) = level / 100 * (t / t_ref) ** term_power``, clipped to the floor and cap.
    """
    p = params
    k = np.asarray(strike, dtype=np.float64)
    f = np.asarray(forward, dtype=np.float64)
    if np.any(~(k > 0)) or np.any(~(f > 0)):
        msg = "strike and forward must be > 0"
        raise ConfigError(msg)
    tau = np.maximum(np.asarray(t_years, dtype=np.float64), p.min_t_years)
    z = np.log(k / f) / np.sqrt(tau)
    atm = np.asarray(level_percent, dtype=np.float64) / 100.0 * (tau / p.t_ref_years) ** \
        p.term_power
    sigma = atm * (1.0 + p.skew * z + p.curvature * z * z)
    return _out(np.clip(sigma, p.vol_floor, p.vol_cap))


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkVolSurface:
    """A surface interpolated from per-instrument mark IVs observed at one time.

    Build it with :meth:`from_marks`. Each expiry slice stores sorted log-moneyness nodes and
    their vols (fractions); ``t_years`` holds the slices' times to expiry at the snapshot.
    """

    t_years: tuple[float, ...]
    log_moneyness: tuple[tuple[float, ...], ...]
    vols: tuple[tuple[float, ...], ...]

    @classmethod
    def from_marks(cls, *, strike: _Real, forward: _Real, expiry_ms: npt.ArrayLike,
                   mark_iv_percent: _Real, time_ms: int) -> MarkVolSurface:
        """Build from one snapshot of marks.

        Parameters
        ----------
        strike, forward
            Per instrument: strike and the option's own forward (Deribit ``underlying_price``).
        expiry_ms
            Per instrument expiry (int ms UTC); instruments are grouped into slices by it.
        mark_iv_percent
            Per instrument mark IV in percent (Deribit ``mark_iv``); NaN or non-positive rows
            are dropped.
        time_ms
            Snapshot time (int ms UTC); expiries at or before it are dropped.
        """
        k, f, iv = np.broadcast_arrays(np.asarray(strike, np.float64),
                                       np.asarray(forward, np.float64),
                                       np.asarray(mark_iv_percent, np.float64))
        exp = np.broadcast_to(np.asarray(expiry_ms, dtype=np.int64), k.shape)
        keep = np.isfinite(iv) & (iv > 0) & (k > 0) & (f > 0) & (exp > time_ms)
        if not np.any(keep):
            msg = "from_marks got no usable marks (need positive IV, strike, forward, live expiry)"
            raise ConfigError(msg)
        ts: list[float] = []
        xs: list[tuple[float, ...]] = []
        vs: list[tuple[float, ...]] = []
        for e in np.unique(exp[keep]):
            rows = keep & (exp == e)
            x = np.log(k[rows] / f[rows])
            # Average the vols of rows that share a strike (call and put on one strike).
            _, inverse = np.unique(k[rows], return_inverse=True)
            x_node = np.bincount(inverse, weights=x) / np.bincount(inverse)
            v_node = np.bincount(inverse, weights=iv[rows] / 100.0) / np.bincount(inverse)
            order = np.argsort(x_node)
            ts.append(float(e - time_ms) / MS_PER_YEAR)
            xs.append(tuple(float(a) for a in x_node[order]))
            vs.append(tuple(float(a) for a in v_node[order]))
        return cls(t_years=tuple(ts), log_moneyness=tuple(xs), vols=tuple(vs))

    def vol(self, strike: _Real, forward: _Real, t_years: _Real) -> float | FloatArray:
        """Return the interpolated implied vol (fraction).

        >>> s = MarkVolSurface(t_years=(0.1, 0.2), log_moneyness=((0.0,), (0.0,)),
        ...                    vols=((0.5,), (0.7,)))
        >>> round(s.vol(100.0, 100.0, 0.15), 6)  # sqrt((0.025 + 0.098) / 2 / 0.15)
        0.640312
        """
        k, f, t = np.broadcast_arrays(np.asarray(strike, np.float64),
                                      np.asarray(forward, np.float64),
                                      np.asarray(t_years, np.float64))
        if np.any(~(k > 0)) or np.any(~(f > 0)) or np.any(~(t >= 0)):
            msg = "strike and forward must be > 0 and t_years >= 0"
            raise ConfigError(msg)
        x = np.log(k / f)
        slices = np.array([np.interp(x, np.asarray(xn), np.asarray(vn))
                           for xn, vn in zip(self.log_moneyness, self.vols, strict=True)])
        times = np.asarray(self.t_years)
        j = np.clip(np.searchsorted(times, t), 1, len(times) - 1) if len(times) > 1 else None
        if j is None:
            return _out(slices[0])
        t0, t1 = times[j - 1], times[j]
        v0 = np.take_along_axis(slices, (j - 1)[None, ...], axis=0)[0]
        v1 = np.take_along_axis(slices, j[None, ...], axis=0)[0]
        w = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
        var = (1.0 - w) * v0 * v0 * t0 + w * v1 * v1 * t1
        inner = np.sqrt(var / np.where(t > 0, t, 1.0))
        sigma = np.where(t <= t0, v0, np.where(t >= t1, v1, inner))
        return _out(sigma)
