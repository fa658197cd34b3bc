"""Preparing and running one backtest: data, feed, profile, engine, results (internal).

``backtester.run`` (in :mod:`backtester.api`) is the public entry point; the functions here are
the steps it and the capital-efficiency re-runs share.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtester.accounting import EntryKind
from backtester.config import MarginMode, RunConfig, load_config, resolve_profile
from backtester.data.feed import Feed, MarketFrames
from backtester.engine import Engine
from backtester.errors import ConfigError
from backtester.instruments import Instrument, instrument_from_symbol
from backtester.margin.profile import engine_profile, load_profile
from backtester.margin.sources import resolve_fee_rates, resolve_tiers
from backtester.progress import Progress
from backtester.progress import task as progress_task
from backtester.runs import frames as result_frames
from backtester.runs.results import BacktestResult, compute_metrics
from backtester.strategy import Strategy
from backtester.timeutil import ms_to_iso

__all__ = ["PreparedRun", "data_fingerprint", "dataset_frames", "load_strategy", "prepare",
           "rejections_by_reason", "run_hash", "run_prepared", "strategy_source_hash"]

_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_FEE_KINDS = frozenset({EntryKind.FEE, EntryKind.DELIVERY_FEE, EntryKind.LIQUIDATION_FEE})


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
        if _MODULE_NAME.match(target) is None:
            msg = (f"strategy {spec!r}: expected a file path ending in .py (path/to/file.py"
                   "[:Class]) or a module path (package.module:Class)")
            raise ConfigError(msg)
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


def _frames(data: Mapping[str, pd.DataFrame | MarketFrames],
            timeframe: str | None) -> dict[str, MarketFrames]:
    # the run's timeframe key stands for frames that give none (else inferred from the stamps)
    out = {}
    for sym, v in data.items():
        fr = v if isinstance(v, MarketFrames) else MarketFrames(ohlcv=v)
        if fr.timeframe is None and timeframe is not None:
            fr = replace(fr, timeframe=timeframe)
        out[sym] = fr
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
    #: where the runs of this preparation report their progress (None: nowhere)
    progress: Progress | None = None
    #: each symbol's fee rates and tier-table source (``fee_rates``, ``tier_sources``), for
    #: the results' ``meta`` (config.json)
    sources: Mapping[str, Any] = field(default_factory=dict)
    profile_reason: str = ""
    #: the strategy's parameters as the run resolves them (class defaults and overrides)
    resolved_params: dict[str, Any] | None = None
    #: :func:`strategy_source_hash` of the strategy class and :func:`data_fingerprint`
    source_hash: str = ""
    fingerprint: str = ""

    def run_hash(self, config: RunConfig | None = None) -> str:
        """Return the hash naming this run (:func:`run_hash`), with ``config`` in place of the
        prepared configuration (another margin mode, say)."""
        return run_hash(config_hash=(config or self.config).config_hash(),
                        strategy=self.strategy_class.__name__, source_hash=self.source_hash,
                        params=self.resolved_params or {}, data_fingerprint=self.fingerprint)


def prepare(strategy: str | type[Strategy] | Strategy, *, dataset: str | None = None,
            data: Mapping[str, pd.DataFrame | MarketFrames] | None = None,
            instruments: Mapping[str, Instrument] | None = None,
            vol_indexes: Mapping[str, pd.DataFrame | MarketFrames] | None = None,
            config: RunConfig | None = None, config_file: str | Path | None = None,
            datasets_root: str | Path | None = None, progress: Progress | None = None,
            dataset_tiers: Any = None,
            **keys: Any) -> PreparedRun:
    """Resolve the strategy, load and align the data and the profile; see :func:`run`."""
    cfg = load_config(config_file, base=config, dataset=dataset, **keys)
    template: Strategy | None = None
    if isinstance(strategy, Strategy):
        cls = type(strategy)
        params = {**strategy.params(), **cfg.params}
        template = strategy
        for name, value in cfg.params.items():  # validated like constructor parameters
            setattr(template, name, getattr(cls(**{name: value}), name))
        resolved = template.params()
    else:
        cls = load_strategy(strategy)
        params = dict(cfg.params)
        resolved = cls(**params).params()  # validates the parameters now ("did you mean")
    if data is None and cfg.dataset is None:
        msg = "give a dataset name (dataset='sample') or data={symbol: DataFrame}"
        raise ConfigError(msg)
    tiers_raw: Any = dataset_tiers
    extra_warnings: list[str] = []
    guessed: set[str] = set()
    exchanges: list[str] = []  # the exchanges the data says it comes from
    if data is not None:
        frames = _frames(data, cfg.timeframe)
        insts = dict(instruments or {})
        for sym in frames:
            if sym not in insts:
                insts[sym] = instrument_from_symbol(sym)
                guessed.add(sym)
        data_name = "dataframes"
        exchanges.extend(i.exchange for i in insts.values() if i.exchange)
        vol_index = {k.split("/")[0]: v for k, v in (vol_indexes or {}).items()}
    else:
        from backtester.data.catalog import load_dataset

        with progress_task(progress, f"loading dataset {cfg.dataset}"):
            ds = load_dataset(cfg.dataset or "", root=datasets_root, start_ms=cfg.start,
                              end_ms=cfg.end, timeframe=cfg.timeframe)
        frames = dataset_frames(ds)
        insts = {s: ds.instruments[s] for s in frames}
        tiers_raw = ds.leverage_tiers
        vol_index = {k.split("/")[0]: v for k, v in ds.vol_index.items()}
        extra_warnings.extend(ds.warnings)
        guessed.update(ds.guessed_specs)
        data_name = cfg.dataset or ""
        if ds.fetched_from:
            exchanges.append(ds.fetched_from)
    profile_name, why = resolve_profile(cfg, exchanges=tuple(exchanges),
                                        is_frames=data is not None)
    extra_warnings.extend(_flagged(frames, cfg, profile_name))
    # fee rates and tier tables by their precedence (backtester.margin.sources)
    prof = load_profile(profile_name)
    fees = resolve_fee_rates({s: i for s, i in insts.items() if s in frames}, prof)
    feed = Feed.build(fees.instruments, frames, start_ms=cfg.start, end_ms=cfg.end,
                      vol_index=vol_index)
    extra_warnings.extend(_guessed_spec_note(feed.symbols[s], from_dataset=data is None)
                          for s in sorted(guessed) if s in feed.symbols)
    if cfg.profile is None and data is not None and cfg.dataset is None and not exchanges:
        extra_warnings.append(f"profile {profile_name}: {why}; give profile='binance-usdm' "
                              "(or another exchange's) for that exchange's margin rules")
    run_insts = {s: f.instrument for s, f in feed.symbols.items()}
    tiers = resolve_tiers(run_insts, prof, run_tiers=cfg.tiers, dataset_tiers=tiers_raw,
                          dataset=cfg.dataset)
    profile = engine_profile(prof.name, tiers=tiers.tables, instruments=run_insts)
    extra_warnings.extend(fees.warnings)
    extra_warnings.extend(tiers.warnings)
    sources = {"fee_rates": {s: fees.rates[s].as_dict() for s in sorted(run_insts)},
               "tier_sources": {s: t.value for s, t in sorted(tiers.sources.items())}}
    _check_leverage(cfg, profile, feed)
    return PreparedRun(strategy_class=cls, params=params, template=template,
                       pristine=None if template is None else copy.deepcopy(template), feed=feed,
                       config=cfg, profile=profile, data_name=data_name,
                       warnings=tuple(extra_warnings), progress=progress, sources=sources,
                       profile_reason=why, resolved_params=resolved,
                       source_hash=strategy_source_hash(cls), fingerprint=data_fingerprint(feed))


def _check_leverage(cfg: RunConfig, profile: Any, feed: Feed) -> None:
    # before the run: a leverage given above a symbol's first bracket would reject every order
    # of it (a run of 0 trades that looks normal); symbols not in the data are the engine's
    # error (unknown symbol)
    wanted = dict(cfg.leverage)
    every = wanted.pop("*", cfg.default_leverage)
    for sym, f in feed.symbols.items():
        lev = wanted.get(sym, every)
        if lev is not None and not f.instrument.is_option:
            profile.check_leverage(sym, lev, instrument_max=f.instrument.max_leverage)


def _guessed_spec_note(f: Any, *, from_dataset: bool) -> str:
    # what a guessed contract spec does to the fills: prices round to the default tick, which
    # on a low-priced coin is a large fraction of the price (XRP near 1.19: tick 0.01 = 0.84 %)
    inst = f.instrument
    close = float(f.c[0])
    share = float(inst.tick_size) / close if close > 0 else float("nan")
    fix = ("import the exchange's markets (backtester data import --markets markets.json "
           "--exchange NAME)" if from_dataset else
           "give instruments={symbol: instrument_from_ccxt(market)} or "
           "instrument_from_symbol(symbol, tick_size=..., lot_size=...)")
    # one family of warnings ("contract specs guessed from the symbol: ..."), one per symbol
    return (f"contract specs guessed from the symbol: {inst.symbol} tick {inst.tick_size} "
            f"({share:.2%} of the first close {close:g}), lot {inst.lot_size}, contract size "
            f"{inst.contract_size}, fees maker {inst.maker_rate} / taker {inst.taker_rate}; "
            f"fill prices are rounded to that tick. For the exchange's specs, {fix}")


def run_prepared(prep: PreparedRun, *, primary: bool = False, label: str | None = None,
                 **updates: Any) -> BacktestResult:
    """Run a prepared backtest once, with optional configuration ``updates``.

    A strategy instance given by the caller runs itself in the ``primary`` run (so the caller
    can inspect it); every other run gets a fresh copy of it as it was given. ``label`` names
    the run in the progress report (default: strategy and margin mode).
    """
    cfg = prep.config.with_updates(**updates) if updates else prep.config
    prep.feed.reset()
    strat: Strategy
    if prep.template is not None and prep.pristine is not None:
        strat = prep.template if primary else copy.deepcopy(prep.pristine)
    else:
        strat = prep.strategy_class(**prep.params)
    label = label or f"backtest {prep.strategy_class.__name__} ({cfg.margin_mode})"
    result = _run_once(strat, prep.feed, cfg, prep.profile, prep.data_name,
                       list(prep.warnings), prep.sources, progress=prep.progress, label=label)
    result.meta["profile_reason"] = prep.profile_reason
    result.meta["strategy_source_hash"] = prep.source_hash
    result.meta["run_hash"] = prep.run_hash(cfg)
    return result


def _flagged(frames: Mapping[str, MarketFrames], cfg: RunConfig, profile: str) -> list[str]:
    # implausible values the run will use (data validation's outlier rules), as warnings
    from backtester.data.outliers import find_outliers, summarize
    from backtester.data.schema import Kind, validate_frame
    from backtester.errors import DataError
    from backtester.margin.profile import load_profile

    cap = load_profile(profile).funding_rate_cap
    found = []
    for sym, mf in frames.items():
        for kind, frame in ((Kind.OHLCV, mf.ohlcv), (Kind.MARK, mf.mark), (Kind.INDEX, mf.index),
                            (Kind.FUNDING, mf.funding)):
            if frame is None or not len(frame):
                continue
            try:  # data= frames may be unsorted or indexed by time: the feed validates them
                clean = frame if "ts" in frame.columns and frame["ts"].is_monotonic_increasing \
                    else validate_frame(frame, kind, symbol=sym, timeframe=None)
            except (DataError, KeyError):
                continue
            found += find_outliers(clean, kind, symbol=sym, funding_cap=cap,
                                   return_multiple=cfg.outlier_return_multiple,
                                   cap_source=f"{profile} profile")
    return [f"flagged data used by this run (see `backtester data validate`): {line}"
            for line in summarize(found)]


def data_fingerprint(feed: Feed) -> str:
    """Return a short hash of the data a run replays: each symbol's bar times, trade candles
    and mark closes, as aligned on the feed."""
    fp = hashlib.sha256()
    for sym in sorted(feed.symbols):
        f = feed.symbols[sym]
        fp.update(sym.encode())
        # the arrays' memory itself (no bytes copy)
        fp.update(np.ascontiguousarray(f.ts_np, dtype="int64").data)
        for k in ("open", "high", "low", "close", "mark_close"):
            fp.update(np.ascontiguousarray(f.arrays[k], dtype="float64").data)
    return fp.hexdigest()[:16]


def strategy_source_hash(cls: type[Strategy]) -> str:
    """Return a short hash of the source files of a strategy class and its bases.

    Each file defining a class of the MRO above :class:`~backtester.strategy.Strategy` is read
    whole (helpers beside the class count); a class without a source file (defined in an
    interactive session) counts by its qualified name only.
    """
    digest = hashlib.sha256()
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is Strategy or not issubclass(klass, Strategy):
            break
        try:
            path = inspect.getsourcefile(klass)
            text = Path(path).read_bytes() if path else None
        except (TypeError, OSError):
            path, text = None, None
        key = path or klass.__qualname__
        if key in seen:
            continue
        seen.add(key)
        digest.update(text if text is not None else f"{klass.__qualname__}: no source".encode())
    return digest.hexdigest()[:16]


def run_hash(*, config_hash: str, strategy: str, source_hash: str, params: dict[str, Any],
             data_fingerprint: str) -> str:
    """Return the hash naming a run: configuration, strategy (name, source, resolved
    parameters) and data. Equal hashes mean equal inputs, so equal results."""
    payload = json.dumps({"config": config_hash, "strategy": strategy, "source": source_hash,
                          "params": params, "data": data_fingerprint}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def dataset_frames(ds: Any) -> dict[str, MarketFrames]:
    """Return the market frames of a loaded dataset ``ds`` per symbol, as
    ``backtester.run(dataset=...)`` builds them (symbols without data are left out)."""
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
                                option_marks=marks, mark_timeframe=ds.mark_timeframes.get(sym))
    return out


def _run_once(strat: Strategy, feed: Feed, cfg: RunConfig, profile: Any, data_name: str,
              extra_warnings: list[str], sources: Mapping[str, Any], *,
              progress: Progress | None = None, label: str = "backtest") -> BacktestResult:
    engine = Engine(strat, feed, cfg, profile=profile)
    # the bar count is read by the reporter when it redraws: nothing is added to the bar loop
    n = len(feed.steps)
    with progress_task(progress, label, total=n, poll=lambda: min(engine.step + 1, n)):
        engine.run()
    result_frames.trim_heap()  # the run's freed temporaries, before the result frames
    with progress_task(progress, "collecting results"), _gc_paused():
        return _collect(engine, data_name, extra_warnings, sources)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Building the result frames allocates many containers while the engine's whole state is
    # alive, so the cyclic collector would run full passes over it (~60 ms each on W1) to find
    # nothing: nothing here creates cycles. Paused only if it was enabled, and restored.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _collect(engine: Engine, data_name: str, extra_warnings: list[str],
             sources: Mapping[str, Any]) -> BacktestResult:
    from backtester._version import __version__
    from backtester.margin.account_snapshot import account_snapshot

    rec = engine.rec
    index = pd.Index(result_frames.utc(rec["ts"]), name="ts")
    # columns are views of the engine's recording arrays (no second copy); columns are added by
    # rebuilding the frame from the arrays (assigning a column would copy it)
    cols = {k: np.asarray(v, dtype="float64") for k, v in rec.items() if k != "ts"}
    fills = result_frames.fills_frame(engine.fills)
    journal = result_frames.journal_frame(engine.account.journal.entries)
    ids = result_frames.symbol_ids(engine)
    orders = result_frames.orders_frame(engine.order_log)
    n = len(rec["ts"])
    records = pd.DataFrame({k: (v + [float("nan")] * (n - len(v)))[:n]
                            for k, v in engine.user_records.items()}, index=index)
    rejections = pd.DataFrame([{"ts": pd.Timestamp(r.ts_ms, unit="ms", tz="UTC"),
                                "order_id": r.order_id, "symbol": r.symbol,
                                "reason": r.reason.value, "message": r.message, "tag": r.tag}
                               for r in engine.rejections],
                              columns=["ts", "order_id", "symbol", "reason", "message", "tag"])
    events = [_event_dict(ev) for ev in engine.events]
    acct = engine.account
    fees = float(sum([-e.amount for e in acct.journal.entries if e.kind in _FEE_KINDS],
                     Decimal(0)))
    funding = float(-acct.journal.total(EntryKind.FUNDING))
    distances, nearest_move = _distances(engine, n)
    cols.update(distances)
    metrics_extra: dict[str, Any] = {"min_distance_move": nearest_move}
    if engine.greek_rec:
        for name in ("delta", "gamma", "vega", "theta", "portfolio_initial_margin"):
            col = np.full(n, np.nan)
            for step, totals, _ in engine.greek_rec:
                col[step] = totals[name]
            cols[name] = col
        pim = cols["portfolio_initial_margin"]
        held = np.isfinite(pim) & (cols["initial_margin"] > 0)
        if held.any():
            # standard (summed) vs portfolio (netted) requirement of the same book
            metrics_extra["portfolio_to_standard_margin"] = float(
                pim[held].mean() / cols["initial_margin"][held].mean())
    # every column stored once (all-zero ones untouched, equal ones shared copy-on-write);
    # the engine's records they replace are released (the engine is read no more for them)
    result_frames.compact_columns(cols, rec, index)
    result_frames.trim_heap()
    equity = pd.DataFrame(cols, index=index, copy=False)
    # |distance| and the margin ratio without +inf and NaN (ratios of -inf stay)
    dist = np.abs(np.asarray(cols["distance_to_liquidation"]))
    dist = dist[np.isfinite(dist)]
    ratio = np.asarray(cols["margin_ratio"])
    ratio = ratio[~(np.isnan(ratio) | (ratio == np.inf))]
    metrics = compute_metrics(equity["equity"], fills=fills, fees_paid=fees,
                              funding_paid=funding, liquidations=engine.margin.liquidations,
                              margin_calls=engine.margin.margin_calls,
                              min_distance=float(dist.min()) if len(dist) else None,
                              max_margin_ratio=float(ratio.max()) if len(ratio) else None)
    from backtester.runs.capital import capital_metrics, utilization_series

    traded = result_frames.traded_notional(engine, fills)
    cols["margin_utilization"], cols["idle_collateral"] = series = utilization_series(equity)
    metrics.update(capital_metrics(equity, traded_notional_usd=traded, fees_paid=fees,
                                   funding_paid=funding, series=series))
    metrics.update(metrics_extra)
    equity = pd.DataFrame(cols, index=index, copy=False)
    # built last: the temporaries of the searches and metrics above are freed by then, and
    # the memory they held takes the positions frame's columns
    positions = result_frames.positions_frame(engine, ids, equity=equity)
    feed = engine.feed
    is_synthetic = data_name == "sample"
    warn = list(dict.fromkeys(engine.warnings + extra_warnings + _funding_notes(engine)
                              + _rejection_notes(engine.rejections)))
    if is_synthetic:
        warn.insert(0, "synthetic data: the sample dataset is generated, not market history")
    if engine.config.margin_mode is MarginMode.PORTFOLIO:
        from backtester.margin.portfolio import PortfolioParams

        params = engine.profile.portfolio_params or PortfolioParams()
        warn.extend(f"portfolio margin assumption: {a}" for a in params.assumptions)
    meta = {"data_fingerprint": data_fingerprint(feed), "package_version": __version__,
            "config_hash": engine.config.config_hash(), "dataset": data_name,
            "is_synthetic": is_synthetic, "profile": engine.profile.name,
            "symbols": sorted(feed.symbols), "stopped_reason": engine.stopped_reason,
            "start": ms_to_iso(int(rec["ts"][0])) if n else None,
            "end": ms_to_iso(int(rec["ts"][-1])) if n else None,
            "mark_fallback_bars": {s: f.mark_fallback_bars for s, f in feed.symbols.items()},
            "mark_source": {s: f.mark_source for s, f in feed.symbols.items()},
            # the forward each option is priced on: its own underlying_price or the index
            "forward_source": {s: f.forward_source for s, f in feed.symbols.items()
                               if f.instrument.is_option},
            "forward_fallback_bars": {s: f.forward_fallback_bars for s, f in feed.symbols.items()
                                      if f.instrument.is_option and f.forward_fallback_bars},
            "gaps": {s: f.gaps.as_dict() for s, f in feed.symbols.items()}, **sources}
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


def rejections_by_reason(rejections: list[Any]) -> dict[str, int]:
    """Count rejected orders by reason, most frequent first (ties by reason)."""
    counts: dict[str, int] = {}
    for r in rejections:
        counts[str(r.reason)] = counts.get(str(r.reason), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _rejection_notes(rejections: list[Any]) -> list[str]:
    # a run whose orders were refused must say so, however normal its summary looks
    if not rejections:
        return []
    counts = ", ".join(f"{k} {v:,}" for k, v in rejections_by_reason(rejections).items())
    first = rejections[0]
    return [f"{len(rejections):,} order(s) rejected: {counts} (first at "
            f"{ms_to_iso(first.ts_ms)}, {first.reason}: {first.message}); every rejection is "
            "in rejections.parquet"]


def _funding_notes(engine: Engine) -> list[str]:
    # funding='history_or_zero': each held span outside a perp's funding history, charged zero
    from backtester.hints import option

    notes = []
    asked = option("funding", "history_or_zero")
    for sym, stamps in sorted(engine.funding_uncovered.items()):
        f = engine.feed.symbols[sym]
        if f.funding_covered is None:
            notes.append(f"no funding history for {sym}: funding charged zero while it was held "
                         f"(from {ms_to_iso(stamps[0])}), as asked ({asked})")
            continue
        first, last = f.funding_covered
        notes.append(f"funding charged zero for {sym} at {len(stamps)} funding time(s) outside "
                     f"its history ({ms_to_iso(stamps[0])} .. {ms_to_iso(stamps[-1])}; the "
                     f"history covers {ms_to_iso(first)} .. {ms_to_iso(last)}), as asked "
                     f"({asked})")
    return notes


def _distances(engine: Engine, n: int) -> tuple[dict[str, np.ndarray], str | None]:
    """The per-step distance columns (the margin kernel's, ``MarginEngine.dist``) and where the
    nearest one over the run is (``"BTC down"``, ``"all up"``; None when none is finite).

    ``distance_<coin>_down`` / ``_up``: the move of that coin alone (others at their closes)
    that liquidates the account, searched down to -99 % and up to +1000 % (inf: none);
    ``distance_all_down`` / ``_up`` with several coins: all moved together; and
    ``distance_to_liquidation``, each step's nearest of them (signed).
    """
    margin = engine.margin
    dist = margin.dist[:, :, :n]
    names = list(margin.underlyings) + (["all"] if len(margin.underlyings) > 1 else [])
    cols: dict[str, np.ndarray] = {}
    for u, name in enumerate(names):
        cols[f"distance_{name}_down"] = dist[u, 0]
        cols[f"distance_{name}_up"] = dist[u, 1]
    if not names:
        return {"distance_to_liquidation": np.full(n, np.inf)}, None
    flat = dist.reshape(-1, dist.shape[2])  # row 2u + d
    nearest = np.argmin(np.abs(flat), axis=0)
    head = flat[nearest, np.arange(flat.shape[1])]
    cols = {"distance_to_liquidation": head, **cols}
    finite = np.isfinite(head)
    if not finite.any():
        return cols, None
    at = int(np.flatnonzero(finite)[np.argmin(np.abs(head[finite]))])
    row = int(nearest[at])
    return cols, f"{names[row // 2]} {'down' if row % 2 == 0 else 'up'}"


def _plain_fields(items: list[tuple[str, Any]]) -> dict[str, Any]:
    # an event's enum fields (scope, step actions) as their values: the results hold plain
    # JSON types, the same in memory as read back from events.json
    return {k: v.value if isinstance(v, Enum) else v for k, v in items}


def _event_dict(ev: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(ev, dict_factory=_plain_fields)
    d["event"] = type(ev).__name__
    d["time"] = ms_to_iso(ev.ts_ms)
    return d


