"""A trader's first hour with their own data (issue 16): real freqtrade files, ccxt markets,
a Binance tier file, DataFrames as users have them, and the messages they get."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import backtester
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
