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

__all__ = ["import_markets_file", "import_tiers_file", "infer_precision_mode",
           "write_markets_snapshot"]

#: ccxt's ``precisionMode`` values: ``precision`` fields count decimal places, or are ticks
DECIMAL_PLACES = 2
TICK_SIZE = 4


def write_markets_snapshot(store: Store, exchange: str, markets: Mapping[str, Any], *,
                           precision_mode: int, source: str, now_ms: int | None) -> Path:
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
    payload = {"exchange": exchange, "fetched_at": ms_to_iso(now_ms) if now_ms is not None
               else None, "fetched_at_ms": now_ms,
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


def infer_precision_mode(markets: Mapping[str, Any]) -> int:
    """Tell how the ``precision`` fields of ccxt markets are to be read.

    ccxt writes ``precision.price``/``amount`` as a tick (``TICK_SIZE``, e.g. ``0.0001``) or as
    a number of decimals (``DECIMAL_PLACES``, e.g. ``4``) depending on the exchange class and
    the ccxt version, and a saved ``exchange.markets`` does not say which. A fraction means
    ticks; a zero means decimals (no tick is zero); whole numbers mean decimals when some
    market's minimum amount is below the tick they would otherwise be (Binance's XRP/USDT:USDT
    ``amount: 1`` with ``min: 0.1`` is 1 decimal, a 0.1 lot).

    Raises
    ------
    DataError
        The fields are whole numbers that read both ways: give the mode explicitly.
    """
    values: list[float] = []
    below_lot = False
    for market in markets.values():
        precision = market.get("precision") or {}
        for key in ("price", "amount"):
            v = precision.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                values.append(float(v))
        amount = precision.get("amount")
        low = ((market.get("limits") or {}).get("amount") or {}).get("min")
        if isinstance(amount, int | float) and isinstance(low, int | float) and amount >= 1 \
                and 0 < low < amount:
            below_lot = True
    if any(v != int(v) for v in values):
        return TICK_SIZE
    if any(v == 0 for v in values) or below_lot:
        return DECIMAL_PLACES
    if not values:
        return TICK_SIZE
    msg = ("the markets' precision fields are whole numbers that read both as ticks and as "
           "decimal places; say which with --precision-mode ticks|decimals")
    raise DataError(msg)


def import_markets_file(path: Path | str, *, store: Store, exchange: str,
                        precision_mode: int | None = None,
                        now_ms: int | None = None) -> tuple[Path, int, int]:
    """Import ccxt markets (a saved ``exchange.markets`` or ``fetch_markets()`` result, or a
    store ``markets.json``) as the dataset's ``markets.json``, merged into the one there.

    Returns the file written, the number of markets imported and the precision mode used
    (ccxt's, given or :func:`infer_precision_mode`; a store snapshot carries its own).
    """
    src = Path(path)
    try:
        payload = json.loads(src.read_text())
    except json.JSONDecodeError as exc:
        msg = f"markets file {src} is not valid JSON: {exc}"
        raise DataError(msg) from exc
    if isinstance(payload, dict) and isinstance(payload.get("markets"), dict):
        if precision_mode is None and payload.get("precision_mode") is not None:
            precision_mode = int(payload["precision_mode"])
        payload = payload["markets"]
    if isinstance(payload, list):
        payload = {m.get("symbol"): m for m in payload if isinstance(m, dict)}
    if not isinstance(payload, dict) or not payload or not all(
            isinstance(m, dict) and m.get("symbol") == s and m.get("type")
            for s, m in payload.items()):
        msg = (f"markets file {src}: expected ccxt markets, an object symbol -> market with "
               "'symbol' and 'type' (json.dump(exchange.load_markets()))")
        raise DataError(msg)
    mode = precision_mode if precision_mode is not None else infer_precision_mode(payload)
    if store.has_json(exchange, "markets"):
        old = store.read_json(exchange, "markets")
        old_mode = old.get("precision_mode") if isinstance(old, dict) else None
        if old_mode is not None and int(old_mode) != mode and old.get("markets"):
            msg = (f"{store.root / exchange}/markets.json reads precision fields as ccxt mode "
                   f"{old_mode}, {src.name} as {mode}; import into another dataset or remove "
                   "the old markets.json")
            raise DataError(msg)
    out = write_markets_snapshot(store, exchange, payload, precision_mode=mode,
                                 source=f"file {src.name}", now_ms=now_ms)
    return out, len(payload), mode
