"""Preparing and running one backtest: data, feed, profile, engine, results (internal).

``backtester.run`` (in :mod:`backtester.api`) is the public entry point; the functions here are
the steps it and the capital-efficiency re-runs share.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester.accounting import EntryKind
from backtester.config import MarginMode, RunConfig, load_config
from backtester.data.feed import Feed, MarketFrames
from backtester.engine import Engine
from backtester.errors import ConfigError
from backtester.instruments import Instrument, instrument_from_symbol
from backtester.margin.profiles_engine import engine_profile
from backtester.results import BacktestResult, compute_metrics
from backtester.strategy import Strategy
from backtester.timeutil import ms_to_iso

__all__ = ["PreparedRun", "load_strategy", "prepare", "run_prepared"]

_DISTANCE_BLOCK = 32_768  # bars per block of the distance-to-liquidation search


def load_strategy(spec: str | type[Strategy]) -> type[Strategy]:
    """Resolve ``path/to/file.py[:Class]`` or ``package.module:Class`` to a Strategy class.

    Running a strategy file runs arbitrary Python: load only files you trust.
    """
    if isinstance(spec, type):
        if not issubclass(spec, Strategy):
            msg = f"{spec.__name__} is not a backtester.Strategy subclass"
            raise ConfigError(msg)
        return spec
    target, _, cls_name = spec.partition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            msg = f"strategy file {path} not found"
            raise ConfigError(msg)
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
        mod_name = f"_backtester_strategy_{digest}"
        spec_obj = importlib.util.spec_from_file_location(mod_name, path)
        if spec_obj is None or spec_obj.loader is None:
            msg = f"cannot load strategy file {path}"
            raise ConfigError(msg)
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[mod_name] = module
        try:
            spec_obj.loader.exec_module(module)
        except Exception as exc:
            msg = f"strategy file {path} failed to import: {type(exc).__name__}: {exc}"
            raise ConfigError(msg) from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            msg = f"cannot import strategy module {target!r}: {exc}"
            raise ConfigError(msg) from exc
    candidates = {k: v for k, v in vars(module).items() if isinstance(v, type)
                  and issubclass(v, Strategy) and v is not Strategy
                  and v.__module__ == module.__name__}
    if cls_name:
        if cls_name not in candidates:
            msg = f"{target} has no Strategy class {cls_name!r} (found: {', '.join(candidates)})"
            raise ConfigError(msg)
        return candidates[cls_name]
    if len(candidates) != 1:
        msg = (f"{target} defines {len(candidates)} Strategy classes ({', '.join(candidates)}); "
               "name one as FILE.py:Class")
        raise ConfigError(msg)
    return next(iter(candidates.values()))


def _frames(data: Mapping[str, pd.DataFrame | MarketFrames]) -> dict[str, MarketFrames]:
    out = {}
    for sym, v in data.items():
        out[sym] = v if isinstance(v, MarketFrames) else MarketFrames(ohlcv=v)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedRun:
    """Everything a run needs, loaded and validated once; :func:`run_prepared` replays it
    (with configuration updates, e.g. another margin mode or starting collateral)."""

    strategy_class: type[Strategy]
    params: dict[str, Any]
    template: Strategy | None
    pristine: Strategy | None
    feed: Feed
    config: RunConfig
    profile: Any
    data_name: str
    warnings: tuple[str, ...]


def prepare(strategy: str | type[Strategy] | Strategy, *, dataset: str | None = None,
            data: Mapping[str, pd.DataFrame | MarketFrames] | None = None,
            instruments: Mapping[str, Instrument] | None = None,
            vol_indexes: Mapping[str, pd.DataFrame] | None = None,
            config: RunConfig | None = None, config_file: str | Path | None = None,
            datasets_root: str | Path | None = None, **keys: Any) -> PreparedRun:
    """Resolve the strategy, load and align the data and the profile; see :func:`run`."""
    cfg = load_config(config_file, base=config, dataset=dataset, **keys)
    template: Strategy | None = None
    if isinstance(strategy, Strategy):
        cls = type(strategy)
        params = {**strategy.params(), **cfg.params}
        template = strategy
        for name, value in cfg.params.items():  # validated like constructor parameters
            setattr(template, name, getattr(cls(**{name: value}), name))
    else:
        cls = load_strategy(strategy)
        params = dict(cfg.params)
        cls(**params)  # validate the parameters now ("did you mean")
    if data is None and cfg.dataset is None:
        msg = "give a dataset name (dataset='sample') or data={symbol: DataFrame}"
        raise ConfigError(msg)
    tiers_raw: Any = None
    extra_warnings: list[str] = []
    if data is not None:
        frames = _frames(data)
        insts = dict(instruments or {})
        for sym in frames:
            if sym not in insts:
                insts[sym] = instrument_from_symbol(sym)
        data_name = "dataframes"
        vol_index = {k.split("/")[0]: v for k, v in (vol_indexes or {}).items()}
    else:
        from backtester.data.catalog import load_dataset

        ds = load_dataset(cfg.dataset or "", root=datasets_root, start_ms=cfg.start,
                          end_ms=cfg.end)
        frames = _dataset_frames(ds)
        insts = {s: ds.instruments[s] for s in frames}
        tiers_raw = ds.leverage_tiers
        vol_index = {k.split("/")[0]: v for k, v in ds.vol_index.items()}
        extra_warnings.extend(ds.warnings)
        data_name = cfg.dataset or ""
    feed = Feed.build(insts, frames, start_ms=cfg.start, end_ms=cfg.end, vol_index=vol_index)
    profile = engine_profile(cfg.resolved_profile(), tiers=cfg.tiers or tiers_raw,
                             symbols=list(feed.symbols))
    return PreparedRun(strategy_class=cls, params=params, template=template,
                       pristine=None if template is None else copy.deepcopy(template), feed=feed,
                       config=cfg,
                       profile=profile, data_name=data_name, warnings=tuple(extra_warnings))


def run_prepared(prep: PreparedRun, *, primary: bool = False, **updates: Any) -> BacktestResult:
    """Run a prepared backtest once, with optional configuration ``updates``.

    A strategy instance given by the caller runs itself in the ``primary`` run (so the caller
    can inspect it); every other run gets a fresh copy of it as it was given.
    """
    cfg = prep.config.with_updates(**updates) if updates else prep.config
    prep.feed.reset()
    strat: Strategy
    if prep.template is not None and prep.pristine is not None:
        strat = prep.template if primary else copy.deepcopy(prep.pristine)
    else:
        strat = prep.strategy_class(**prep.params)
    return _run_once(strat, prep.feed, cfg, prep.profile, prep.data_name, list(prep.warnings))


def _dataset_frames(ds: Any) -> dict[str, MarketFrames]:
    out: dict[str, MarketFrames] = {}
    for sym in ds.symbols:
        ohlcv = ds.ohlcv.get(sym)
        marks = ds.option_marks.get(sym)
        if ohlcv is None:
            if marks is None or not len(marks):
                continue
            # an option known only by its marks: its candles are the mark prices (no volume)
            px = marks["mark_price"]
            ohlcv = pd.DataFrame({"ts": marks["ts"], "open": px, "high": px, "low": px,
                                  "close": px, "volume": 0.0}).dropna()
        if not len(ohlcv):
            continue  # nothing of this instrument inside the run's window
        out[sym] = MarketFrames(ohlcv=ohlcv, timeframe=ds.timeframe, mark=ds.mark.get(sym),
                                index=ds.index.get(sym), funding=ds.funding.get(sym),
                                option_marks=marks)
    return out


def _run_once(strat: Strategy, feed: Feed, cfg: RunConfig, profile: Any, data_name: str,
              extra_warnings: list[str]) -> BacktestResult:
    engine = Engine(strat, feed, cfg, profile=profile)
    engine.run()
    return _collect(engine, data_name, extra_warnings)


def _collect(engine: Engine, data_name: str, extra_warnings: list[str]) -> BacktestResult:
    from backtester._version import __version__
    from backtester.margin.account_snapshot import account_snapshot

    rec = engine.rec
    idx = pd.to_datetime(np.asarray(rec["ts"], dtype="int64"), unit="ms", utc=True)
    # columns are views of the engine's recording arrays (no second copy)
    equity = pd.DataFrame({k: np.asarray(v, dtype="float64") for k, v in rec.items()
                           if k != "ts"}, index=pd.Index(idx, name="ts"), copy=False)
    fills = _fills_frame(engine.fills)
    journal = _journal_frame(engine.account.journal.entries)
    ids = _symbol_ids(engine)
    positions = _positions_frame(engine, ids)
    orders = pd.DataFrame(engine.order_log)
    if "status" not in orders.columns:
        orders["status"] = pd.Series(dtype="str")
    n = len(rec["ts"])
    records = pd.DataFrame({k: (v + [float("nan")] * (n - len(v)))[:n]
                            for k, v in engine.user_records.items()}, index=equity.index)
    rejections = pd.DataFrame([{"ts": pd.Timestamp(r.ts_ms, unit="ms", tz="UTC"),
                                "order_id": r.order_id, "symbol": r.symbol,
                                "reason": r.reason.value, "message": r.message, "tag": r.tag}
                               for r in engine.rejections],
                              columns=["ts", "order_id", "symbol", "reason", "message", "tag"])
    events = [_event_dict(ev) for ev in engine.events]
    acct = engine.account
    fees = float(sum((-e.amount for e in acct.journal.entries
                      if e.kind in (EntryKind.FEE, EntryKind.DELIVERY_FEE,
                                    EntryKind.LIQUIDATION_FEE)), Decimal(0)))
    funding = float(-acct.journal.total(EntryKind.FUNDING))
    equity["distance_to_liquidation"] = _distances(engine, equity.index, ids)
    metrics_extra: dict[str, Any] = {}
    if engine.greek_rec:
        for name in ("delta", "gamma", "vega", "theta", "portfolio_initial_margin"):
            col = np.full(len(equity), np.nan)
            for step, totals, _ in engine.greek_rec:
                col[step] = totals[name]
            equity[name] = col
        pim = equity["portfolio_initial_margin"].to_numpy()
        held = np.isfinite(pim) & (equity["initial_margin"].to_numpy() > 0)
        if held.any():
            # standard (summed) vs portfolio (netted) requirement of the same book
            metrics_extra["portfolio_to_standard_margin"] = float(
                pim[held].mean() / equity["initial_margin"].to_numpy()[held].mean())
    # |distance| and the margin ratio without +inf and NaN (ratios of -inf stay)
    dist = np.abs(equity["distance_to_liquidation"].to_numpy())
    dist = dist[np.isfinite(dist)]
    ratio = equity["margin_ratio"].to_numpy()
    ratio = ratio[~(np.isnan(ratio) | (ratio == np.inf))]
    metrics = compute_metrics(equity["equity"], fills=fills, fees_paid=fees,
                              funding_paid=funding, liquidations=engine.margin.liquidations,
                              margin_calls=engine.margin.margin_calls,
                              min_distance=float(dist.min()) if len(dist) else None,
                              max_margin_ratio=float(ratio.max()) if len(ratio) else None)
    from backtester.capital import capital_metrics, utilization_series

    feeds = engine.feed.symbols
    # traded notional in USD: futures at the fill price (inverse: their USD face); options at
    # their premium value
    traded = 0.0
    for fill in engine.fills:
        inst = feeds[fill.symbol].instrument
        value = inst.notional_usd(abs(float(fill.qty)), float(fill.price))
        traded += value * engine.margin.price_usd(inst.settle) if inst.is_option else value
    metrics.update(capital_metrics(equity, traded_notional_usd=traded, fees_paid=fees,
                                   funding_paid=funding))
    metrics.update(metrics_extra)
    equity["margin_utilization"], equity["idle_collateral"] = utilization_series(equity)
    feed = engine.feed
    fp = hashlib.sha256()
    for sym in sorted(feed.symbols):
        f = feed.symbols[sym]
        fp.update(sym.encode())
        fp.update(f.ts_np.tobytes())
        for k in ("open", "high", "low", "close", "mark_close"):
            fp.update(f.arrays[k].tobytes())
    is_synthetic = data_name == "sample"
    warn = list(dict.fromkeys(engine.warnings + extra_warnings))
    if is_synthetic:
        warn.insert(0, "synthetic data: the sample dataset is generated, not market history")
    if engine.config.margin_mode is MarginMode.PORTFOLIO:
        from backtester.margin.portfolio import PortfolioParams

        params = engine.profile.portfolio_params or PortfolioParams()
        warn.extend(f"portfolio margin assumption: {a}" for a in params.assumptions)
    meta = {"data_fingerprint": fp.hexdigest()[:16], "package_version": __version__,
            "config_hash": engine.config.config_hash(), "dataset": data_name,
            "is_synthetic": is_synthetic, "profile": engine.profile.name,
            "symbols": sorted(feed.symbols), "stopped_reason": engine.stopped_reason,
            "start": ms_to_iso(int(rec["ts"][0])) if n else None,
            "end": ms_to_iso(int(rec["ts"][-1])) if n else None,
            "mark_fallback_bars": {s: f.mark_fallback_bars for s, f in feed.symbols.items()},
            "mark_source": {s: f.mark_source for s, f in feed.symbols.items()},
            "gaps": {s: f.gaps.as_dict() for s, f in feed.symbols.items()}}
    state = account_snapshot(engine)
    try:
        # the final account through the margin calculator: per-position liquidation and
        # bankruptcy prices (other positions at their current marks), in margin.json
        from backtester.margin.calculator import evaluate

        meta["final_margin"] = evaluate(state)
    except ConfigError as exc:
        warn.append(f"final margin snapshot not evaluated: {exc}")
    cfg = engine.config.as_dict()
    return BacktestResult(strategy=engine.strategy.name,
                          config={**cfg, "strategy": engine.strategy.name,
                                  "params": engine.strategy.params()},
                          equity=equity, fills=fills, orders=orders, journal=journal,
                          positions=positions, records=records, events=events,
                          rejections=rejections, metrics=metrics,
                          state=state, warnings=warn, meta=meta)


def _distances(engine: Engine, index: pd.Index, ids: np.ndarray) -> np.ndarray:
    from backtester.risk.distance import BookRows, distance_to_liquidation

    pr = engine.pos_rec
    rec = engine.rec
    syms = sorted(engine.feed.symbols)
    sid = {s: k for k, s in enumerate(syms)}
    insts = [engine.feed.symbols[s].instrument for s in syms]
    # the recorded steps are strictly increasing and every position row is at one of them
    bar = np.searchsorted(np.asarray(rec["ts"], dtype="int64"),
                          np.asarray(pr["ts"], dtype="int64")).astype("int64")
    cs = np.asarray([inst.cs for inst in insts], dtype="float64")
    lin = np.asarray([inst.is_linear for inst in insts], dtype=bool)
    opt = np.asarray([inst.is_option for inst in insts], dtype=bool)
    qty = np.asarray(pr["qty"], dtype="float64")
    entry = np.asarray(pr["entry_price"], dtype="float64")
    mark = np.asarray(pr["mark"], dtype="float64")
    iso = np.asarray(pr["isolated_margin"], dtype="float64")
    fixed = np.asarray(rec["collateral_fixed"], dtype="float64")
    moving = np.asarray(rec["collateral_moving"], dtype="float64")
    tiers = {sid[s]: t for s, t in engine.profile.tiers.items() if s in sid}
    isolated = engine.config.margin_mode is MarginMode.ISOLATED
    n = len(index)
    # each bar's distance depends on that bar's rows only: blocks of bars give the same
    # numbers with a fraction of the temporary memory (rows are in bar order)
    out = []
    for a in range(0, max(n, 1), _DISTANCE_BLOCK):
        b = min(a + _DISTANCE_BLOCK, n)
        r0, r1 = np.searchsorted(bar, [a, b])
        sel = slice(int(r0), int(r1))
        k = ids[sel]
        rows = BookRows(n_bars=b - a, bar=bar[sel] - a, qty=qty[sel], cs=cs[k],
                        entry=entry[sel], mark=mark[sel], is_linear=lin[k], is_option=opt[k],
                        symbol_id=k, isolated_margin=iso[sel], collateral_fixed=fixed[a:b],
                        collateral_moving=moving[a:b])
        out.append(distance_to_liquidation(rows, tiers=tiers,
                                           default_mmr=engine.profile.default_mmr,
                                           isolated=isolated))
    return np.concatenate(out) if out else np.full(n, np.inf)

_FILL_COLUMNS = ["ts", "order_id", "symbol", "qty", "price", "fee", "fee_asset", "liquidity",
                 "realized_pnl", "tag", "is_ambiguous", "qty_exact", "price_exact", "fee_exact"]
_JOURNAL_COLUMNS = ["seq", "ts", "kind", "asset", "amount", "balance_after", "symbol", "ref",
                    "ledger"]
_KIND_TEXT = {k: k.value for k in EntryKind}


def _utc(ms: Any) -> pd.DatetimeIndex:
    # epoch milliseconds as UTC times (the resolution pandas gives Timestamps of them)
    return pd.to_datetime(np.asarray(ms, dtype="int64"), unit="ms", utc=True)


def _fills_frame(fills: list[Any]) -> pd.DataFrame:
    # built column by column: the same frame as from one dict per fill, at a fraction of the
    # cost (no Timestamp objects, no row dicts)
    if not fills:
        return pd.DataFrame([], columns=_FILL_COLUMNS)
    qty = [f.qty for f in fills]
    price = [f.price for f in fills]
    fee = [f.fee for f in fills]
    return pd.DataFrame({
        "ts": _utc([f.ts_ms for f in fills]), "order_id": [f.order_id for f in fills],
        "symbol": [f.symbol for f in fills], "qty": [float(x) for x in qty],
        "price": [float(x) for x in price], "fee": [float(x) for x in fee],
        "fee_asset": [f.fee_asset for f in fills], "liquidity": [f.liquidity for f in fills],
        "realized_pnl": [float(f.realized_pnl) for f in fills], "tag": [f.tag for f in fills],
        "is_ambiguous": [f.is_ambiguous for f in fills], "qty_exact": [str(x) for x in qty],
        "price_exact": [str(x) for x in price], "fee_exact": [str(x) for x in fee]},
        columns=_FILL_COLUMNS)


def _journal_frame(entries: list[Any]) -> pd.DataFrame:
    if not entries:
        return pd.DataFrame([], columns=_JOURNAL_COLUMNS)
    return pd.DataFrame({
        "seq": [e.seq for e in entries], "ts": _utc([e.ts_ms for e in entries]),
        "kind": [_KIND_TEXT[e.kind] for e in entries], "asset": [e.asset for e in entries],
        "amount": [str(e.amount) for e in entries],
        "balance_after": [str(e.balance_after) for e in entries],
        "symbol": [e.symbol for e in entries], "ref": [e.ref for e in entries],
        "ledger": [e.ledger for e in entries]}, columns=_JOURNAL_COLUMNS)


def _symbol_ids(engine: Engine) -> np.ndarray:
    # the index (in sorted symbols) of each recorded position row's symbol
    names = engine.pos_rec["symbol"]
    syms = sorted(engine.feed.symbols)
    if len(syms) == 1:
        return np.zeros(len(names), dtype="int64")
    sid = {s: k for k, s in enumerate(syms)}
    return np.fromiter(map(sid.__getitem__, names), dtype="int64", count=len(names))


def _symbol_column(names: list[str], syms: list[str], ids: np.ndarray) -> Any:
    # the column pandas infers from the list of names; when that is pyarrow-backed strings it
    # is built from the symbol ids (one take) instead of from a million Python strings
    dtype = pd.Series(syms[:1], dtype=None).dtype if syms else None
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        import pyarrow as pa

        return pd.array(pa.array(syms, type=pa.large_string()).take(pa.array(ids)),
                        dtype=dtype)
    return names


def _positions_frame(engine: Engine, ids: np.ndarray) -> pd.DataFrame:
    pr = engine.pos_rec
    n = len(pr["ts"])
    # compact arrays become numpy columns (views); empty series stay lists (as before)
    cols: dict[str, Any] = {k: np.asarray(v) if len(v) and not isinstance(v, list) else list(v)
                            for k, v in pr.items()}
    if n:
        cols["ts"] = _utc(pr["ts"])
        cols["symbol"] = _symbol_column(pr["symbol"], sorted(engine.feed.symbols), ids)
    cols.update(_position_greeks(engine, ids))
    positions = pd.DataFrame(cols, copy=False)
    if not n:
        positions["ts"] = _utc(pr["ts"])
    return positions


def _position_greeks(engine: Engine, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-position greeks for the positions frame, in exchange conventions: ``delta``
    (coins: N(d1) x size for options, the size in coins for futures), ``gamma`` (per USD),
    ``vega`` (USD per vol point) and ``theta`` (USD per day); 0 for futures except delta.
    Options are valued with Black-76 at their bar's implied vol and the underlying's index."""
    pr = engine.pos_rec
    n = len(pr["ts"])
    out = {k: np.zeros(n) for k in ("delta", "gamma", "vega", "theta")}
    if not n:
        return out
    ts = np.asarray(pr["ts"], dtype="int64")
    qty = np.asarray(pr["qty"], dtype="float64")
    mark = np.asarray(pr["mark"], dtype="float64")
    syms = sorted(engine.feed.symbols)
    counts = np.bincount(ids, minlength=len(syms))
    for k, sym in enumerate(syms):
        if not counts[k]:
            continue
        f = engine.feed.symbols[sym]
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
    i = np.clip(np.searchsorted(f.ts_np + f.tf_ms, ts, side="right") - 1, 0, f.n - 1)
    iv = np.asarray(f.option_iv if f.option_iv is not None else [np.nan] * f.n,
                    dtype="float64")[i]
    fwd = f.arrays["index_close"][i]
    t = np.maximum((inst.expiry_ms or 0) - ts, 0) / (365.0 * 86_400_000)
    call = inst.option_type is not None and inst.option_type.value == "call"
    k = float(inst.strike or 0.0)
    ok = np.isfinite(iv) & (iv > 0)
    for name, fn in (("delta", black76.delta), ("gamma", black76.gamma),
                     ("vega", black76.vega), ("theta", black76.theta)):
        vals = np.full(len(ts), np.nan)
        if ok.any():
            vals[ok] = np.asarray(fn(fwd[ok], k, t[ok], iv[ok], call)) * size[ok]
        out[name][sel] = vals


def _event_dict(ev: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(ev)
    d["event"] = type(ev).__name__
    d["time"] = ms_to_iso(ev.ts_ms)
    return d


