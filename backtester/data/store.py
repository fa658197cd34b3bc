"""The local market-data store: one Parquet file per (exchange, kind, symbol, timeframe).

Layout (DESIGN §5)::

    <root>/<exchange>/<kind>/<SYMBOL-SLUG>/<timeframe>.parquet
    <root>/<exchange>/funding/<SYMBOL-SLUG>/funding.parquet
    <root>/<exchange>/markets.json, leverage_tiers.json

Writes are atomic: a temp file in the same folder, fsync, footer re-read, ``os.replace``. Every
read validates (:func:`backtester.data.schema.validate_frame`); an unreadable file raises a
:class:`~backtester.errors.DataError` naming it (and can be quarantined).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from backtester.data.schema import (
    CANDLE_KINDS,
    SCHEMA_VERSION,
    Kind,
    find_gaps,
    symbol_from_slug,
    symbol_slug,
    validate_frame,
)
from backtester.errors import DataError
from backtester.timeutil import timeframe_ms

__all__ = ["Quarantined", "Store", "StoredSeries", "atomic_write_bytes", "default_root"]

_META_KEY = b"backtester"
# pyarrow.parquet is imported by the methods that read or write files: every
# ``import backtester`` reaches this module and in-memory runs never touch Parquet (~5 MB)


def default_root() -> Path:
    """Return the datasets folder: ``$BACKTESTER_DATASETS`` or ``./datasets``."""
    return Path(os.environ.get("BACKTESTER_DATASETS", "datasets"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass(frozen=True, slots=True, kw_only=True)
class Quarantined:
    """A file moved aside because it could not be read (``path`` → ``moved_to``)."""

    path: Path
    moved_to: Path
    reason: str

    @property
    def message(self) -> str:
        """One line for the user: what was wrong and what was done."""
        return (f"unreadable Parquet file {self.path} ({self.reason}); moved to {self.moved_to}: "
                "fetch or import the series again")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSeries:
    """One stored file: what it holds and its range."""

    exchange: str
    kind: Kind
    symbol: str
    timeframe: str | None
    path: Path
    rows: int
    first_ms: int | None
    last_ms: int | None


class Store:
    """A folder of Parquet market data.

    Parameters
    ----------
    root
        The datasets folder (default :func:`default_root`).
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    # -- paths ----------------------------------------------------------------------------
    def path(self, exchange: str, kind: Kind | str, symbol: str, timeframe: str | None) -> Path:
        """Return the file path of one series."""
        kind = Kind(kind)
        name = "funding" if kind is Kind.FUNDING else timeframe
        if not name:
            msg = f"{kind} {symbol}: a timeframe is required"
            raise DataError(msg)
        return self.root / exchange / kind.value / symbol_slug(symbol) / f"{name}.parquet"

    def exists(self, exchange: str, kind: Kind | str, symbol: str,
               timeframe: str | None) -> bool:
        """True when the series is stored."""
        return self.path(exchange, kind, symbol, timeframe).exists()

    # -- write ----------------------------------------------------------------------------
    def write(self, exchange: str, kind: Kind | str, symbol: str, timeframe: str | None,
              frame: pd.DataFrame, *, metadata: dict[str, Any] | None = None,
              assume_utc: bool = False) -> Path:
        """Validate ``frame`` and replace the stored series with it atomically."""
        import pyarrow.parquet as pq

        kind = Kind(kind)
        clean = validate_frame(frame, kind, symbol=symbol, timeframe=timeframe,
                               assume_utc=assume_utc)
        path = self.path(exchange, kind, symbol, timeframe)
        table = pa.Table.from_pandas(clean, preserve_index=False)
        meta = {
            "schema_version": SCHEMA_VERSION, "exchange": exchange, "kind": kind.value,
            "symbol": symbol, "timeframe": timeframe, "rows": len(clean),
        }
        meta.update(metadata or {})
        # always describe the data actually written, whatever the caller's metadata said
        meta.update(rows=len(clean), first_ms=_first_ms(clean), last_ms=_last_ms(clean))
        if kind in CANDLE_KINDS and timeframe:
            ts_ms = clean["ts"].dt.as_unit("ms").astype("int64").to_numpy()
            meta["gaps"] = find_gaps(ts_ms, timeframe_ms(timeframe)).as_dict()
        schema_meta = dict(table.schema.metadata or {})
        schema_meta[_META_KEY] = json.dumps(meta, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(schema_meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        try:
            with tmp.open("wb") as fh:
                pq.write_table(table, fh, compression="zstd")
                fh.flush()
                os.fsync(fh.fileno())
            pq.read_metadata(tmp)
            tmp.replace(path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def append(self, exchange: str, kind: Kind | str, symbol: str, timeframe: str | None,
               frame: pd.DataFrame, *, metadata: dict[str, Any] | None = None) -> Path:
        """Merge ``frame`` into the stored series (identical overlaps dropped) and write it."""
        kind = Kind(kind)
        if self.exists(exchange, kind, symbol, timeframe):
            old = self.read(exchange, kind, symbol, timeframe)
            new = validate_frame(frame, kind, symbol=symbol, timeframe=timeframe)
            frame = pd.concat([old, new], ignore_index=True)
            meta = dict(self.metadata(exchange, kind, symbol, timeframe))
            meta.update(metadata or {})
            metadata = meta
        return self.write(exchange, kind, symbol, timeframe, frame, metadata=metadata)

    # -- read -----------------------------------------------------------------------------
    def read(self, exchange: str, kind: Kind | str, symbol: str,
             timeframe: str | None) -> pd.DataFrame:
        """Read and validate one series (``ts`` column, ``datetime64[ms, UTC]``)."""
        import pyarrow.parquet as pq

        kind = Kind(kind)
        path = self.path(exchange, kind, symbol, timeframe)
        if not path.exists():
            msg = f"no {kind} data for {symbol} {timeframe or ''} on {exchange}: {path} not found"
            raise DataError(msg)
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            msg = f"unreadable Parquet file {path}: {exc}"
            raise DataError(msg) from exc
        return validate_frame(table.to_pandas(), kind, symbol=symbol, timeframe=timeframe)

    def metadata(self, exchange: str, kind: Kind | str, symbol: str,
                 timeframe: str | None) -> dict[str, Any]:
        """Return the backtester metadata stored in the file's footer."""
        import pyarrow.parquet as pq

        path = self.path(exchange, kind, symbol, timeframe)
        try:
            meta = pq.read_schema(path).metadata or {}
        except (pa.ArrowInvalid, OSError) as exc:
            msg = f"unreadable Parquet file {path}: {exc}"
            raise DataError(msg) from exc
        raw = meta.get(_META_KEY)
        return dict(json.loads(raw)) if raw else {}

    def update_metadata(self, exchange: str, kind: Kind | str, symbol: str,
                        timeframe: str | None, metadata: dict[str, Any]) -> Path:
        """Merge ``metadata`` into a stored series' footer (rewrites the file atomically)."""
        meta = dict(self.metadata(exchange, kind, symbol, timeframe))
        meta.update(metadata)
        frame = self.read(exchange, kind, symbol, timeframe)
        return self.write(exchange, kind, symbol, timeframe, frame, metadata=meta)

    def scan(self, exchange: str | None = None) -> list[Quarantined]:
        """Quarantine every unreadable Parquet file (truncated, not Parquet) and stale temp files.

        Run at start-up (fetch, data commands, dataset loading) so one bad file never aborts
        every read. Returns what was moved; temp files left by a killed writer are deleted.
        """
        import pyarrow.parquet as pq

        roots = [self.root / exchange] if exchange else [self.root]
        moved: list[Quarantined] = []
        for root in roots:
            if not root.is_dir():
                continue
            for tmp in sorted(root.rglob(".*.parquet.tmp-*")):
                tmp.unlink(missing_ok=True)
            for path in sorted(root.rglob("*.parquet")):
                try:
                    pq.read_metadata(path)
                except (pa.ArrowInvalid, OSError) as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    moved.append(Quarantined(path=path, moved_to=self.quarantine(path),
                                             reason=reason))
        return moved

    def quarantine(self, path: Path) -> Path:
        """Move an unreadable file aside (``<name>.corrupt``) and return its new path."""
        target = path.with_name(path.name + ".corrupt")
        n = 1
        while target.exists():  # keep earlier quarantined copies
            target = path.with_name(f"{path.name}.corrupt-{n}")
            n += 1
        path.replace(target)
        return target

    def list(self, exchange: str | None = None) -> list[StoredSeries]:
        """List stored series (optionally of one exchange), sorted by path."""
        import pyarrow.parquet as pq

        out: list[StoredSeries] = []
        roots = [self.root / exchange] if exchange else sorted(
            p for p in self.root.glob("*") if p.is_dir())
        for ex_root in roots:
            for path in sorted(ex_root.glob("*/*/*.parquet")):
                kind_name = path.parent.parent.name
                try:
                    kind = Kind(kind_name)
                except ValueError:
                    continue
                symbol = symbol_from_slug(path.parent.name)
                tf = None if kind is Kind.FUNDING else path.stem
                try:
                    md = pq.read_metadata(path)
                    raw = (md.metadata or {}).get(_META_KEY)
                    meta = json.loads(raw) if raw else {}
                    rows = md.num_rows
                except (pa.ArrowInvalid, OSError):
                    meta, rows = {}, -1
                out.append(StoredSeries(exchange=ex_root.name, kind=kind,
                                        symbol=meta.get("symbol", symbol), timeframe=tf,
                                        path=path, rows=rows, first_ms=meta.get("first_ms"),
                                        last_ms=meta.get("last_ms")))
        return out

    # -- catalog --------------------------------------------------------------------------
    def write_json(self, exchange: str, name: str, payload: Any) -> Path:
        """Write ``<exchange>/<name>.json`` atomically (markets, leverage tiers, manifests)."""
        path = self.root / exchange / f"{name}.json"
        atomic_write_bytes(path, json.dumps(payload, indent=1, sort_keys=True,
                                            default=str).encode())
        return path

    def has_json(self, exchange: str, name: str) -> bool:
        """True when ``<exchange>/<name>.json`` exists."""
        return (self.root / exchange / f"{name}.json").exists()

    def read_json(self, exchange: str, name: str) -> Any:
        """Read ``<exchange>/<name>.json`` or raise a DataError naming it."""
        path = self.root / exchange / f"{name}.json"
        if not path.exists():
            msg = f"{path} not found"
            raise DataError(msg)
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            msg = f"{path} is not valid JSON: {exc}"
            raise DataError(msg) from exc


def _first_ms(clean: pd.DataFrame) -> int | None:
    return int(clean["ts"].iloc[0].value // 10**6) if len(clean) else None


def _last_ms(clean: pd.DataFrame) -> int | None:
    return int(clean["ts"].iloc[-1].value // 10**6) if len(clean) else None
