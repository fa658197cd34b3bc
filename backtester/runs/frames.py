"""The result frames of a run, built from the engine's records (internal).

Column by column from the engine's compact records (no row dicts, no Timestamp objects, numbers
as numpy arrays, strings through pyarrow when pandas stores them there): the frames are the
ones pandas builds from one dict per row, dtypes included, at a fraction of the time and
memory. :func:`backtester.runs.runner._collect` assembles them into a
:class:`~backtester.runs.results.BacktestResult`.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtester.accounting import EntryKind
from backtester.orders import ORDER_FIELDS, OrderRecord

if TYPE_CHECKING:
    from backtester.engine import Engine

__all__ = ["fills_frame", "journal_frame", "orders_frame", "position_greeks", "positions_frame",
           "symbol_ids", "traded_notional", "utc"]

_FILL_COLUMNS = ["ts", "step_ts", "path_time", "order_id", "symbol", "qty", "price", "fee",
                 "fee_asset", "liquidity", "realized_pnl", "tag", "is_ambiguous", "qty_exact",
                 "price_exact", "fee_exact"]
_JOURNAL_COLUMNS = ["seq", "ts", "kind", "asset", "amount", "balance_after", "symbol", "ref",
                    "ledger"]
_KIND_TEXT = {k: k.value for k in EntryKind}
_PER_MS = {"ms": 1, "us": 1_000, "ns": 1_000_000}
_STR_DTYPE = pd.Series(["x"]).dtype  # what pandas infers for a list of strings


def utc(ms: Any) -> pd.DatetimeIndex:
    """Return epoch milliseconds as UTC times, as ``pd.to_datetime(ms, unit="ms", utc=True)``.

    The same values and resolution (read off one converted value), built by one
    multiplication instead of the general conversion (~10x faster on a million stamps).
    """
    ms = np.asarray(ms, dtype="int64")
    ref = pd.to_datetime(ms[:1], unit="ms", utc=True)
    unit = getattr(ref.dtype, "unit", None)
    if len(ms) < 2 or unit not in _PER_MS or int(np.abs(ms).max()) > 2**63 // 10**6:
        return pd.to_datetime(ms, unit="ms", utc=True)
    values = (ms * _PER_MS[unit]).view(f"datetime64[{unit}]")
    return pd.DatetimeIndex(values, dtype=ref.dtype)


def _pool() -> Any:
    # pyarrow's system allocator (malloc) for the columns built here: they then reuse the
    # memory the run's temporaries freed instead of growing pyarrow's own pool (mimalloc
    # reserves and keeps its own pages; ~15 MB more RSS on W1)
    import pyarrow as pa

    return pa.system_memory_pool()


def _str_column(values: list[Any]) -> Any:
    # a column of Python strings as pandas infers it; pyarrow-backed strings are built by
    # pyarrow directly (any None or non-string leaves the inference to pandas)
    dtype = _STR_DTYPE
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        import pyarrow as pa

        try:
            arr = pa.array(values, type=pa.large_string(), memory_pool=_pool())
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            return values
        if arr.null_count == 0:
            return pd.array(arr, dtype=dtype)
    return values


def fills_frame(fills: list[Any]) -> pd.DataFrame:
    """Return the ``fills`` frame: one row per :class:`~backtester.orders.Fill`.

    ``qty`` (signed contracts), ``price``, ``fee`` (positive = paid, in ``fee_asset``) and
    ``realized_pnl`` as floats, with their exact Decimal text in ``*_exact``; ``ts`` (UTC) is
    when the fill happened (its bar's open; the close for fills at the close), ``step_ts`` the
    clock step that processed it, ``path_time`` its place on the bar's path (0 open .. 3 close;
    NaN for liquidations).
    """
    if not fills:
        return pd.DataFrame([], columns=_FILL_COLUMNS)
    # one pass over the fills (their fields as columns), then one conversion per column
    (ts, step, path, order_id, symbol, qty, price, fee, fee_asset, liquidity, pnl, tag,
     ambiguous) = (list(c) for c in zip(*[
         (f.ts_ms, f.ts_ms if f.step_ms is None else f.step_ms, f.path_time, f.order_id,
          f.symbol, f.qty, f.price, f.fee, f.fee_asset, f.liquidity, f.realized_pnl, f.tag,
          f.is_ambiguous) for f in fills], strict=True))
    text = _str_column
    return pd.DataFrame({
        "ts": utc(ts), "step_ts": utc(step),
        "path_time": np.asarray(path, dtype="float64"), "order_id": _ints(order_id),
        "symbol": text(symbol),
        "qty": _floats(qty), "price": _floats(price), "fee": _floats(fee),
        "fee_asset": text(fee_asset), "liquidity": text(liquidity),
        "realized_pnl": _floats(pnl), "tag": text(tag), "is_ambiguous": ambiguous,
        "qty_exact": text(list(map(str, qty))), "price_exact": text(list(map(str, price))),
        "fee_exact": text(list(map(str, fee)))}, columns=_FILL_COLUMNS)


def _floats(values: list[Any]) -> np.ndarray:
    # float(x) of each value (Decimals), as float64
    return np.fromiter(map(float, values), dtype="float64", count=len(values))


def _ints(values: list[int]) -> Any:
    # Python ints as int64 where they fit (what pandas infers), else left to pandas
    try:
        return np.fromiter(values, dtype="int64", count=len(values))
    except (OverflowError, TypeError):
        return values


def journal_frame(entries: list[Any]) -> pd.DataFrame:
    """Return the ``journal`` frame: one row per booked entry, amounts as exact Decimal text
    (``amount`` signed, positive = credit; ``balance_after`` of ``asset`` in ``ledger``)."""
    if not entries:
        return pd.DataFrame([], columns=_JOURNAL_COLUMNS)
    kind = _KIND_TEXT
    seq, ts, kinds, asset, amount, balance, symbol, ref, ledger = (list(c) for c in zip(*[
        (e.seq, e.ts_ms, kind[e.kind], e.asset, str(e.amount), str(e.balance_after), e.symbol,
         e.ref, e.ledger) for e in entries], strict=True))
    text = _str_column
    return pd.DataFrame({
        "seq": _ints(seq), "ts": utc(ts), "kind": text(kinds), "asset": text(asset),
        "amount": text(amount), "balance_after": text(balance), "symbol": text(symbol),
        "ref": text(ref), "ledger": text(ledger)}, columns=_JOURNAL_COLUMNS)


def orders_frame(log: list[OrderRecord]) -> pd.DataFrame:
    """Return the ``orders`` frame from the engine's order log (one record per order): the
    columns of :data:`backtester.orders.ORDER_FIELDS`, then ``status`` and ``closed_ms``.

    ``status`` is the readable :attr:`~backtester.orders.OrderRecord.status_text`: the
    :class:`~backtester.orders.OrderStatus` value, then the reason after a colon for cancelled
    and rejected orders (``cancelled: oco``, ``rejected: below_min_qty``).
    """
    if not log:
        orders = pd.DataFrame()
        orders["status"] = pd.Series(dtype="str")
        return orders
    cols = {k: _str_column([get(rec.order) for rec in log]) for k, get in ORDER_FIELDS}
    cols["status"] = _str_column([rec.status_text for rec in log])
    cols["closed_ms"] = _str_column([rec.closed_ms for rec in log])
    return pd.DataFrame(cols, columns=list(cols))


def traded_notional(engine: Engine, fills: pd.DataFrame) -> float:
    """Return the traded notional of ``fills`` in USD.

    Futures at the fill price (inverse: their USD face, ``|qty| * cs``); options at their
    premium value in USD (settle currency at its final USD price).
    """
    # summed fill by fill in order as a running float total (add.accumulate is sequential,
    # unlike sum), the same number as a Python loop
    if not len(fills):
        return 0.0
    insts = engine.instruments
    k = np.fromiter(map(engine.symbol_code.__getitem__, fills["symbol"].tolist()), dtype="int64",
                    count=len(fills))
    cs = np.asarray([inst.cs for inst in insts], dtype="float64")[k]
    by_price = np.asarray([inst.is_linear or inst.is_option for inst in insts], dtype=bool)[k]
    is_option = np.asarray([inst.is_option for inst in insts], dtype=bool)[k]
    usd = np.asarray([engine.margin.price_usd(inst.settle) if inst.is_option else 1.0
                      for inst in insts], dtype="float64")[k]
    value = np.abs(fills["qty"].to_numpy(dtype="float64")) * cs
    value = np.where(by_price, value * fills["price"].to_numpy(dtype="float64"), value)
    value = np.where(is_option, value * usd, value)
    return float(np.add.accumulate(value)[-1])


def symbol_ids(engine: Engine) -> np.ndarray:
    """Return the index (in the sorted symbols of the feed) of each recorded position row."""
    # the engine records the codes themselves
    return np.asarray(engine.pos_rec["symbol"], dtype="int64")


def _symbol_column(syms: list[str], ids: np.ndarray) -> Any:
    # the column pandas infers from the list of names; when that is pyarrow-backed strings it
    # is built from the symbol ids (one take) instead of from a million Python strings
    dtype = _STR_DTYPE
    if syms and isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        pool = _pool()
        taken = pc.take(pa.array(syms, type=pa.large_string(), memory_pool=pool),
                        pa.array(ids, memory_pool=pool), memory_pool=pool)
        return pd.array(taken, dtype=dtype)
    return [syms[k] for k in ids.tolist()]


def positions_frame(engine: Engine, ids: np.ndarray,
                    equity: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return the ``positions`` frame (one row per held position per step, with greeks);
    ``ids`` are the rows' :func:`symbol_ids`. Numeric columns view the engine's records.

    ``equity`` (the result's equity frame, one row per step) lets a book that holds one
    position at every step of a stretch share that stretch's times and the columns that equal
    the account's (:func:`shared_account_columns`) instead of storing them twice; with it,
    the rows' columns are also stored once each (:func:`compact_columns`), and the finished
    engine's records they replace are released. Shared columns are copy-on-write views:
    writing to one frame or column never changes another.
    """
    pr = engine.pos_rec
    n = len(pr["ts"])
    # compact arrays become numpy columns (views); empty series stay lists (as before)
    cols: dict[str, Any] = {k: np.asarray(v) if len(v) and not isinstance(v, list) else list(v)
                            for k, v in pr.items()}
    cols.update(position_greeks(engine, ids))
    if n and equity is None and np.shares_memory(cols["delta"], cols["qty"]):
        # no compaction below to make the two columns copy-on-write views: a copy
        cols["delta"] = cols["qty"].copy()
    if n:
        k0, shared = shared_account_columns(engine, equity) if equity is not None else (None, {})
        if k0 is not None and equity is not None:
            cols["ts"] = pd.DatetimeIndex(equity.index[k0:k0 + n])  # the same times, once
            _release(pr, "ts")
            for row_key, acct_key in shared.items():
                cols[row_key] = equity[acct_key].iloc[k0:k0 + n].reset_index(drop=True)
                _release(pr, row_key)
        else:
            cols["ts"] = utc(pr["ts"])
        if equity is not None:
            compact_columns(cols, pr)
            trim_heap()
        # built last: it takes the memory the released records gave back
        cols["symbol"] = _symbol_column(engine.symbols, ids)
    positions = pd.DataFrame(cols, copy=False)
    if not n:
        positions["ts"] = utc(pr["ts"])
    return positions


