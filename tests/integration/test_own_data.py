"""A trader's first hour with their own data (issue 16): real freqtrade files, ccxt markets,
a Binance tier file, DataFrames as users have them, and the messages they get."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import backtester
from backtester.api import prepare
from backtester.cli import _register, cli

XRP = "XRP/USDT:USDT"
FUT = "freqtrade-testdata/futures"
MARKETS = "ccxt-static/markets/binance.derivatives.extract.json"
TIERS = "exchange/binance_leverage_tiers.json"


class Hold(backtester.Strategy):
    """Buy ``notional_usd`` of XRP at the first bar and hold it."""

    symbol: str = XRP
    notional_usd: float = 1_000.0

    def on_bar(self, ctx: Any) -> None:
        if ctx.position(self.symbol).is_flat and not ctx.open_orders(self.symbol):
            ctx.buy(self.symbol, ctx.contracts_for(self.symbol, notional=self.notional_usd))


HOLD_FILE = """
from backtester import Strategy


class Hold(Strategy):
    symbol: str = "XRP/USDT:USDT"
    notional_usd: float = 1_000.0

    def on_bar(self, ctx):
        if ctx.position(self.symbol).is_flat and not ctx.open_orders(self.symbol):
            ctx.buy(self.symbol, ctx.contracts_for(self.symbol, notional=self.notional_usd))
