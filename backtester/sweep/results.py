"""A sweep's results: the summary table in grid order (one row per run), written atomically
as Parquet, read back for ``--resume``, and the best runs by the sweep's metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from backtester.sweep.grid import METRICS, SweepSpec

__all__ = ["SweepResult", "read_done", "results_table", "select_best", "write_table"]

_INT_METRICS = ("trades", "liquidations", "margin_calls")


@dataclass(slots=True, kw_only=True)
class SweepResult:
    """A finished (or interrupted) sweep: the results table in grid order and its folder."""

    spec: SweepSpec
    table: pd.DataFrame
    path: Path
    n_run: int
    n_skipped: int
    is_complete: bool
    best_paths: list[Path] = field(default_factory=list)


def results_table(rows: Mapping[int, dict[str, Any]], names: Sequence[str]) -> pd.DataFrame:
    """Return the summary rows ``rows`` (grid index → row) as the results table in grid order,
    one typed column per parameter ``names`` and per metric (``error`` is NA for a success)."""
    cols = ["run", "param_hash", *(f"param_{n}" for n in names), *METRICS, "error",
            "duration_s"]
    df = pd.DataFrame([rows[k] for k in sorted(rows)], columns=cols)
    for m in METRICS:
        if m in _INT_METRICS:
            df[m] = df[m].astype("Int64")
        elif m == "is_wiped_out":
            df[m] = df[m].astype("boolean")
        else:
            df[m] = df[m].astype("float64")
    # missing (NA) = the run succeeded
    df["error"] = df["error"].astype("str")
    df["run"] = df["run"].astype("int64")
    return df.reset_index(drop=True)


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` as Parquet atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def read_done(path: Path) -> dict[str, dict[str, Any]]:
    """Return the rows of an existing ``results.parquet`` by parameter hash (for resume)."""
    if not path.is_file():
        return {}
    df = pd.read_parquet(path)
    out: dict[str, dict[str, Any]] = {}
    for rec in df.to_dict("records"):
        rec = {k: (None if _is_missing(v) else v) for k, v in rec.items()}
        out[str(rec["param_hash"])] = rec
    return out


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def select_best(table: pd.DataFrame, metric: str, *, is_maximize: bool,
                k: int = 1) -> pd.DataFrame:
    """Return the top ``k`` successful rows by ``metric`` (ties keep grid order)."""
    ok = table[table["error"].isna() & table[metric].notna()]
    return ok.sort_values([metric, "run"], ascending=[not is_maximize, True],
                          kind="stable").head(k)