def shared_account_columns(engine: Engine,
                           equity: pd.DataFrame) -> tuple[int | None, dict[str, str]]:
    """Find the position rows' columns that equal the account's; return the first step and them.

    When the position rows are one per step over a run of consecutive steps (one position
    held throughout, the common single-instrument book), a row's unrealized PnL and notional
    are bit for bit the account's unrealized PnL and gross exposure of that step for linear
    contracts. Returns the first step of the run and ``{row column: equity column}`` for the
    columns equal bit for bit, or ``(None, {})`` when the rows are not one per step.
    """
    pr = engine.pos_rec
    n = len(pr["ts"])
    steps = np.asarray(engine.rec["ts"], dtype="int64")
    rows = np.asarray(pr["ts"], dtype="int64")
    if not n or n > len(steps) or len(equity) != len(steps):
        return None, {}
    k0 = int(np.searchsorted(steps, rows[0]))
    if k0 + n > len(steps) or not np.array_equal(rows, steps[k0:k0 + n]):
        return None, {}
    shared = {}
    for row_key, acct_key in (("unrealized_pnl", "unrealized_pnl"),
                              ("notional", "gross_exposure")):
        mine = np.asarray(pr[row_key], dtype="float64")
        theirs = equity[acct_key].to_numpy(dtype="float64")[k0:k0 + n]
        if np.array_equal(mine.view("int64"), theirs.view("int64")):  # bit for bit
            shared[row_key] = acct_key
    return k0, shared