"""


def _feather(shared: Path, name: str) -> pd.DataFrame:
    return pd.read_feather(shared / FUT / name)


def _cli(*args: str | Path) -> Any:
    _register()
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# -- item 3: guessed contract specs are said, and markets.json fixes them ---------------------
def test_guessed_contract_specs_are_warned_with_the_tick_share_16(shared_data: Path) -> None:
    candles = _feather(shared_data, "XRP_USDT_USDT-5m-futures.feather").iloc[:300].rename(
        columns={"date": "ts"})
    result = backtester.run(Hold, data={XRP: candles}, funding="zero", profile="binance-usdm")
    # the symbol grammar's default tick 0.01 against XRP's first close 1.1941: 0.84 %
    note = [w for w in result.warnings
            if w.startswith(f"contract specs guessed from the symbol: {XRP}")]
    assert len(note) == 1
    assert f"{XRP} tick 0.01 (0.84% of the first close 1.1941)" in note[0]
    assert "instrument_from_symbol(symbol, tick_size=..., lot_size=...)" in note[0]
    # and the fills are indeed on the 0.01 grid
    assert all(Decimal(p) % Decimal("0.01") == 0 for p in result.fills["price_exact"])


def test_data_import_takes_markets_and_tiers_16(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    feather = shared_data / FUT / "XRP_USDT_USDT-5m-futures.feather"
    assert _cli("data", "import", feather, "--exchange", "binanceusdm", "--symbol", XRP,
                "--kind", "ohlcv", "--datasets", root).exit_code == 0
    guessed = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, funding="zero")
    assert any(w.startswith(f"contract specs guessed from the symbol: {XRP}")
               and "data import --markets" in w for w in guessed.warnings)

    res = _cli("data", "import", "--exchange", "binanceusdm", "--markets",
               shared_data / MARKETS, "--tiers-file", shared_data / TIERS, "--datasets", root)
    assert res.exit_code == 0, res.output
    # ccxt's static Binance extract writes precision as decimal places (XRP: price 4, amount
    # 1 with a 0.1 minimum amount)
    assert "imported 5 markets" in res.output
    assert "read as decimal places" in res.output
    assert (root / "binanceusdm/leverage_tiers.json").is_file()

    result = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, funding="zero")
    assert not any("guessed" in w for w in result.warnings)
    fill = result.fills.iloc[0]
    # the market's tick 0.0001 and lot 0.1: the first 5m open after the order is 1.1941 (the
    # first bar's close is the next open), + 2 bps slippage = 1.19433882 -> 1.1943
    assert fill["price_exact"] == "1.1943"
    assert Decimal(fill["qty_exact"]) % Decimal("0.1") == 0
    # Binance's taker rate from the market (4 bps), not the grammar's 5 bps
    assert Decimal(fill["fee_exact"]) == (Decimal(fill["qty_exact"]) * Decimal("1.1943")
                                          * Decimal("0.0004"))


def test_markets_with_ambiguous_precision_need_the_mode_16(tmp_path: Path) -> None:
    path = tmp_path / "markets.json"
    path.write_text('{"ABC/USDT:USDT": {"symbol": "ABC/USDT:USDT", "type": "swap", '
                    '"precision": {"price": 1, "amount": 1}}}')
    res = _cli("data", "import", "--exchange", "x", "--markets", path, "--datasets", tmp_path)
    assert res.exit_code == 2
    assert "say which with --precision-mode ticks|decimals" in res.output
    ok = _cli("data", "import", "--exchange", "x", "--markets", path, "--precision-mode",
              "ticks", "--datasets", tmp_path)
    assert ok.exit_code == 0
    assert "read as ticks" in ok.output


# -- item 2: DataFrames as users have them ------------------------------------------------------
def _as_ms(stamps: pd.Series) -> pd.Series:
    return stamps.dt.as_unit("ms").astype("int64")


def _user_frames(d: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rows = d.assign(date=_as_ms(d["date"])).to_numpy().tolist()  # fetch_ohlcv's row lists
    return {
        "freqtrade date column": d,
        "DatetimeIndex named None": d.set_index("date").rename_axis(None),
        "DatetimeIndex named datetime": d.set_index("date").rename_axis("datetime"),
        "timestamp column of epoch ms": d.assign(timestamp=_as_ms(d["date"])).drop(
            columns="date"),
        "ccxt fetch_ohlcv rows": pd.DataFrame(rows).astype({0: "int64"}),
        "ccxt rows with names": pd.DataFrame(rows, columns=["timestamp", "Open", "High", "Low",
                                                            "Close", "Volume"]).astype(
            {"timestamp": "int64"}),
    }


def test_dataframes_as_users_have_them_16(shared_data: Path) -> None:
    # before: KeyError: 'ts' from data/feed.py for every form but a 'ts' column
    candles = _feather(shared_data, "XRP_USDT_USDT-5m-futures.feather").iloc[:60]
    want = backtester.run(Hold, data={XRP: candles.rename(columns={"date": "ts"})},
                          funding="zero", profile="binance-usdm")
    assert len(want.fills) == 1
    for name, frame in _user_frames(candles).items():
        got = backtester.run(Hold, data={XRP: frame}, funding="zero", profile="binance-usdm")
        assert got.equity.index.equals(want.equity.index), name
        assert got.fills[["ts", "price_exact", "qty_exact"]].equals(
            want.fills[["ts", "price_exact", "qty_exact"]]), name
        # the run's start and end cut the frames whatever their form (feed._clip)
        cut = backtester.run(Hold, data={XRP: frame}, funding="zero", profile="binance-usdm",
                             start="2021-11-15T01:00", end="2021-11-15T02:00")
        assert len(cut.equity) == 12, name


@pytest.mark.parametrize(("form", "words"), [
    ("naive index", "ohlcv XRP/USDT:USDT: timestamps have no time zone; localize them first "
                    "(df.index = df.index.tz_localize('UTC')"),
    ("naive column", "timestamps have no time zone"),
    ("seconds", "integer timestamps are read as epoch milliseconds, but 1636940100 looks like "
                "seconds"),  # the last of 20 5m bars from 2021-11-15, in seconds
    ("no time", "ohlcv XRP/USDT:USDT: no time column: expected a 'ts', 'date' or 'timestamp' "
                "column or a DatetimeIndex"),
])
def test_dataframes_without_usable_times_get_one_line_16(shared_data: Path, form: str,
                                                         words: str) -> None:
    d = _feather(shared_data, "XRP_USDT_USDT-5m-futures.feather").iloc[:20]
    frame = {"naive index": d.set_index("date").tz_localize(None),
             "naive column": d.assign(date=d["date"].dt.tz_localize(None)),
             "seconds": d.assign(date=d["date"].dt.as_unit("s").astype("int64")),
             "no time": d.drop(columns="date")}[form]
    with pytest.raises(backtester.DataError) as err:
        backtester.run(Hold, data={XRP: frame}, funding="zero", profile="binance-usdm")
    assert words in str(err.value)
    assert "\n" not in str(err.value)


# -- item 1: a dataset with several timeframes, and mark candles of another timeframe -----------
def _import_xrp(shared: Path, root: Path) -> None:
    files = (("XRP_USDT_USDT-5m-futures.feather", "ohlcv"),
             ("XRP_USDT_USDT-1h-futures.feather", "ohlcv"),
             ("XRP_USDT_USDT-1h-mark.feather", "mark"),
             ("XRP_USDT_USDT-8h-funding_rate.feather", "funding"))
    for name, kind in files:
        res = _cli("data", "import", shared / FUT / name, "--exchange", "binanceusdm",
                   "--symbol", XRP, "--kind", kind, "--datasets", root)
        assert res.exit_code == 0, res.output


def test_timeframe_key_and_flag_choose_the_trade_candles_16(shared_data: Path,
                                                            tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _import_xrp(shared_data, root)
    strat = tmp_path / "hold.py"
    strat.write_text(HOLD_FILE)
    common = ("--dataset", "binanceusdm", "--datasets", root, "--output-dir",
              tmp_path / "reports", "--start", "2021-11-18", "--quiet")

    res = _cli("run", strat, *common)
    assert res.exit_code == 2
    # before: "...holds several timeframes (5m, 1h); choose one", with no way to choose
    assert res.output.strip() == ("error: dataset binanceusdm holds several timeframes (5m, 1h);"
                                  " choose one: --timeframe 5m or --timeframe 1h")
    ok = _cli("run", strat, *common, "--timeframe", "5m")
    assert ok.exit_code == 0, ok.output

    # the same key in Python, in run.toml, and in a sweep
    with pytest.raises(backtester.ConfigError, match="choose one: timeframe='5m' or "
                                                     "timeframe='1h'"):
        backtester.run(Hold, dataset="binanceusdm", datasets_root=root)
    hourly = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, timeframe="1h",
                            start="2021-11-18")
    assert hourly.equity.index[1] - hourly.equity.index[0] == pd.Timedelta(hours=1)
    toml = tmp_path / "run.toml"
    toml.write_text('timeframe = "5m"\nstart = "2021-11-18"\n')
    five = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, config_file=toml)
    assert five.equity.index[1] - five.equity.index[0] == pd.Timedelta(minutes=5)
    swept = _cli("sweep", strat, "--dataset", "binanceusdm", "--timeframe", "5m", "--grid",
                 "notional_usd=500,1000", "--workers", "1", "--start", "2021-11-18",
                 "--datasets", root, "--output-dir", tmp_path / "sweeps", "--quiet")
    assert swept.exit_code == 0, swept.output
    table = pd.read_parquet(Path(swept.output.strip()) / "results.parquet")
    assert table["error"].isna().all()
    assert (table["trades"] == 1).all()


def test_hourly_marks_drive_margin_on_5m_bars_without_look_ahead_16(shared_data: Path,
                                                                    tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _import_xrp(shared_data, root)
    prep = prepare(Hold, dataset="binanceusdm", datasets_root=root, timeframe="5m",
                              funding="zero")
    f = prep.feed.symbols[XRP]
    at = {pd.Timestamp(t, unit="ms", tz="UTC").strftime("%m-%d %H:%M"): i
          for i, t in enumerate(f.ts_np.tolist())}
    a = f.arrays
    # before: "mark candles missing for 1999 of 1999 bars": the 1h marks were ignored
    # the first hourly mark bar (06:00-07:00) closes with the 06:55 5m bar: usable from it on;
    # 83 bars close before it (00:00..06:50) and 716 after the last mark bar (09:00 on 11-19,
    # closed 10:00) stops being usable at 11:00 (bars 10:55 on 11-19 .. 22:30 on 11-21)
    assert f.mark_fallback_bars == 83 + 716
    assert f.mark_missing[at["11-15 06:50"]]
    assert not f.mark_missing[at["11-15 06:55"]]
    assert not f.mark_missing[at["11-19 10:50"]]
    assert f.mark_missing[at["11-19 10:55"]]
    # at 06:55 (closes 07:00) the 06:00 mark bar closes: its close 1.21431, its low 1.20763
    # and high 1.21787 beyond the scaled trade extremes (ratio 1.21431 / 1.2152 = 0.99927)
    i = at["11-15 06:55"]
    assert a["mark_close"][i] == 1.21431
    assert a["mark_low"][i] == 1.20763
    assert a["mark_high"][i] == 1.21787
    # the 07:00 bar: the 07:00 mark bar is still open (closes 08:00), so the 5m candle
    # (1.2153 / 1.2214 / 1.2152 / 1.2161) is carried by that last known ratio
    ratio = 1.21431 / 1.2152
    i = at["11-15 07:00"]
    for key, trade in (("open", 1.2153), ("high", 1.2214), ("low", 1.2152), ("close", 1.2161)):
        assert a[f"mark_{key}"][i] == pytest.approx(trade * ratio, rel=1e-15)
    assert a["mark_close"][i] != 1.20895  # not the 07:00 mark bar's own close (look-ahead)
    note = [w for w in backtester.run(Hold, dataset="binanceusdm", datasets_root=root,
                                      timeframe="5m", funding="zero").warnings
            if w.startswith(f"{XRP}: mark candles are 1h, trade candles 5m")]
    assert len(note) == 1
    assert "a mark bar is used only after it closes" in note[0]


def test_funding_mark_from_hourly_marks_is_the_candle_at_the_stamp_16(
        shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _import_xrp(shared_data, root)
    result = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, timeframe="5m",
                            start="2021-11-17T20:00")
    first = next(e for e in result.events if e["event"] == "FundingPaid")
    # the stamp 2021-11-18 00:00:00.017 floored to the second; the 1h mark candle opening then
    # opens at 1.09503 (the 5m bar opening then is 1.0968: not the trade price)
    assert first["time"] == "2021-11-18T00:00:00Z"
    assert first["mark"] == 1.09503
    assert first["mark_source"] == "mark"


# -- item 4: which profile a run uses, and why ------------------------------------------------
def test_a_dataset_of_unknown_exchange_needs_a_profile_16(shared_data: Path,
                                                          tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    assert _cli("data", "import", shared_data / FUT / "XRP_USDT_USDT-5m-futures.feather",
                "--exchange", "my-xrp", "--symbol", XRP, "--kind", "ohlcv",
                "--datasets", root).exit_code == 0
    strat = tmp_path / "hold.py"
    strat.write_text(HOLD_FILE)
    args = ("run", strat, "--dataset", "my-xrp", "--datasets", root, "--funding", "zero",
            "--output-dir", tmp_path / "reports")
    # before: the run silently used the bybit profile
    res = _cli(*args)
    assert res.exit_code == 2
    assert res.output.startswith("error: cannot tell which exchange's margin rules apply to "
                                 "dataset 'my-xrp'")
    assert "give --profile binance-usdm or another of binance-usdm, binance-coinm" in res.output
    assert len(res.output.strip().splitlines()) == 1
    with pytest.raises(backtester.ConfigError, match="give profile='binance-usdm'"):
        backtester.run(Hold, dataset="my-xrp", datasets_root=root, funding="zero")

    ok = _cli(*args, "--profile", "binance-usdm")
    assert ok.exit_code == 0, ok.output
    assert "profile binance-usdm: given" in ok.output


def test_the_run_says_which_profile_and_why_16(shared_data: Path, tmp_path: Path) -> None:
    from backtester.data.snapshots import write_markets_snapshot
    from backtester.data.store import Store
    from backtester.instruments import instrument_from_ccxt

    root = tmp_path / "datasets"
    for name in ("binanceusdm", "renamed"):
        assert _cli("data", "import", shared_data / FUT / "XRP_USDT_USDT-5m-futures.feather",
                    "--exchange", name, "--symbol", XRP, "--kind", "ohlcv",
                    "--datasets", root).exit_code == 0
    named = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, funding="zero")
    assert named.meta["profile"] == "binance-usdm"
    assert named.meta["profile_reason"] == "the dataset name binanceusdm is that exchange's " \
                                           "ccxt id"
    # a fetched dataset moved to another folder: its markets snapshot says where it came from
    market = __import__("json").loads((shared_data / MARKETS).read_text())[XRP]
    fetched = write_markets_snapshot(Store(tmp_path / "elsewhere"), "binanceusdm",
                                     {XRP: market}, precision_mode=2, source="ccxt 4.5.90",
                                     now_ms=0)
    fetched.replace(root / "renamed" / "markets.json")
    moved = backtester.run(Hold, dataset="renamed", datasets_root=root, funding="zero")
    assert moved.meta["profile"] == "binance-usdm"
    assert moved.meta["profile_reason"] == "the data comes from binanceusdm (its markets)"
    # in-memory data: from the instruments' exchange, else the default, said in the warnings
    candles = _feather(shared_data, "XRP_USDT_USDT-5m-futures.feather").iloc[:50]
    inst = instrument_from_ccxt(market, exchange="binanceusdm", precision_mode=2)
    frames = backtester.run(Hold, data={XRP: candles}, instruments={XRP: inst},
                            funding="zero")
    assert frames.meta["profile"] == "binance-usdm"
    default = backtester.run(Hold, data={XRP: candles}, funding="zero")
    assert default.meta["profile"] == "bybit"
    assert "profile bybit: no profile given for in-memory data: bybit, the default; give " \
           "profile='binance-usdm' (or another exchange's) for that exchange's margin rules" \
           in default.warnings
    assert config_of(default.write(tmp_path / "run"))["profile_reason"].startswith(
        "no profile given")


def config_of(path: Path) -> dict[str, Any]:
    return dict(__import__("json").loads((path / "config.json").read_text()))


# -- item 5: funding history that covers only part of the run -----------------------------------
def test_held_before_the_funding_history_is_an_error_naming_the_span_16(
        shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _import_xrp(shared_data, root)
    # before: held from 2021-11-15 00:05, charged nothing until the history starts on 11-18
    with pytest.raises(backtester.DataError) as err:
        backtester.run(Hold, dataset="binanceusdm", datasets_root=root, timeframe="5m")
    assert str(err.value) == (
        "XRP/USDT:USDT is held at the funding time 2021-11-15T08:00:00Z, before its funding "
        "history starts at 2021-11-18T00:00:00Z: no funding rates from 2021-11-15T00:00:00Z "
        "to 2021-11-18T00:00:00Z; fetch funding for that span, or run with "
        "funding='history_or_zero' to charge zero there")

    strat = tmp_path / "hold.py"
    strat.write_text(HOLD_FILE)
    res = _cli("run", strat, "--dataset", "binanceusdm", "--datasets", root, "-t", "5m",
               "--output-dir", tmp_path / "reports")
    assert res.exit_code == 2
    assert res.output.strip().endswith("or run with --funding history_or_zero to charge zero "
                                       "there")

    zero = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, timeframe="5m",
                          funding="history_or_zero")
    # 11-15 08:00 .. 11-17 16:00 every 8h = 8 stamps uncovered; 11-18 00:00 .. 11-21 16:00 =
    # 12 stamps paid from the history
    assert ("funding charged zero for XRP/USDT:USDT at 8 funding time(s) outside its history "
            "(2021-11-15T08:00:00Z .. 2021-11-17T16:00:00Z; the history covers "
            "2021-11-18T00:00:00Z .. 2021-12-18T00:00:00Z), as asked "
            "(funding='history_or_zero')") in zero.warnings
    paid = [e for e in zero.events if e["event"] == "FundingPaid"]
    assert len(paid) == 12
    assert paid[0]["time"] == "2021-11-18T00:00:00Z"


def test_no_stale_funding_warning_when_funding_is_given_16(shared_data: Path,
                                                           tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    assert _cli("data", "import", shared_data / FUT / "XRP_USDT_USDT-5m-futures.feather",
                "--exchange", "binanceusdm", "--symbol", XRP, "--kind", "ohlcv",
                "--datasets", root).exit_code == 0
    result = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, funding="zero")
    # before: "funding history missing for XRP/USDT:USDT: runs need funding='zero' to proceed
    # without it", in a run that said funding='zero'
    assert not any("funding" in w for w in result.warnings)
    with pytest.raises(backtester.DataError) as err:
        backtester.run(Hold, dataset="binanceusdm", datasets_root=root)
    # an ISO time, never epoch ms (was "held at 1636934700000")
    assert str(err.value) == (
        "no funding history for XRP/USDT:USDT, which is held at 2021-11-15T00:10:00Z: fetch "
        "its funding, or run with funding='history_or_zero' to charge zero where history is "
        "missing (funding='zero': no funding at all)")
    zero = backtester.run(Hold, dataset="binanceusdm", datasets_root=root,
                          funding="history_or_zero")
    assert ("no funding history for XRP/USDT:USDT: funding charged zero while it was held "
            "(from 2021-11-15T00:10:00Z), as asked (funding='history_or_zero')") in zero.warnings


# -- item 7: failures must be loud ------------------------------------------------------------
def _xrp_with_tiers(shared: Path, root: Path) -> None:
    _import_xrp(shared, root)
    res = _cli("data", "import", "--exchange", "binanceusdm", "--markets", shared / MARKETS,
               "--tiers-file", shared / TIERS, "--datasets", root)
    assert res.exit_code == 0, res.output


def test_leverage_above_the_first_bracket_is_refused_before_the_run_16(
        shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _xrp_with_tiers(shared_data, root)
    strat = tmp_path / "hold.py"
    strat.write_text(HOLD_FILE)
    out = tmp_path / "reports"
    args = ("run", strat, "--dataset", "binanceusdm", "--datasets", root, "-t", "5m",
            "--start", "2021-11-18", "--output-dir", out)
    # before: exit 0, 0 trades, a normal summary, every order in rejections.parquet.
    # Binance's XRP/USDT:USDT first bracket: notional 0 .. 10,000 at up to 75x
    res = _cli(*args, "--leverage", "500")
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: leverage 500 for XRP/USDT:USDT is above the exchange maximum 75 of its first "
        "leverage bracket (notional up to 10,000) in the binance-usdm profile; every order "
        "would be rejected: give --leverage XRP/USDT:USDT=75 or less")
    assert not out.exists()  # nothing written
    assert _cli(*args, "--leverage", "XRP/USDT:USDT=75", "--quiet").exit_code == 0
    with pytest.raises(backtester.ConfigError, match="give leverage='XRP/USDT:USDT=75' or less"):
        backtester.run(Hold, dataset="binanceusdm", datasets_root=root, timeframe="5m",
                       start="2021-11-18", leverage=76)

    class TooMuch(Hold):
        def on_start(self, ctx: Any) -> None:
            ctx.set_leverage(XRP, 100)

    with pytest.raises(backtester.ConfigError, match="leverage 100 for XRP/USDT:USDT is above"):
        backtester.run(TooMuch, dataset="binanceusdm", datasets_root=root, timeframe="5m",
                       start="2021-11-18")


def test_rejections_by_reason_in_the_summary_and_warnings_16(shared_data: Path,
                                                            tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _xrp_with_tiers(shared_data, root)
    strat = tmp_path / "hold.py"
    strat.write_text(HOLD_FILE)
    res = _cli("run", strat, "--dataset", "binanceusdm", "--datasets", root, "-t", "5m",
               "--start", "2021-11-18", "--collateral", "USDT=10", "--output-dir",
               tmp_path / "reports")
    assert res.exit_code == 0, res.output
    # 1,000 USDT of XRP at the default 20x needs 50 USDT of initial margin: every bar's order
    # (1,135 bars from 2021-11-18 00:00 to 11-21 22:30) is refused for insufficient margin
    assert "1,135 orders rejected (rejections.parquet)" in res.output
    assert "insufficient_margin" in res.output
    result = backtester.run(Hold, dataset="binanceusdm", datasets_root=root, timeframe="5m",
                            start="2021-11-18", collateral={"USDT": 10})
    assert len(result.fills) == 0
    note = [w for w in result.warnings if "order(s) rejected" in w]
    # the first order: 1,000 USDT at the 00:00 bar's close 1.0924 = 915.4 XRP (lot 0.1),
    # 915.4 x 1.0924 / 20 = 49.999 USDT of initial margin
    assert note == [
        "1,135 order(s) rejected: insufficient_margin 1,135 (first at 2021-11-18T00:05:00Z, "
        "insufficient_margin: initial margin 50.00 USD exceeds available 10.00 USD for buy "
        "915.4 XRP/USDT:USDT); every rejection is in rejections.parquet"]


# -- item 8: a run folder per strategy version, never overwritten silently ----------------------
def test_run_folder_follows_the_strategy_source_and_parameters_16(shared_data: Path,
                                                                  tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    assert _cli("data", "import", shared_data / FUT / "XRP_USDT_USDT-5m-futures.feather",
                "--exchange", "binanceusdm", "--symbol", XRP, "--kind", "ohlcv",
                "--datasets", root).exit_code == 0
    strat = tmp_path / "hold.py"
    out = tmp_path / "reports"

    def run(*extra: str) -> tuple[Path, str]:
        res = _cli("run", strat, "--dataset", "binanceusdm", "--datasets", root, "--funding",
                   "zero", "--end", "2021-11-15T06:00", "--output-dir", out, "--quiet", *extra)
        assert res.exit_code == 0, res.output
        lines = res.output.strip().splitlines()
        # the folder note, among the run's warnings on stderr (here: the guessed specs)
        notes = [ln for ln in lines[:-1] if "finished run" in ln or "identical run" in ln]
        return Path(lines[-1]), "\n".join(notes)

    strat.write_text(HOLD_FILE)
    first, note = run()
    assert note == ""
    assert first.name.startswith("Hold-binanceusdm-")
    # the same strategy again: the same folder, replaced, and said
    again, note = run()
    assert again == first
    assert note == (f"warning: replaced the earlier identical run in {first} (same strategy "
                    "source, parameters, configuration and data)")
    # an edit outside the class (a comment, a helper) is another strategy version; so is a
    # new default parameter value. Before: one folder, the earlier results overwritten
    strat.write_text(HOLD_FILE + "\n# tweaked\n")
    edited, note = run()
    strat.write_text(HOLD_FILE.replace("1_000.0", "1_500.0"))
    bigger, note2 = run()
    assert len({first, edited, bigger}) == 3
    assert note == note2 == ""
    assert all((p / "config.json").is_file() for p in (first, edited, bigger))
    cfg = json.loads((bigger / "config.json").read_text())
    assert cfg["params"] == {"notional_usd": 1500.0, "symbol": XRP}
    assert len(cfg["strategy_source_hash"]) == 16
    assert bigger.name == f"Hold-binanceusdm-{cfg['run_hash'][:8]}"
    # a folder named by the user that holds another finished run is kept
    mine, _ = run("--run-id", "mine")
    strat.write_text(HOLD_FILE)
    other, note = run("--run-id", "mine")
    assert other == mine.parent / "mine-2"
    assert note == (f"warning: {mine} holds another finished run, kept; this run is in "
                    f"{other} (--overwrite replaces it, --run-id names another folder)")
    assert json.loads((mine / "config.json").read_text())["params"]["notional_usd"] == 1500.0
    replaced, note = run("--run-id", "mine", "--overwrite")
    assert replaced == mine
    assert note == f"warning: replaced the finished run in {mine} (--overwrite)"
    assert json.loads((mine / "config.json").read_text())["params"]["notional_usd"] == 1000.0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [first.name, edited.name, bigger.name, "mine", "mine-2"])  # no staging left over


def test_example_strategies_have_distinct_source_hashes_16() -> None:
    from backtester.runs.runner import load_strategy, strategy_source_hash

    repo = Path(__file__).resolve().parents[2]
    names = ("hedged_pair", "delta_hedged_strangle", "vol_target_trend")
    hashes = {strategy_source_hash(load_strategy(str(repo / "strategies" / f"{n}.py")))
              for n in names}
    assert len(hashes) == 3
