"""``backtester margin``: the margin calculator of DESIGN §4 on the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from backtester.cli import cli, friendly_errors
from backtester.errors import ConfigError


@cli.command("margin")
@click.argument("snapshot", metavar="SNAPSHOT")
@click.option("--indent", type=int, default=2, show_default=True,
              help="JSON indentation of the output (0 for one line).")
@friendly_errors
def margin_command(snapshot: str, indent: int) -> None:
    """Evaluate an account snapshot (JSON file, or - for stdin) and print its margin state.

    Prints margin balance, initial and maintenance margin, margin ratio, status
    (ok / call / liquidate) and per-position notional, tier, liquidation and bankruptcy
    prices as JSON.

    \b
    Example:
      echo '{"profile": "bybit", "collateral": {"USDT": 400},
             "prices": {"BTC/USDT:USDT": {"mark": 20000}},
             "positions": [{"symbol": "BTC/USDT:USDT", "side": "long", "size": 1,
                            "entry_price": 20000, "leverage": 50}]}' | backtester margin -
      backtester margin reports/<run>/state.json
    """
    from backtester.margin.calculator import evaluate

    text = sys.stdin.read() if snapshot == "-" else Path(snapshot).read_text(encoding="utf-8")
    where = "stdin" if snapshot == "-" else snapshot
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise ConfigError(msg) from None
    except RecursionError:
        msg = f"{where}: JSON nested too deeply to be a snapshot"
        raise ConfigError(msg) from None
    if not isinstance(data, dict):
        msg = f"{where}: expected a JSON object (the snapshot), got {type(data).__name__}"
        raise ConfigError(msg)
    result = evaluate(data)
    click.echo(json.dumps(result, indent=indent or None, allow_nan=False))