def compact_columns(cols: dict[str, Any], store: dict[str, Any],
                    index: pd.Index | None = None) -> None:
    """Store each float64 column of ``cols`` once, in place; release what it replaces.

    A column equal bit for bit to an earlier one (``-0.0`` is not ``0.0`` here; all-zero
    columns are the common case) becomes a copy-on-write view of it (a pandas Series on
    ``index``), so a write to either column of the finished frame copies first and never
    changes the other. The entry of the same name in ``store`` (a finished engine's records,
    read no more) is released. Columns that are not one-dimensional float64 numpy arrays are
    left as they are.
    """
    kept: list[tuple[str, np.ndarray]] = []
    series: dict[str, pd.Series] = {}
    for key, v in list(cols.items()):
        if not isinstance(v, np.ndarray) or v.dtype != np.float64 or v.ndim != 1 or not len(v):
            continue
        bits = v.view("int64")
        for other, w in kept:
            wb = w.view("int64")
            if w is v or (len(w) == len(v) and wb[0] == bits[0] and wb[-1] == bits[-1]
                          and np.array_equal(wb, bits)):
                base = series.get(other)
                if base is None:
                    base = series[other] = pd.Series(w, index=index, copy=False)
                    cols[other] = base
                cols[key] = base.copy(deep=False)
                _release(store, key)
                break
        else:
            kept.append((key, v))


