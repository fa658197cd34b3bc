from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from backtester.errors import DataError


@dataclass(frozen=True, slots=True, kw_only=True)
class RunData:
    path: Path
    equity: pd.DataFrame
    fills: pd.DataFrame
    orders: pd.DataFrame
    journal: pd.DataFrame
    positions: pd.DataFrame
    records: pd.DataFrame
    rejections: pd.DataFrame
    events: list[dict[str, Any]]
    metrics: dict[str, Any]
    config: dict[str, Any]
    warnings: list[str]
    comparison: pd.DataFrame | None
    alternatives: dict[str, Path]

    @property
    def end(self) -> pd.Timestamp | None:
        return pd.Timestamp(self.equity.index[-1]) if len(self.equity) else None


def _parquet(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        msg = f"unreadable run file {path}: {exc}"
        raise DataError(msg) from exc


def _json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"unreadable run file {path}: {exc}"
        raise DataError(msg) from exc


def load_run(path: Path) -> RunData:
    """Read a run folder written by ``BacktestResult.write``."""
    if not (path / "equity.parquet").exists():
        msg = (f"{path} is not a run folder (no equity.parquet); give the folder written by "
               "'backtester run'")
        raise DataError(msg)
    equity = _parquet(path / "equity.parquet")
    if "ts" in equity.columns:
        equity = equity.set_index("ts")
    records = _parquet(path / "records.parquet")
    if "ts" in records.columns:
        records = records.set_index("ts")
    comparison = None
    if (path / "comparison.csv").exists():
        try:
            comparison = pd.read_csv(path / "comparison.csv")
        except (OSError, ValueError) as exc:
            msg = f"unreadable run file {path / 'comparison.csv'}: {exc}"
            raise DataError(msg) from exc
    alternatives = {p.name.removeprefix("alternative-"): p
                    for p in sorted(path.glob("alternative-*"))
                    if (p / "equity.parquet").exists()}
    events = _json(path / "events.json", [])
    warn = _json(path / "warnings.json", [])
    return RunData(path=path, equity=equity, fills=_parquet(path / "trades.parquet"),
                   orders=_parquet(path / "orders.parquet"),
                   journal=_parquet(path / "journal.parquet"),
                   positions=_parquet(path / "positions.parquet"), records=records,
                   rejections=_parquet(path / "rejections.parquet"),
                   events=[e for e in events if isinstance(e, dict)],
                   metrics=_json(path / "metrics.json", {}),
                   config=_json(path / "config.json", {}),
                   warnings=[str(w) for w in warn], comparison=comparison,
                   alternatives=alternatives)


def benchmark_prices(run: RunData, symbol: str | None, *,
                     datasets_root: Path | str | None) -> tuple[pd.Series | None, str]:
    """Close prices of ``symbol`` from the run's stored dataset (read only; never downloaded).

    ``symbol=None`` picks the run's most traded non-option instrument. Returns (series or None,
    a note saying what was used or why there is none).
    """
    from backtester.data.schema import Kind
    from backtester.data.store import Store
    from backtester.timeutil import timeframe_ms

    dataset = run.config.get("dataset")
    if not dataset or dataset == "dataframes":
        return None, "no benchmark: the run used in-memory data frames, not a stored dataset"
    if symbol is None:
        if run.fills.empty:
            return None, "no benchmark: nothing was traded"
        f = run.fills[~run.fills["symbol"].astype(str).str.count("-").ge(2)]
        if f.empty:
            return None, "no benchmark: only options were traded"
        notional = (f["qty"].abs() * f["price"]).groupby(f["symbol"]).sum()
        symbol = str(notional.sort_values(ascending=False, kind="stable").index[0])
    store = Store(datasets_root)
    try:
        series = [s for s in store.list(str(dataset))
                  if s.kind is Kind.OHLCV and s.symbol == symbol]
        if not series:
            return None, f"no benchmark: {symbol} candles not found in dataset {dataset!r} " \
                         f"under {store.root}"
        frame = store.read(str(dataset), Kind.OHLCV, symbol, series[0].timeframe)
    except (DataError, OSError) as exc:
        return None, f"no benchmark: {exc}"
    # candles are stamped with their open time, the run's steps with their close time: the
    # benchmark is moved to close times so that both fall on the same days
    opened = pd.DatetimeIndex(frame["ts"])
    step = pd.Timedelta(milliseconds=timeframe_ms(series[0].timeframe)) \
        if series[0].timeframe else pd.Timedelta(0)
    close = pd.Series(frame["close"].to_numpy(dtype="float64"), index=opened + step,
                      name=f"{symbol} buy and hold")
    if len(run.equity):
        close = close[(close.index >= run.equity.index[0]) & (close.index <= run.equity.index[-1])]
    return close, f"benchmark: buy and hold of {symbol} (closes from dataset {dataset!r})"
