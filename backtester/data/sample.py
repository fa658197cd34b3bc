"""The sample dataset: a deterministic, clearly labelled SYNTHETIC market (DESIGN §5).

Hourly bars for one year (2025) of:

* correlated BTC and ETH index prices (geometric Brownian motion, correlation 0.8) with one
  correlated crash (BTC -28 %, ETH -36 % over six hours on 2025-07-20, part-recovered);
* linear perpetuals ``BTC/USDT:USDT`` and ``ETH/USDT:USDT`` with mark candles and 8-hourly
  funding driven by a mean-reverting premium;
* quarterly BTC futures (``BTC/USDT:USDT-YYMMDD``, expiring 08:00 UTC on the last Friday of the
  quarter) whose basis decays so that they converge to the index at expiry;
* a monthly chain of linear USDC BTC options (``BTC/USDC:USDC-YYMMDD-K-C|P``), priced with
  Black-76 from a moving vol surface (a DVOL-like ATM level, stored as ``vol_index``, plus a smile).

Everything made from it is labelled synthetic. The same seed always gives the same bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester.data.schema import Kind
from backtester.data.store import Store
from backtester.pricing.black76 import price as black76_price
from backtester.timeutil import MS_PER_DAY, MS_PER_HOUR, ms_to_iso, parse_utc_ms

__all__ = ["SAMPLE_NAME", "SampleSpec", "ensure_sample", "generate_sample"]

SAMPLE_NAME = "sample"
_VERSION = 3  # bump when the generated data or its files change


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleSpec:
    """Parameters of the synthetic market (annualised vols, 365-day year)."""

    seed: int = 20250101
    start: str = "2025-01-01"
    days: int = 365
    btc_start: float = 95_000.0
    eth_start: float = 3_400.0
    btc_vol: float = 0.50
    eth_vol: float = 0.65
    correlation: float = 0.8
    crash_day: int = 200
    crash_btc: float = -0.28
    crash_eth: float = -0.36
    basis_apr: float = 0.08
    option_strikes_pct: tuple[float, ...] = (-0.2, -0.1, 0.0, 0.1, 0.2)
    option_listing_days: int = 45


def _last_fridays(start_ms: int, end_ms: int, *, monthly: bool) -> list[int]:
    out = []
    months = pd.date_range(pd.Timestamp(start_ms, unit="ms", tz="UTC").normalize(),
                           pd.Timestamp(end_ms, unit="ms", tz="UTC") + pd.Timedelta(days=31),
                           freq="ME")
    for m in months:
        if not monthly and m.month % 3 != 0:
            continue
        d = m
        while d.weekday() != 4:
            d -= pd.Timedelta(days=1)
        ms = int(d.normalize().as_unit("ms").asm8.view("int64")) + 8 * MS_PER_HOUR
        if start_ms < ms <= end_ms:
            out.append(ms)
    return out


def _candles(close: np.ndarray, rng: np.random.Generator, vol_h: np.ndarray,
             open_: np.ndarray | None = None) -> dict[str, np.ndarray]:
    o = np.concatenate([[close[0]], close[:-1]]) if open_ is None else open_
    wig = np.abs(rng.normal(0.0, 1.0, (2, len(close)))) * vol_h * 0.6
    h = np.maximum(o, close) * (1.0 + wig[0])
    lo = np.minimum(o, close) * (1.0 - wig[1])
    return {"open": o, "high": h, "low": lo, "close": close}


def generate_sample(spec: SampleSpec | None = None) -> dict[str, Any]:
    """Generate the synthetic market; return ``{"markets": [...], "series": [...]}``.

    Each series is ``(kind, symbol, timeframe, DataFrame)``; markets are ccxt-style dicts.
    """
    spec = spec or SampleSpec()
    rng = np.random.default_rng(spec.seed)
    start = parse_utc_ms(spec.start)
    n = spec.days * 24
    ts = start + np.arange(n, dtype="int64") * MS_PER_HOUR
    end = int(ts[-1]) + MS_PER_HOUR
    dt = 1.0 / (365.0 * 24.0)
    # vol regime: a DVOL-like ATM level that mean-reverts and spikes in the crash
    crash_i = spec.crash_day * 24
    dvol = np.empty(n)
    level = 55.0
    shocks = rng.normal(0.0, 1.0, n)
    for i in range(n):
        level += 0.02 * (55.0 - level) + 0.6 * shocks[i]
        if i == crash_i:
            level += 35.0
        level = min(max(level, 25.0), 150.0)
        dvol[i] = level
    vol_scale = dvol / 55.0
    z = rng.normal(0.0, 1.0, (2, n))
    zb = z[0]
    ze = spec.correlation * z[0] + math.sqrt(1 - spec.correlation ** 2) * z[1]
    rb = spec.btc_vol * vol_scale * math.sqrt(dt) * zb - 0.5 * (spec.btc_vol * vol_scale) ** 2 * dt
    re = spec.eth_vol * vol_scale * math.sqrt(dt) * ze - 0.5 * (spec.eth_vol * vol_scale) ** 2 * dt
    crash_path = np.array([0.25, 0.3, 0.2, 0.15, 0.06, 0.04])
    rb[crash_i:crash_i + 6] += math.log1p(spec.crash_btc) * crash_path
    re[crash_i:crash_i + 6] += math.log1p(spec.crash_eth) * crash_path
    rb[crash_i + 6:crash_i + 30] += -math.log1p(spec.crash_btc) * 0.4 / 24
    re[crash_i + 6:crash_i + 30] += -math.log1p(spec.crash_eth) * 0.35 / 24
    btc = spec.btc_start * np.exp(np.cumsum(rb))
    eth = spec.eth_start * np.exp(np.cumsum(re))
    markets: list[dict[str, Any]] = []
    series: list[tuple[Kind, str, str | None, pd.DataFrame]] = []
    tsi = pd.to_datetime(ts, unit="ms", utc=True).as_unit("ms")

    def frame(cols: dict[str, np.ndarray], idx: np.ndarray | None = None) -> pd.DataFrame:
        t = tsi if idx is None else pd.to_datetime(idx, unit="ms", utc=True).as_unit("ms")
        return pd.DataFrame({"ts": t, **cols})

    for base, idx_px, vol in (("BTC", btc, spec.btc_vol), ("ETH", eth, spec.eth_vol)):
        sym = f"{base}/USDT:USDT"
        vol_h = vol * vol_scale * math.sqrt(dt)
        index_c = _candles(idx_px, rng, vol_h)
        premium = np.empty(n)
        p = 0.0
        eps = rng.normal(0.0, 0.0004, n)
        for i in range(n):
            p = 0.97 * p + eps[i]
            premium[i] = p + 0.0001
        premium[crash_i:crash_i + 24] -= 0.002
        mark_close = idx_px * (1.0 + premium * 0.5)
        mark_c = _candles(mark_close, rng, vol_h)
        trade_close = mark_close * (1.0 + rng.normal(0.0, 0.0002, n))
        trade_c = _candles(trade_close, rng, vol_h)
        volume = np.abs(rng.normal(2_000.0 if base == "BTC" else 30_000.0, 400.0, n)) + 1.0
        series.append((Kind.OHLCV, sym, "1h", frame({**trade_c, "volume": volume})))
        series.append((Kind.MARK, sym, "1h", frame({**mark_c, "volume": np.zeros(n)})))
        series.append((Kind.INDEX, sym, "1h", frame({**index_c, "volume": np.zeros(n)})))
        f_idx = np.arange(0, n, 8)
        # funding: the 8h average premium clamped around the 0.01 % interest rate
        avg_prem = pd.Series(premium).rolling(8, min_periods=1).mean().to_numpy()[f_idx]
        rate = np.clip(avg_prem + np.clip(0.0001 - avg_prem, -0.0005, 0.0005), -0.0075, 0.0075)
        series.append((Kind.FUNDING, sym, None,
                       frame({"rate": np.round(rate, 8)}, ts[f_idx] + 8 * MS_PER_HOUR)))
        markets.append(_market(sym, base, "USDT", "USDT", "swap", tick="0.1" if base == "BTC"
                               else "0.01", lot="0.001" if base == "BTC" else "0.01"))
    series.append((Kind.VOL_INDEX, "BTC/USD", "1h",
                   frame(_candles(dvol, rng, np.full(n, 0.01)))))
    # quarterly BTC futures converging to the index
    for expiry in _last_fridays(start, end, monthly=False):
        code = pd.Timestamp(expiry, unit="ms", tz="UTC").strftime("%y%m%d")
        sym = f"BTC/USDT:USDT-{code}"
        listed = max(start, expiry - 120 * MS_PER_DAY)
        sel = (ts >= listed) & (ts < expiry)
        t_left = (expiry - ts[sel] - MS_PER_HOUR) / (365.0 * MS_PER_DAY)
        basis = spec.basis_apr * (1.0 + 0.3 * np.sin(np.arange(sel.sum()) / 500.0))
        fut_close = btc[sel] * np.exp(basis * np.maximum(t_left, 0.0))
        vol_h = spec.btc_vol * vol_scale[sel] * math.sqrt(dt)
        fc = _candles(fut_close, rng, vol_h)
        series.append((Kind.OHLCV, sym, "1h", frame({**fc, "volume": np.full(sel.sum(), 50.0)},
                                                    ts[sel])))
        series.append((Kind.MARK, sym, "1h", frame({**fc, "volume": np.zeros(sel.sum())},
                                                   ts[sel])))
        markets.append(_market(sym, "BTC", "USDT", "USDT", "future", tick="0.1", lot="0.001",
                               expiry=expiry))
    # monthly linear BTC options from a moving vol surface
    for expiry in _last_fridays(start, end, monthly=True):
        code = pd.Timestamp(expiry, unit="ms", tz="UTC").strftime("%y%m%d")
        listed = max(start, expiry - spec.option_listing_days * MS_PER_DAY)
        sel = (ts >= listed) & (ts < expiry)
        if sel.sum() < 48:
            continue
        first = int(np.argmax(sel))
        spot0 = btc[first]
        t_left = np.maximum((expiry - ts[sel] - MS_PER_HOUR) / (365.0 * MS_PER_DAY), 0.0)
        for pct in spec.option_strikes_pct:
            strike = float(round(spot0 * (1.0 + pct), -3))
            for cp in ("C", "P"):
                sym = f"BTC/USDC:USDC-{code}-{int(strike)}-{cp}"
                fwd = btc[sel]
                log_m = np.log(strike / fwd)
                iv = dvol[sel] / 100.0 * (1.0 - 0.25 * log_m + 1.2 * log_m ** 2)
                px = black76_price(fwd, strike, t_left, iv, cp == "C")
                px = np.maximum(np.round(px, 1), 0.1)
                oc = _candles(px, rng, np.full(len(px), 0.002))
                series.append((Kind.OHLCV, sym, "1h",
                               frame({**oc, "volume": np.full(len(px), 5.0)}, ts[sel])))
                series.append((Kind.OPTION_MARKS, sym, "1h",
                               frame({"mark_price": px, "mark_iv": iv * 100.0,
                                      "underlying_price": fwd}, ts[sel])))
                markets.append(_market(sym, "BTC", "USDC", "USDC", "option", tick="0.1",
                                       lot="0.01", expiry=expiry, strike=strike,
                                       option_type="call" if cp == "C" else "put"))
    return {"markets": markets, "series": series,
            "info": {"synthetic": True, "generator": "backtester.data.sample",
                     "version": _VERSION, "seed": spec.seed, "start": ms_to_iso(start),
                     "end": ms_to_iso(end)}}


def _market(symbol: str, base: str, quote: str, settle: str, mtype: str, *, tick: str, lot: str,
            expiry: int | None = None, strike: float | None = None,
            option_type: str | None = None) -> dict[str, Any]:
    is_option = mtype == "option"
    return {"symbol": symbol, "id": symbol, "base": base, "quote": quote, "settle": settle,
            "type": mtype, "spot": False, "swap": mtype == "swap", "future": mtype == "future",
            "option": is_option, "linear": True, "inverse": False, "contract": True,
            "contractSize": 1, "expiry": expiry, "strike": strike, "optionType": option_type,
            "precision": {"price": float(tick), "amount": float(lot)},
            "limits": {"amount": {"min": float(lot)}, "cost": {"min": 5.0 if not is_option
                                                              else None},
                       "leverage": {"max": 100 if not is_option else None}},
            # no maker/taker: a synthetic market has no fee schedule of its own, so a run
            # charges its profile's rates (docs/margin.md "Fees")
            "maker": None, "taker": None, "info": {"synthetic": True}}


def ensure_sample(root: Path | str | None = None, *, spec: SampleSpec | None = None) -> Path:
    """Generate the sample dataset into ``<root>/sample`` unless it is already there."""
    store = Store(root)
    manifest = store.root / SAMPLE_NAME / "manifest.json"
    if manifest.exists():
        try:
            if json.loads(manifest.read_text()).get("version") == _VERSION:
                return store.root / SAMPLE_NAME
        except json.JSONDecodeError:
            pass
        manifest.unlink()  # an older (or broken) sample: generate it again
    data = generate_sample(spec)
    for kind, symbol, tf, df in data["series"]:
        store.write(SAMPLE_NAME, kind, symbol, tf, df, metadata={"synthetic": True})
    store.write_json(SAMPLE_NAME, "markets", {"fetched": None, "synthetic": True,
                                               "precision_mode": 4,
                                               "markets": {m["symbol"]: m
                                                           for m in data["markets"]}})
    store.write_json(SAMPLE_NAME, "manifest", data["info"])  # written last: marks completeness
    return store.root / SAMPLE_NAME