def trim_heap() -> None:
    """Return the C heap's free pages to the operating system (glibc's ``malloc_trim``).

    Memory freed in the middle of the heap (a released record, a temporary) otherwise stays
    in the process's resident set; a no-op where the C library is not glibc. Takes about a
    millisecond on a W1-sized heap.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        try:
            import ctypes
            import ctypes.util
            import platform

            if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
                _MALLOC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


def _release(store: dict[str, Any], key: str) -> None:
    # drop a finished engine's record (an empty one of the same kind takes its place)
    v = store.get(key)
    if v is None:
        return
    store[key] = array(v.typecode) if isinstance(v, array) else [] if isinstance(
        v, list) else np.zeros(0)


def position_greeks(engine: Engine, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-position greeks for the positions frame, in exchange conventions: ``delta``
    (coins: N(d1) x size for options, the size in coins for futures), ``gamma`` (per USD),
    ``vega`` (USD per vol point) and ``theta`` (USD per day); 0 for futures except delta.
    Options are valued with Black-76 at their bar's implied vol and their own forward
    (``SymbolFeed.fc``: the option's ``underlying_price``, else the index)."""
    pr = engine.pos_rec
    n = len(pr["ts"])
    out = {k: np.zeros(n) for k in ("delta", "gamma", "vega", "theta")}
    if not n:
        return out
    ts = np.asarray(pr["ts"], dtype="int64")
    qty = np.asarray(pr["qty"], dtype="float64")
    mark = np.asarray(pr["mark"], dtype="float64")
    syms, insts = engine.symbols, engine.instruments
    counts = np.bincount(ids, minlength=len(syms))
    held = [k for k in range(len(syms)) if counts[k]]
    if not any(insts[k].is_option for k in held):
        # futures only: delta is the size in coins (contracts x size, over the mark when
        # inverse), row by row as per symbol
        cs = np.asarray([inst.cs for inst in insts], dtype="float64")
        one = len(set(cs.tolist())) == 1
        # contract size 1: the size is the quantity itself (x * 1.0 == x); the frame stores
        # the two columns once (compact_columns)
        size = qty if one and cs[0] == 1.0 else qty * (cs[0] if one else cs[ids])
        linear = np.asarray([inst.is_linear for inst in insts], dtype=bool)
        if linear[held].all():
            out["delta"] = size
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                out["delta"] = np.where(linear[ids], size, size / mark)
        return out
    for k in held:
        f = engine.feed.symbols[syms[k]]
        inst = f.instrument
        sel: Any = slice(None) if counts[k] == n else ids == k
        size = qty[sel] * inst.cs
        if not inst.is_option:
            out["delta"][sel] = size if inst.is_linear else size / mark[sel]
            continue
        _option_greeks(f, ts[sel], size, out, sel)
    return out


def _option_greeks(f: Any, ts: np.ndarray, size: np.ndarray, out: dict[str, np.ndarray],
                   sel: Any) -> None:
    from backtester.pricing import black76

    inst = f.instrument
    # the bar that closed at each recorded step
    i = np.clip(f.bar_at(ts), 0, f.n - 1)
    iv = np.asarray(f.option_iv if f.option_iv is not None else [np.nan] * f.n,
                    dtype="float64")[i]
    fwd = f.arrays["forward_close"][i]
    t = np.maximum((inst.expiry_ms or 0) - ts, 0) / (365.0 * 86_400_000)
    call = inst.option_type is not None and inst.option_type.value == "call"
    k = float(inst.strike or 0.0)
    ok = np.isfinite(iv) & (iv >= 0)
    for name, fn in (("delta", black76.delta), ("gamma", black76.gamma),
                     ("vega", black76.vega), ("theta", black76.theta)):
        vals = np.full(len(ts), np.nan)
        if ok.any():
            vals[ok] = np.asarray(fn(fwd[ok], k, t[ok], iv[ok], call)) * size[ok]
        out[name][sel] = vals
