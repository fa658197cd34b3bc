"""The Python API: ``backtester.run(...)``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from backtester.config import RunConfig
from backtester.data.feed import MarketFrames
from backtester.instruments import Instrument
from backtester.progress import Progress
from backtester.runs.results import BacktestResult
from backtester.runs.runner import PreparedRun, load_strategy, prepare, run_prepared
from backtester.strategy import Strategy

__all__ = ["PreparedRun", "load_strategy", "prepare", "run", "run_all", "run_prepared"]


def run(strategy: str | type[Strategy] | Strategy, *, dataset: str | None = None,
        data: Mapping[str, pd.DataFrame | MarketFrames] | None = None,
        instruments: Mapping[str, Instrument] | None = None,
        vol_indexes: Mapping[str, pd.DataFrame | MarketFrames] | None = None,
        config: RunConfig | None = None,
        config_file: str | Path | None = None, datasets_root: str | Path | None = None,
        progress: Progress | None = None, dataset_tiers: Mapping[str, Any] | None = None,
        **keys: Any) -> BacktestResult:
    """Run a backtest and return its :class:`~backtester.runs.results.BacktestResult`.

    Parameters
    ----------
    strategy
        A Strategy subclass, an instance, or a spec ``file.py[:Class]`` / ``module:Class``.
    dataset
        Name of a stored dataset (``sample``, ``binanceusdm``, ...) under ``datasets_root``.
    data
        Instead of a dataset: symbol → DataFrame of candles (``ts`` column or DatetimeIndex,
        tz-aware UTC) or :class:`~backtester.data.feed.MarketFrames` with mark/index/funding.
    instruments
        Instrument specs for ``data`` (default: from the symbol grammar).
    vol_indexes
        With ``data``: vol index candles per currency (``{"BTC": frame}``, DVOL-like levels in
        percent; a frame as ``data`` takes candles, any timeframe, inferred from the stamps —
        or ``MarketFrames(ohlcv=frame, timeframe="1d")``) used to price options that have
        neither option marks nor mark candles: Black-76 on the option's forward at the level
        of the last vol candle closed by each bar's close, with the default (flat) smile; such
        options are ``mark_source: theoretical`` and listed in the warnings.
    progress
        Where to report what is running (loading, each backtest's bars, the comparison
        re-runs); see :mod:`backtester.progress`. None shows nothing.
    dataset_tiers
        With ``data``: the leverage tiers of the dataset the frames come from (a
        ``leverage_tiers.json`` payload or symbol → ccxt tier rows); they rank below the
        run's ``tiers`` and above the profile's (docs/margin.md "Tier tables").
    **keys
        Any run configuration key of DESIGN §7 (``margin_mode="isolated"``,
        ``collateral={"USDT": 10_000}``, ``params={...}``, ...). With
        ``compare_margin_modes=True`` the other margin modes run too and
        ``result.comparison`` compares them; ``survival_collateral=True`` adds, per mode, the
        smallest starting collateral that avoids every liquidation (bisection to 1 %).
    """
    prep = prepare(strategy, dataset=dataset, data=data, instruments=instruments,
                   vol_indexes=vol_indexes, config=config, config_file=config_file,
                   datasets_root=datasets_root, progress=progress, dataset_tiers=dataset_tiers,
                   **keys)
    return run_all(prep)


def run_all(prep: PreparedRun) -> BacktestResult:
    """Run a prepared backtest, then the margin-mode comparison or survival search it asks for."""
    cfg = prep.config
    result = run_prepared(prep, primary=True)
    if cfg.compare_margin_modes:
        from backtester.runs.modes import compare_modes

        compare_modes(prep, result)
    elif cfg.survival_collateral:
        from backtester.runs.modes import survival_collateral

        result.meta["survival_collateral"] = survival_collateral(prep, result).as_dict()
    return result


