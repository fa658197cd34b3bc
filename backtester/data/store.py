"""The local market-data store: one Parquet file per (exchange, kind, symbol, timeframe).

Layout (DESIGN §5)::

    <root>/<exchange>/<kind>/<SYMBOL-SLUG>/<timeframe>.parquet
    <root>/<exchange>/funding/<SYMBOL-SLUG>/funding.parquet
    <root>/<exchange>/markets.json, leverage_tiers.json

Writes are atomic: a temp file in the same folder, fsync, footer re-read, ``os.replace``. Every
read validates (:func:`backtester.data.schema.validate_frame`); an unreadable file raises a
:class:`~backtester.errors.DataError` naming it (and can be quarantined).

Concurrent writers: each series has an advisory lock file beside it (``.<name>.parquet.lock``,
taken with the ``filelock`` package). A write, an append (read, merge, write) and a whole
download of a series (:func:`backtester.data.paging.download_series`) hold it, so two processes
writing one series take turns and neither loses the other's rows. A scan deletes a writer's
temp file only when that series' lock is free (the writer died); it never touches files outside
the store's layout (``<exchange>/<kind>/<SYMBOL-SLUG>/<timeframe|funding>.parquet``).

Names from the user (exchange, symbol, timeframe) are checked before they become paths: an
exchange is one plain folder name (:func:`backtester.paths.safe_component`), a symbol follows
the ccxt grammar (:func:`backtester.data.schema.check_symbol`), a timeframe is a ccxt timeframe.

Test hook: with ``BACKTESTER_TEST_PAUSE_BEFORE_RENAME`` naming a folder, every series write
creates ``<folder>/paused`` after its temp file is complete and waits (at most 10 minutes) for
``<folder>/release`` before the rename, so tests can interleave two writer processes
deterministically. Never set it outside tests.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from filelock import FileLock, Timeout

from backtester.data.schema import (
    CANDLE_KINDS,
    SCHEMA_VERSION,
    Kind,
    check_symbol,
    find_gaps,
    symbol_from_slug,
    symbol_slug,
    validate_frame,
)
from backtester.errors import ConfigError, DataError
from backtester.paths import safe_component
from backtester.timeutil import timeframe_ms

__all__ = ["Quarantined", "Store", "StoredSeries", "atomic_write_bytes", "default_root"]

_META_KEY = b"backtester"
#: The test hook of the module docstring (a folder path).
PAUSE_ENV = "BACKTESTER_TEST_PAUSE_BEFORE_RENAME"
_PAUSE_LIMIT_S = 600.0
# the file names the store writes: series files, and their temp files while being written
_SERIES_NAME = re.compile(r"^(?:funding|[0-9]+[smhdwMy])\.parquet$")
_TEMP_NAME = re.compile(r"^\.(?P<name>(?:funding|[0-9]+[smhdwMy])\.parquet)\.tmp-[0-9a-f]{32}$")
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
    def exchange_dir(self, exchange: str) -> Path:
        """Return ``<root>/<exchange>`` after checking ``exchange`` is one plain folder name."""
        return self.root / safe_component(exchange, field="exchange")

    def path(self, exchange: str, kind: Kind | str, symbol: str, timeframe: str | None) -> Path:
        """Return the file path of one series (names checked: see the module docstring)."""
        kind = Kind(kind)
        name = "funding" if kind is Kind.FUNDING else timeframe
        if not name:
            msg = f"{kind} {symbol}: a timeframe is required"
            raise DataError(msg)
        if kind is not Kind.FUNDING:
            try:
                timeframe_ms(name)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        slug = symbol_slug(check_symbol(symbol))
        return self.exchange_dir(exchange) / kind.value / slug / f"{name}.parquet"

    # -- locking --------------------------------------------------------------------------
    @staticmethod
    def _lock_for(path: Path) -> FileLock:
        # one FileLock object per file in a process (is_singleton), so nested holds (a download
        # holding the series while its appends take it again) count up instead of deadlocking
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(path.with_name(f".{path.name}.lock"), is_singleton=True)

    @contextmanager
    def series_lock(self, exchange: str, kind: Kind | str, symbol: str, timeframe: str | None,
                    *, on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
        """Hold the advisory lock of one series (yields its path); other writers wait.

        ``on_wait(message)`` is called once when another process holds the lock, before
        waiting for it (e.g. to tell the user why a fetch pauses).
        """
        path = self.path(exchange, kind, symbol, timeframe)
        lock = self._lock_for(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait is not None:
                on_wait(f"waiting for another process writing {path} (lock {lock.lock_file})")
            lock.acquire()
        try:
            yield path
        finally:
            lock.release()

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
        with self.series_lock(exchange, kind, symbol, timeframe):
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
            try:
                with tmp.open("wb") as fh:
                    pq.write_table(table, fh, compression="zstd")
                    fh.flush()
                    os.fsync(fh.fileno())
                pq.read_metadata(tmp)
                _pause_for_tests()
                tmp.replace(path)
            finally:
                if tmp.exists():
                    tmp.unlink()
        return path

    def append(self, exchange: str, kind: Kind | str, symbol: str, timeframe: str | None,
               frame: pd.DataFrame, *, metadata: dict[str, Any] | None = None) -> Path:
        """Merge ``frame`` into the stored series (identical overlaps dropped) and write it.

        The read, merge and write happen under the series lock: rows another process stored
        meanwhile are kept.
        """
        kind = Kind(kind)
        with self.series_lock(exchange, kind, symbol, timeframe):
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
        with self.series_lock(exchange, kind, symbol, timeframe):
            meta = dict(self.metadata(exchange, kind, symbol, timeframe))
            meta.update(metadata)
            frame = self.read(exchange, kind, symbol, timeframe)
            return self.write(exchange, kind, symbol, timeframe, frame, metadata=meta)

    def _series_dirs(self, exchange: str | None) -> Iterator[Path]:
        # the folders of the store's layout <exchange>/<kind>/<slug>/: nothing else is scanned
        roots = [self.exchange_dir(exchange)] if exchange else sorted(
            p for p in self.root.glob("*") if p.is_dir() and not p.name.startswith("."))
        kinds = {k.value for k in Kind}
        for ex_root in roots:
            if not ex_root.is_dir():
                continue
            for kind_dir in sorted(ex_root.iterdir()):
                if kind_dir.name in kinds and kind_dir.is_dir():
                    yield from sorted(p for p in kind_dir.iterdir() if p.is_dir())

    def scan(self, exchange: str | None = None) -> list[Quarantined]:
        """Quarantine unreadable series files (truncated, not Parquet); delete stale temp files.

        Run at start-up (fetch, data commands, dataset loading) so one bad file never aborts
        every read. Returns what was moved. Only files of the store's layout are looked at; a
        temp file is deleted only when its series lock is free (its writer died), never while
        another process is writing it.
        """
        import pyarrow.parquet as pq

        moved: list[Quarantined] = []
        for folder in self._series_dirs(exchange):
            for tmp in sorted(folder.glob(".*.parquet.tmp-*")):
                m = _TEMP_NAME.match(tmp.name)
                if m is not None:
                    _delete_if_stale(tmp, folder / m.group("name"))
            for path in sorted(folder.glob("*.parquet")):
                if _SERIES_NAME.match(path.name) is None:
                    continue
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
        roots = [self.exchange_dir(exchange)] if exchange else sorted(
            p for p in self.root.glob("*") if p.is_dir())
        for ex_root in roots:
            for path in sorted(ex_root.glob("*/*/*.parquet")):
                kind_name = path.parent.parent.name
                try:
                    kind = Kind(kind_name)
                except ValueError:
                    continue
                if _SERIES_NAME.match(path.name) is None:
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
        path = self.exchange_dir(exchange) / f"{name}.json"
        atomic_write_bytes(path, json.dumps(payload, indent=1, sort_keys=True,
                                            default=str).encode())
        return path

    def has_json(self, exchange: str, name: str) -> bool:
        """True when ``<exchange>/<name>.json`` exists."""
        return (self.exchange_dir(exchange) / f"{name}.json").exists()

    def read_json(self, exchange: str, name: str) -> Any:
        """Read ``<exchange>/<name>.json`` or raise a DataError naming it."""
        path = self.exchange_dir(exchange) / f"{name}.json"
        if not path.exists():
            msg = f"{path} not found"
            raise DataError(msg)
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            msg = f"{path} is not valid JSON: {exc}"
            raise DataError(msg) from exc


def _delete_if_stale(tmp: Path, series_file: Path) -> None:
    lock = Store._lock_for(series_file)
    if lock.is_locked:  # this process is writing the series
        return
    try:
        lock.acquire(timeout=0)
    except Timeout:  # another process is writing it: its temp file is not ours to delete
        return
    try:
        tmp.unlink(missing_ok=True)
    finally:
        lock.release()


def _pause_for_tests() -> None:
    folder = os.environ.get(PAUSE_ENV)
    if not folder:
        return
    Path(folder, "paused").touch()
    release = Path(folder, "release")
    deadline = time.monotonic() + _PAUSE_LIMIT_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _first_ms(clean: pd.DataFrame) -> int | None:
    return int(clean["ts"].iloc[0].value // 10**6) if len(clean) else None


def _last_ms(clean: pd.DataFrame) -> int | None:
    return int(clean["ts"].iloc[-1].value // 10**6) if len(clean) else None
