"""Vol surfaces: parametric (vol index) and interpolated from marks."""

from __future__ import annotations

import numpy as np
import pytest

from backtester.errors import ConfigError
from backtester.pricing.surface import IndexVolSurface, MarkVolSurface, SmileParams

DAY_MS = 86_400_000


def test_index_surface_atm_term_structure_and_smile() -> None:
    params = SmileParams(skew=-0.1, curvature=0.05, term_power=-0.1)
    s = IndexVolSurface(level_percent=55.0, params=params)
    # At the reference tenor the ATM vol is the index level.
    assert s.vol(60_000.0, 60_000.0, 30 / 365) == pytest.approx(0.55)
    # Term structure: (t/t_ref)^power — at 4×30 days 0.55 · 4^−0.1.
    assert s.vol(60_000.0, 60_000.0, 120 / 365) == pytest.approx(0.55 * 4**-0.1)
    # Smile at z = ln(K/F)/√t: 0.55·(1 − 0.1 z + 0.05 z²).
    k, f, t = 50_000.0, 60_000.0, 30 / 365
    z = np.log(k / f) / np.sqrt(t)
    assert s.vol(k, f, t) == pytest.approx(0.55 * (1 - 0.1 * z + 0.05 * z * z))
    strikes = np.array([40_000.0, 60_000.0, 80_000.0])
    out = np.asarray(s.vol(strikes, 60_000.0, np.array([0.1, 0.2, 0.3])))
    assert out.shape == (3,)


def test_index_surface_params_from_dict_rejects_unknown_keys() -> None:
    assert SmileParams.from_dict({"skew": -0.2}).skew == -0.2
    with pytest.raises(ConfigError, match="skw"):
        SmileParams.from_dict({"skw": -0.2})
    with pytest.raises(ConfigError, match="level_percent"):
        IndexVolSurface(level_percent=0.0)


def test_mark_surface_interpolates_in_moneyness_and_total_variance() -> None:
    now = 0
    e1, e2 = 10 * DAY_MS, 40 * DAY_MS
    s = MarkVolSurface.from_marks(
        strike=np.array([90.0, 100.0, 110.0, 100.0, 100.0]),
        forward=100.0,
        expiry_ms=np.array([e1, e1, e1, e2, e2]),
        mark_iv_percent=np.array([70.0, 60.0, 66.0, 50.0, 52.0]),  # e2: call and put averaged
        time_ms=now,
    )
    t1, t2 = 10 / 365, 40 / 365
    assert s.vol(100.0, 100.0, t1) == pytest.approx(0.60)
    # Linear in x = ln(K/F) between the 100 and 110 nodes.
    x = np.log(1.05)
    w = x / np.log(1.1)
    assert s.vol(105.0, 100.0, t1) == pytest.approx(0.60 + w * 0.06)
    # Flat beyond the last strike.
    assert s.vol(200.0, 100.0, t1) == pytest.approx(0.66)
    # Between expiries: total variance linear in t: at 25 days, sqrt((0.36·t1 + 0.2601·t2)/2/t).
    t = 25 / 365
    assert s.vol(100.0, 100.0, t) == pytest.approx(np.sqrt((0.36 * t1 + 0.51**2 * t2) / 2 / t))
    # Flat in vol before the first and after the last expiry.
    assert s.vol(100.0, 100.0, 1 / 365) == pytest.approx(0.60)
    assert s.vol(100.0, 100.0, 1.0) == pytest.approx(0.51)
