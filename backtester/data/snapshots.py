"""The per-exchange JSON snapshots of the store: ``markets.json`` and ``leverage_tiers.json``.

Both carry the time they were taken (``fetched_at`` / ``imported_at``, ISO UTC and int ms) and
their source. No ccxt import here: the payloads are ccxt's unified dicts as plain JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backtester.data.store import Store
from backtester.errors import DataError
from backtester.timeutil import ms_to_iso

__all__ = ["import_tiers_file", "write_markets_snapshot"]


def write_markets_snapshot(store: Store, exchange: str, markets: Mapping[str, Any], *,
                           precision_mode: int, source: str, now_ms: int) -> Path:
    """Write ``markets.json``: ccxt unified markets by symbol, merged into the previous snapshot.

    Instruments that have expired since the last snapshot are kept (point-in-time catalog);
    symbols without ``/`` (Deribit combos) are dropped. ``precision_mode`` is ccxt's
    ``exchange.precisionMode`` (how ``precision`` fields are to be read).
    """
    old: dict[str, Any] = {}
    if store.has_json(exchange, "markets"):
        previous = store.read_json(exchange, "markets")
        old = dict(previous.get("markets", {})) if isinstance(previous, dict) else {}
    current = {s: m for s, m in markets.items() if "/" in s}
    payload = {"exchange": exchange, "fetched_at": ms_to_iso(now_ms), "fetched_at_ms": now_ms,
               "source": source, "precision_mode": precision_mode,
               "markets": {**old, **current}}
    return store.write_json(exchange, "markets", payload)


def import_tiers_file(path: Path | str, *, store: Store, exchange: str,
                      now_ms: int | None = None) -> Path:
    """Import a leverage-tier file (ccxt unified ``{symbol: [tier, ...]}``) as leverage_tiers.json.

    The file is checked to be a JSON object of symbol → list of tiers with ``minNotional``,
    ``maxNotional`` and ``maintenanceMarginRate`` (or a ``leverage_tiers.json`` of another
    dataset); e.g. freqtrade's ``binance_leverage_tiers.json``. The numbers are checked when a
    run reads them (an error names the dataset file, the symbol and the field).
    """
    src = Path(path)
    try:
        tiers = json.loads(src.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"tiers file {src} is not valid JSON: {exc}"
        raise DataError(msg) from exc
    except OSError as exc:
        msg = f"tiers file {src}: cannot read ({exc.strerror or exc})"
        raise DataError(msg) from exc
    if isinstance(tiers, dict) and isinstance(tiers.get("tiers"), dict):
        tiers = tiers["tiers"]
    if not isinstance(tiers, dict) or not tiers:
        msg = f"tiers file {src}: expected a JSON object symbol -> list of tiers"
        raise DataError(msg)
    for symbol, rows in tiers.items():
        if not isinstance(rows, list) or not all(
                isinstance(t, dict) and "minNotional" in t and "maxNotional" in t
                and "maintenanceMarginRate" in t for t in rows) or not rows:
            msg = (f"tiers file {src}: {symbol} needs a list of tiers with minNotional, "
                   "maxNotional and maintenanceMarginRate (ccxt fetch_leverage_tiers layout)")
            raise DataError(msg)
    payload = {"exchange": exchange, "source": f"file {src.name}", "imported_at_ms": now_ms,
               "imported_at": ms_to_iso(now_ms) if now_ms is not None else None,
               "tiers": tiers}
    return store.write_json(exchange, "leverage_tiers", payload)
