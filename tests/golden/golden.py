"""Write and compare golden results (issue 17 item 6).

A result is stored as its frames (Parquet, zstd) and one ``result.json.gz`` (metrics, events,
final state, warnings, the margin-mode comparison). Comparison rules:

* Decimal amounts (strings such as the journal's ``amount`` and ``balance_after``, fills'
  ``*_exact`` columns, events' ``amount``), event kinds, times and symbols: identical;
* float columns and float fields: within ``rtol=1e-12`` and ``atol=1e-9`` (NaN equals NaN);
* order ids: compared after renumbering by rank among the orders that are not liquidations
  (also in the journal's ``order N`` refs), and liquidation fills' ids (0 before liquidations
  became orders of their own) are not compared — nor are the orders whose tag is
  ``liquidation``.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester import BacktestResult

_ORDER_REF = re.compile(r"^order (\d+)$")
FRAMES = ("equity", "positions", "fills", "orders", "journal", "records", "rejections")
RTOL = 1e-12
ATOL = 1e-9
DATA = Path(__file__).resolve().parent / "data"


def _plain(value: Any) -> Any:
    # JSON-ready with non-finite floats kept (as strings JSON can carry)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _doc(result: BacktestResult) -> dict[str, Any]:
    comparison = None if result.comparison is None else _plain(
        result.comparison.to_dict(orient="records"))
    return _plain({"metrics": result.metrics, "events": result.events, "state": result.state,
                   "warnings": result.warnings, "comparison": comparison})


def save(result: BacktestResult, folder: Path) -> None:
    """Write ``result``'s frames and JSON document into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FRAMES:
        frame = getattr(result, name)
        if name in ("equity", "records"):
            frame = frame.reset_index()
        frame = frame.astype({c: "object" for c in frame.columns if frame[c].dtype == object})
        frame.to_parquet(folder / f"{name}.parquet", index=False, compression="zstd",
                         compression_level=19)
    text = json.dumps(_doc(result), sort_keys=True, separators=(",", ":"))
    (folder / "result.json.gz").write_bytes(gzip.compress(text.encode(), mtime=0))


def _id_map(orders: pd.DataFrame) -> dict[int, int]:
    # order id -> its rank among the orders that are not liquidations (ids grow with time, so
    # inserting liquidation orders leaves the ranks of the others unchanged)
    kept = orders[orders["tag"] != "liquidation"] if "tag" in orders else orders
    return {int(v): k + 1 for k, v in enumerate(sorted(kept["order_id"].tolist()))}


def _normalise(name: str, frame: pd.DataFrame, ids: dict[int, int]) -> pd.DataFrame:
    frame = frame.copy()
    if name == "orders" and "tag" in frame:
        frame = frame[frame["tag"] != "liquidation"].reset_index(drop=True)
        frame["order_id"] = [ids[int(v)] for v in frame["order_id"].tolist()]
        if "parent_id" in frame:
            frame["parent_id"] = [None if v is None or v != v else ids.get(int(v), -1)
                                  for v in frame["parent_id"].tolist()]
    elif name == "fills" and "order_id" in frame:
        keep = (frame["liquidity"] != "liquidation").tolist()
        frame["order_id"] = [ids.get(int(v), -1) if k else "liquidation"
                             for v, k in zip(frame["order_id"].tolist(), keep, strict=True)]
    elif name == "rejections" and "order_id" in frame:
        frame["order_id"] = [ids.get(int(v), -1) for v in frame["order_id"].tolist()]
    elif name == "journal" and "ref" in frame:
        # a fill's entries name its order ("order 12"): renumbered like the ids
        frame["ref"] = [_ORDER_REF.sub(lambda m: f"order {ids.get(int(m.group(1)), -1)}", v)
                        if isinstance(v, str) else v for v in frame["ref"].tolist()]
    return frame


def _compare_frame(name: str, got: pd.DataFrame, want: pd.DataFrame, where: str, *,
                   got_ids: dict[int, int], want_ids: dict[int, int]) -> list[str]:
    got, want = _normalise(name, got, got_ids), _normalise(name, want, want_ids)
    problems: list[str] = []
    if list(got.columns) != list(want.columns):
        return [f"{where}: columns {list(got.columns)} != golden {list(want.columns)}"]
    if len(got) != len(want):
        return [f"{where}: {len(got)} rows != golden {len(want)}"]
    for col in want.columns:
        a, b = got[col], want[col]
        if pd.api.types.is_float_dtype(b.dtype) and pd.api.types.is_float_dtype(a.dtype):
            x, y = a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64")
            same = np.isclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True) | (x == y)
            if not same.all():
                k = int(np.flatnonzero(~same)[0])
                problems.append(f"{where}.{col}: row {k} {x[k]!r} != golden {y[k]!r} "
                                f"({int((~same).sum())} rows differ)")
        elif pd.api.types.is_datetime64_any_dtype(b.dtype):
            x = pd.DatetimeIndex(a).as_unit("ms").asi8
            y = pd.DatetimeIndex(b).as_unit("ms").asi8
            if not np.array_equal(x, y):
                k = int(np.flatnonzero(x != y)[0])
                problems.append(f"{where}.{col}: row {k} {a.iloc[k]} != golden {b.iloc[k]}")
        else:
            xs = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v
                  for v in a.tolist()]
            ys = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v
                  for v in b.tolist()]
            if xs != ys:
                k = next(i for i, (u, v) in enumerate(zip(xs, ys, strict=True)) if u != v)
                problems.append(f"{where}.{col}: row {k} {xs[k]!r} != golden {ys[k]!r}")
    return problems


def _compare_value(got: Any, want: Any, where: str, out: list[str]) -> None:
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            out.append(f"{where}: keys {sorted(got)} != golden {sorted(want)}")
            return
        for k in want:
            _compare_value(got[k], want[k], f"{where}.{k}", out)
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            out.append(f"{where}: {len(got)} items != golden {len(want)}")
            return
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            _compare_value(g, w, f"{where}[{k}]", out)
    elif isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        if not math.isclose(got, want, rel_tol=RTOL, abs_tol=ATOL):
            out.append(f"{where}: {got!r} != golden {want!r}")
    elif got != want:
        out.append(f"{where}: {got!r} != golden {want!r}")


def compare(result: BacktestResult, folder: Path) -> list[str]:
    """Return the differences between ``result`` and the golden files in ``folder``."""
    problems: list[str] = []
    got_ids = _id_map(result.orders)
    want_ids = _id_map(pd.read_parquet(folder / "orders.parquet"))
    for name in FRAMES:
        frame = getattr(result, name)
        if name in ("equity", "records"):
            frame = frame.reset_index()
        want = pd.read_parquet(folder / f"{name}.parquet")
        problems += _compare_frame(name, frame, want, f"{folder.name}/{name}", got_ids=got_ids,
                                   want_ids=want_ids)
    golden = json.loads(gzip.decompress((folder / "result.json.gz").read_bytes()))
    doc = json.loads(json.dumps(_doc(result)))
    for key in ("events", "state"):
        for item in (doc[key] if key == "events" else [doc[key]]):
            _drop_order_ids(item)
        for item in (golden[key] if key == "events" else [golden[key]]):
            _drop_order_ids(item)
    _compare_value(doc, golden, f"{folder.name}/result", problems)
    return problems


def _drop_order_ids(item: Any) -> None:
    # order ids in events are compared through the frames (renumbered), not here
    if isinstance(item, dict):
        item.pop("order_id", None)
        for v in item.values():
            _drop_order_ids(v)
    elif isinstance(item, list):
        for v in item:
            _drop_order_ids(v)
