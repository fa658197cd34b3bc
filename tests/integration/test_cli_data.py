"""``backtester fetch`` and ``backtester data ...`` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from backtester.cli import _register, cli
from tests.integration.fake_exchange import FakeExchange

XRP = "XRP/USDT:USDT"
FUT = "freqtrade-testdata/futures"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    _register()
    return CliRunner()


def _invoke(runner: CliRunner, *args: str | Path):  # type: ignore[no-untyped-def]
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_fetch_command_over_loopback(runner: CliRunner, fake_exchange: FakeExchange,
                                     tmp_path: Path, shared_data: Path) -> None:
    res = _invoke(runner, "fetch", "binanceusdm", XRP, "--kinds", "ohlcv,funding",
                  "-t", "5m", "--since", "2021-11-20", "--until", "2021-11-21T22:35",
                  "--base-url", fake_exchange.base, "--exchange-option", "rateLimit=1",
                  "--tiers-file", shared_data / "exchange/binance_leverage_tiers.json",
                  "--datasets", tmp_path)

    assert res.exit_code == 0, res.output
    assert "ohlcv XRP/USDT:USDT 5m: +559 rows" in res.output
    assert "funding XRP/USDT:USDT: +6 rows" in res.output
    assert (tmp_path / "binanceusdm/leverage_tiers.json").exists()


def test_fetch_errors_are_one_line_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    res = _invoke(runner, "fetch", "binanceusdm", XRP, "--since", "yesterday-ish",
                  "--datasets", tmp_path)

    assert res.exit_code == 2
    assert res.output.strip().startswith("error: --since: not a UTC date")
    assert len(res.output.strip().splitlines()) == 1


def test_import_list_inspect_validate(runner: CliRunner, tmp_path: Path,
                                      shared_data: Path) -> None:
    imp = _invoke(runner, "data", "import", shared_data / FUT / "XRP_USDT_USDT-5m-futures.feather",
                  "--exchange", "binanceusdm", "--symbol", XRP, "--kind", "ohlcv",
                  "--datasets", tmp_path)
    _invoke(runner, "data", "import",
            shared_data / FUT / "XRP_USDT_USDT-8h-funding_rate.feather", "--exchange",
            "binanceusdm", "--symbol", XRP, "--kind", "funding", "--datasets", tmp_path)

    listing = _invoke(runner, "data", "list", "--datasets", tmp_path)
    inspect = _invoke(runner, "data", "inspect", XRP, "--datasets", tmp_path)
    ok = _invoke(runner, "data", "validate", "--datasets", tmp_path)

    assert imp.exit_code == 0
    assert "1999 rows" in imp.output
    # a header names the columns (issue 16 item 13)
    assert listing.output.splitlines()[0].split()[:5] == ["dataset", "kind", "symbol", "tf",
                                                          "rows"]
    assert inspect.output.splitlines()[0].startswith("dataset ")
    assert "2021-11-15T00:00:00Z .. 2021-11-21T22:30:00Z  no gaps" in listing.output
    assert "funding" in listing.output
    assert "91 rows" in listing.output
    assert "source: import XRP_USDT_USDT-5m-futures.feather" in inspect.output
    assert ok.exit_code == 0
    assert "2 files checked, 0 problem(s)" in ok.output


def test_validate_quarantines_a_truncated_file(runner: CliRunner, tmp_path: Path,
                                               shared_data: Path) -> None:
    _invoke(runner, "data", "import", shared_data / FUT / "XRP_USDT_USDT-1h-futures.feather",
            "--exchange", "binanceusdm", "--symbol", XRP, "--kind", "ohlcv",
            "--datasets", tmp_path)
    path = tmp_path / "binanceusdm/ohlcv/XRP-USDT_USDT/1h.parquet"
    path.write_bytes(path.read_bytes()[:-40])

    listing = _invoke(runner, "data", "list", "--datasets", tmp_path)
    res = _invoke(runner, "data", "validate", "--datasets", tmp_path)

    assert "UNREADABLE" in listing.output
    assert res.exit_code == 1
    assert f"quarantined: unreadable Parquet file {path}" in res.output
    assert path.with_name("1h.parquet.corrupt").exists()
    assert not path.exists()


def test_inspect_unknown_symbol(runner: CliRunner, tmp_path: Path) -> None:
    res = _invoke(runner, "data", "inspect", "DOGE/USDT:USDT", "--datasets", tmp_path)

    assert res.exit_code == 2
    assert "error: no stored data for DOGE/USDT:USDT" in res.output
