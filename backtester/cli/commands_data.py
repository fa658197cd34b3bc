"""``backtester fetch`` and ``backtester data list | inspect | validate | import``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from backtester.cli import cli, friendly_errors
from backtester.cli._progress import progress_for
from backtester.data.schema import Kind
from backtester.data.store import Store, StoredSeries
from backtester.errors import ConfigError, DataError
from backtester.timeutil import ms_to_iso, parse_utc_ms

_KINDS = ", ".join(k.value for k in Kind)
_datasets_option = click.option(
    "--datasets", "datasets", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Datasets folder (default: $BACKTESTER_DATASETS or ./datasets).")


def _utc(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_utc_ms(value)
    except ValueError as exc:
        msg = f"{flag}: {exc}"
        raise ConfigError(msg) from exc


def _when(ms: int | None) -> str:
    return ms_to_iso(ms) if ms is not None else "-"


_outlier_option = click.option(
    "--outlier-multiple", type=float, default=None,
    help="Flag returns beyond this multiple of the series' robust scale (default 100; "
         "run key outlier_return_multiple).")


def _outliers(store: Store, s: StoredSeries, multiple: float | None) -> tuple[int, list[str]]:
    # implausible values of one stored series (backtester.data.outliers): count, lines to show
    from backtester.config import PROFILE_FOR_DATASET, load_config
    from backtester.data.outliers import find_outliers, summarize
    from backtester.margin.profile import PROFILE_NAMES, load_profile

    cfg = load_config(outlier_return_multiple=multiple)  # validates the multiple
    profile = PROFILE_FOR_DATASET.get(s.exchange)
    if profile is not None:
        cap, source = load_profile(profile).funding_rate_cap, f"{profile} profile"
    else:  # a folder named after no known exchange: the widest cap of any profile
        caps = [c for c in (load_profile(n).funding_rate_cap for n in PROFILE_NAMES) if c]
        cap, source = (max(caps) if caps else None), "widest cap of the exchange profiles"
    frame = store.read(s.exchange, s.kind, s.symbol, s.timeframe)
    found = find_outliers(frame, s.kind, symbol=s.symbol, funding_cap=cap,
                          return_multiple=cfg.outlier_return_multiple, cap_source=source)
    return len(found), summarize(found, limit=20)


@cli.command("fetch")
@click.argument("exchange")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--kinds", default="ohlcv,mark,index,funding", show_default=True,
              help=f"Comma-separated kinds: {_KINDS}.")
@click.option("--timeframe", "-t", default="1h", show_default=True, help="Candle timeframe.")
@click.option("--since", required=True, help="UTC start, e.g. 2024-01-01 or 2024-01-01T08:00.")
@click.option("--until", default=None, help="UTC end, exclusive (default: now).")
@click.option("--base-url", default=None,
              help="Mirror/proxy: replaces scheme and host of every API URL, keeps the paths.")
@click.option("--exchange-option", "exchange_options", multiple=True, metavar="KEY=VALUE",
              help="Passed to the ccxt constructor (repeatable; dotted keys nest).")
@click.option("--tiers-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Leverage tiers JSON (ccxt layout) when the exchange has no public endpoint.")
@_datasets_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or summary.")
@friendly_errors
def fetch_command(exchange: str, symbols: tuple[str, ...], kinds: str, timeframe: str,
                  since: str, until: str | None, base_url: str | None,
                  exchange_options: tuple[str, ...], tiers_file: Path | None,
                  datasets: Path | None, quiet: bool) -> None:
    """Download market data of SYMBOLS (ccxt symbols) from EXCHANGE into the store.

    Resumes from the last stored row; safe to interrupt and rerun. API keys, when needed, are
    read from BACKTESTER_<EXCHANGE>_API_KEY / _SECRET only.

    \b
    Example:
      backtester fetch binanceusdm BTC/USDT:USDT --kinds ohlcv,mark,funding -t 1h --since 2024-01-01
      backtester fetch deribit BTC --kinds vol_index -t 1d --since 2023-01-01
    """
    from backtester.data.fetch import fetch, parse_exchange_options

    since_ms = _utc(since, "--since")
    assert since_ms is not None  # required option
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    with progress_for(quiet=quiet) as progress:
        report = fetch(exchange, list(symbols), kinds=kind_list, timeframe=timeframe,
                       since_ms=since_ms, until_ms=_utc(until, "--until"),
                       store=Store(datasets), base_url=base_url,
                       exchange_options=parse_exchange_options(exchange_options),
                       tiers_file=tiers_file, progress=progress,
                       on_wait=lambda m: click.echo(f"note: {m}", err=True))
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    if quiet:
        return
    for s in report.series:
        click.echo(f"{s.label}: +{s.rows_added} rows in {s.pages} pages; stored "
                   f"{_when(s.first_ms)} .. {_when(s.last_ms)}")
    if report.markets_path is not None:
        click.echo(f"markets: {report.markets_path}")
    if report.tiers_path is not None:
        click.echo(f"leverage tiers: {report.tiers_path}")


@cli.group("data")
def data_group() -> None:
    """List, inspect, validate and import stored market data.

    \b
    Example:
      backtester data list --exchange binanceusdm
    """


def _gap_text(meta: dict[str, object]) -> str:
    gaps = meta.get("gaps")
    text = ""
    if isinstance(gaps, dict):
        text = "no gaps" if not gaps.get("count") else (
            f"{gaps['count']} gaps, {gaps['missing_bars']} bars missing "
            f"({100 * float(gaps['pct_missing']):.2f}%)")  # type: ignore[arg-type]
    end = meta.get("end_of_data")
    if isinstance(end, dict):
        text += f"; no data after {end.get('end_of_data')}"
    return text


#: The header of ``data list`` / ``data inspect`` lines (times are UTC, first .. last stamp).
_HEADER = (f"{'dataset':<14} {'kind':<12} {'symbol':<28} {'tf':<6} {'rows':>8}       "
           f"{'first (UTC)':<20} .. {'last (UTC)':<20}  gaps")


def _line(store: Store, s: StoredSeries) -> str:
    head = f"{s.exchange:<14} {s.kind.value:<12} {s.symbol:<28} {s.timeframe or '-':<6}"
    if s.rows < 0:
        return f"{head} UNREADABLE: run `backtester data validate`"
    try:
        meta = store.metadata(s.exchange, s.kind, s.symbol, s.timeframe)
    except DataError:
        meta = {}
    return f"{head} {s.rows:>8} rows  {_when(s.first_ms)} .. {_when(s.last_ms)}  {_gap_text(meta)}"


@data_group.command("list")
@click.option("--exchange", default=None, help="Only this dataset/exchange.")
@_datasets_option
@friendly_errors
def data_list(exchange: str | None, datasets: Path | None) -> None:
    """List stored series with their ranges and gaps.

    \b
    Example:
      backtester data list --exchange binanceusdm
    """
    store = Store(datasets)
    series = store.list(exchange)
    if not series:
        click.echo(f"no data in {store.root}" + (f"/{exchange}" if exchange else ""))
        return
    click.echo(_HEADER)
    for s in series:
        click.echo(_line(store, s))


@data_group.command("inspect")
@click.argument("symbol")
@click.option("--exchange", default=None, help="Only this dataset/exchange.")
@_datasets_option
@friendly_errors
def data_inspect(symbol: str, exchange: str | None, datasets: Path | None) -> None:
    """Show every stored series of SYMBOL: range, gaps, source, first and last rows.

    \b
    Example:
      backtester data inspect BTC/USDT:USDT --exchange binanceusdm
    """
    store = Store(datasets)
    found = [s for s in store.list(exchange) if s.symbol == symbol]
    if not found:
        msg = f"no stored data for {symbol} in {store.root}; see `backtester data list`"
        raise DataError(msg)
    click.echo(_HEADER)
    for s in found:
        click.echo(_line(store, s))
        meta = store.metadata(s.exchange, s.kind, s.symbol, s.timeframe)
        for key in ("source", "fetched_at", "price_source"):
            if meta.get(key):
                click.echo(f"  {key}: {meta[key]}")
        gaps = meta.get("gaps")
        if isinstance(gaps, dict):
            for a, b in gaps.get("gaps", [])[:5]:
                click.echo(f"  gap: {a} .. {b}")
        frame = store.read(s.exchange, s.kind, s.symbol, s.timeframe)
        if len(frame):
            click.echo("  " + frame.head(2).to_string(index=False).replace("\n", "\n  "))
            click.echo("  " + frame.tail(1).to_string(index=False, header=False))
    exchanges = sorted({s.exchange for s in found})
    for ex in exchanges:
        if store.has_json(ex, "markets"):
            market = (store.read_json(ex, "markets").get("markets") or {}).get(symbol)
            if market:
                click.echo(f"  market ({ex}): type {market.get('type')}, contractSize "
                           f"{market.get('contractSize')}, settle {market.get('settle')}")


@data_group.command("validate")
@click.option("--exchange", default=None, help="Only this dataset/exchange.")
@_outlier_option
@_datasets_option
@friendly_errors
def data_validate(exchange: str | None, outlier_multiple: float | None,
                  datasets: Path | None) -> None:
    """Check every stored file; quarantine unreadable ones. Exit 1 if anything is wrong.

    Besides unreadable and invalid files, implausible values are problems, listed with their
    times: funding beyond the exchange's cap, and returns beyond --outlier-multiple times the
    series' robust scale (docs/data.md).

    \b
    Example:
      backtester data validate --exchange binanceusdm
    """
    store = Store(datasets)
    problems = 0
    for q in store.scan(exchange):
        click.echo(f"quarantined: {q.message}", err=True)
        problems += 1
    series = store.list(exchange)
    for s in series:
        try:
            n_flagged, lines = _outliers(store, s, outlier_multiple)
        except DataError as exc:
            click.echo(f"invalid: {s.path}: {exc}", err=True)
            problems += 1
            continue
        for line in lines:
            click.echo(f"flagged: {line}", err=True)
        problems += n_flagged
    click.echo(f"{len(series)} files checked, {problems} problem(s)")
    if problems:
        sys.exit(1)


@data_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--exchange", required=True, help="Dataset/exchange name to store under.")
@click.option("--symbol", default=None, help="ccxt symbol, e.g. XRP/USDT:USDT (with FILE).")
@click.option("--kind", default=None, type=click.Choice([k.value for k in Kind]),
              help="What FILE holds (with FILE).")
@click.option("--timeframe", "-t", default=None, help="Candle timeframe (default: inferred).")
@click.option("--assume-utc", is_flag=True, help="Read time-zone-less times as UTC.")
@click.option("--markets", "markets_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="ccxt markets JSON (json.dump(exchange.load_markets())): "
                                 "the contract specs of the dataset's symbols.")
@click.option("--precision-mode", type=click.Choice(["ticks", "decimals"]), default=None,
              help="How --markets' precision fields read (default: inferred).")
@click.option("--tiers-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Leverage tiers JSON (ccxt fetch_leverage_tiers layout, e.g. freqtrade's "
                   "binance_leverage_tiers.json).")
@_outlier_option
@_datasets_option
@friendly_errors
def data_import(file: Path | None, exchange: str, symbol: str | None, kind: str | None,
                timeframe: str | None, assume_utc: bool, markets_file: Path | None,
                precision_mode: str | None, tiers_file: Path | None,
                outlier_multiple: float | None, datasets: Path | None) -> None:
    """Import a CSV, freqtrade feather or JSON(.gz) FILE into the store, and/or the
    exchange's markets (contract specs) and leverage tiers for the dataset.

    \b
    Example:
      backtester data import XRP_USDT_USDT-5m-futures.feather --exchange binanceusdm \\
          --symbol XRP/USDT:USDT --kind ohlcv
      backtester data import --exchange binanceusdm --markets markets.json \\
          --tiers-file binance_leverage_tiers.json
    """
    import time

    from backtester.data.importers import import_file
    from backtester.data.snapshots import (
        DECIMAL_PLACES,
        TICK_SIZE,
        import_markets_file,
        import_tiers_file,
    )

    if file is None and markets_file is None and tiers_file is None:
        msg = ("data import: give a data FILE (with --symbol and --kind), --markets or "
               "--tiers-file")
        raise ConfigError(msg)
    if file is not None and (symbol is None or kind is None):
        msg = (f"{'--symbol' if symbol is None else '--kind'}: required to import the data "
               f"file {file.name} (--symbol: a ccxt symbol; --kind: {_KINDS})")
        raise ConfigError(msg)
    store = Store(datasets)
    now_ms = int(time.time() * 1000)  # when the snapshot was imported (metadata only)
    if markets_file is not None:
        mode = None if precision_mode is None else (
            TICK_SIZE if precision_mode == "ticks" else DECIMAL_PLACES)
        path, count, used = import_markets_file(markets_file, store=store, exchange=exchange,
                                                precision_mode=mode, now_ms=now_ms)
        how = "ticks" if used == TICK_SIZE else "decimal places"
        click.echo(f"imported {count} markets from {markets_file.name} -> {path} "
                   f"(precision fields read as {how})")
    if tiers_file is not None:
        path = import_tiers_file(tiers_file, store=store, exchange=exchange, now_ms=now_ms)
        click.echo(f"imported leverage tiers from {tiers_file.name} -> {path}")
    if file is None or symbol is None or kind is None:
        return
    path = import_file(file, store=store, exchange=exchange, symbol=symbol, kind=kind,
                       timeframe=timeframe, assume_utc=assume_utc)
    k = Kind(kind)
    tf = None if k is Kind.FUNDING else path.stem
    meta = store.metadata(exchange, k, symbol, tf)
    click.echo(f"imported {file.name} -> {path}: {meta.get('rows')} rows "
               f"{_when(meta.get('first_ms'))} .. {_when(meta.get('last_ms'))}; {_gap_text(meta)}")
    stored = StoredSeries(exchange=exchange, kind=k, symbol=symbol, timeframe=tf, path=path,
                          rows=int(meta.get("rows") or 0), first_ms=meta.get("first_ms"),
                          last_ms=meta.get("last_ms"))
    for line in _outliers(store, stored, outlier_multiple)[1]:
        click.echo(f"warning: flagged: {line}", err=True)
