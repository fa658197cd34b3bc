"""Instrument contract math, ccxt market parsing and the symbol grammar."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backtester import ConfigError, InstrumentKind, OptionType
from backtester.instruments import instrument_from_ccxt, instrument_from_symbol
from backtester.timeutil import parse_utc_ms

RATES = {"maker_rate": Decimal("0.0002"), "taker_rate": Decimal("0.0005")}  # 2 / 5 bps
LINEAR = instrument_from_symbol("BTC/USDT:USDT", **RATES)
# 100 USD face per contract (grammar default)
INVERSE = instrument_from_symbol("BTC/USD:BTC", **RATES)


# -- linear -------------------------------------------------------------------------------
def test_linear_notional_and_pnl() -> None:
    # 2 BTC at 50,000 = 100,000 USDT; long 2 from 50,000 to 51,000 = +2,000 USDT
    assert LINEAR.notional(2.0, 50_000.0) == 100_000.0
    assert LINEAR.notional(-2.0, 50_000.0) == 100_000.0  # absolute value
    assert LINEAR.pnl(2.0, 50_000.0, 51_000.0) == 2_000.0
    assert LINEAR.pnl(-2.0, 50_000.0, 51_000.0) == -2_000.0
    assert LINEAR.value_per_point(2.0, 50_000.0) == 2.0


def test_linear_exact_math() -> None:
    # 0.003 BTC at 60,000.1 = 180.0003 USDT; taker 5 bps of that = 0.09000015
    q, p = Decimal("0.003"), Decimal("60000.1")
    assert LINEAR.notional_exact(q, p) == Decimal("180.0003")
    assert LINEAR.pnl_exact(q, p, Decimal("60100.1")) == Decimal("0.3")
    assert LINEAR.fee_exact(q, p, is_maker=False) == Decimal("0.09000015")
    # maker 2 bps = 0.000036006 (booked to 1e-12)
    assert LINEAR.fee_exact(-q, p, is_maker=True) == Decimal("0.036000060000")


# -- inverse ------------------------------------------------------------------------------
def test_inverse_contract_size_and_notional() -> None:
    assert INVERSE.is_inverse
    assert INVERSE.contract_size == Decimal(100)
    # 10 contracts x 100 USD = 1,000 USD face; at 50,000 that is 0.02 BTC
    assert INVERSE.notional(10.0, 50_000.0) == pytest.approx(0.02, rel=1e-15)
    assert INVERSE.notional_usd(10.0, 50_000.0) == 1_000.0


def test_inverse_pnl_float_and_exact() -> None:
    # long 1,000 USD face: 1000 x (1/40,000 - 1/50,000) = 0.025 - 0.02 = +0.005 BTC
    assert INVERSE.pnl(10.0, 40_000.0, 50_000.0) == pytest.approx(0.005, rel=1e-12)
    assert INVERSE.pnl(10.0, 50_000.0, 40_000.0) == pytest.approx(-0.005, rel=1e-12)
    assert INVERSE.pnl_exact(Decimal(10), Decimal(40_000), Decimal(50_000)) == Decimal("0.005")
    # short loses when price rises: -1000 x (1/40,000 - 1/50,000) = -0.005
    assert INVERSE.pnl_exact(Decimal(-10), Decimal(40_000), Decimal(50_000)) == Decimal("-0.005")
    # d pnl / d price = 1000 / 50,000^2 = 4e-7 BTC per USD
    assert INVERSE.value_per_point(10.0, 50_000.0) == pytest.approx(4e-7, rel=1e-12)


def test_inverse_fee_is_in_coin() -> None:
    # 10 contracts at 50,000 = 0.02 BTC notional; taker 5 bps = 0.00001 BTC
    assert INVERSE.fee_exact(Decimal(10), Decimal(50_000), is_maker=False) == Decimal("0.00001")


def test_an_instrument_without_fee_rates_refuses_to_charge_fees() -> None:
    # the symbol grammar (and a ccxt market without maker/taker) states no fee rates: a run
    # charges its profile's (backtester.margin.sources); a bare instrument has none to use
    bare = instrument_from_symbol("BTC/USDT:USDT")
    assert bare.maker_rate is None
    assert bare.taker_rate is None
    with pytest.raises(ConfigError, match=r"BTC/USDT:USDT: no taker fee rate"):
        bare.fee_exact(Decimal(1), Decimal(50_000), is_maker=False)
    market = {"symbol": "ETH/USDT:USDT", "type": "swap", "swap": True, "linear": True,
              "base": "ETH", "quote": "USDT", "settle": "USDT", "taker": 0.0004}
    inst = instrument_from_ccxt(market)
    assert (inst.maker_rate, inst.taker_rate) == (None, Decimal("0.0004"))


# -- options ------------------------------------------------------------------------------
def test_deribit_inverse_call_payoff_margin_rules_7_7() -> None:
    # margin-rules §7.7: call K 10,000 bought for 0.05 BTC, S 12,500 -> payoff (12,500-10,000)
    # / 12,500 = 0.2 BTC, PnL 0.2 - 0.05 = +0.15 BTC
    call = instrument_from_symbol("BTC/USD:BTC-240628-10000-C", is_linear=False)
    assert call.is_option
    assert call.option_type is OptionType.CALL
    assert call.strike == 10_000.0
    payoff = call.option_payoff(12_500.0)
    assert payoff == pytest.approx(0.2, rel=1e-15)
    assert payoff - 0.05 == pytest.approx(0.15, rel=1e-12)
    assert call.option_payoff(9_000.0) == 0.0


def test_deribit_inverse_put_payoff_margin_rules_7_7() -> None:
    # margin-rules §7.7: put K 10,000, S 5,000 -> (10,000 - 5,000) / 5,000 = 1 BTC payoff
    put = instrument_from_symbol("BTC/USD:BTC-240628-10000-P", is_linear=False)
    assert put.option_type is OptionType.PUT
    assert put.option_payoff(5_000.0) == 1.0
    assert put.option_payoff(12_000.0) == 0.0


def test_linear_option_payoff_in_quote() -> None:
    # USDT-settled call K 800, S 950 -> 150 USDT per ETH
    call = instrument_from_symbol("ETH/USDT:USDT-231229-800-C")
    assert call.is_linear
    assert call.option_payoff(950.0) == 150.0


def test_option_payoff_on_a_perp_is_config_error() -> None:
    with pytest.raises(ConfigError, match="not an option"):
        LINEAR.option_payoff(1.0)


# -- symbol grammar -----------------------------------------------------------------------
@pytest.mark.parametrize(("symbol", "kind", "linear", "settle"), [
    ("BTC/USDT:USDT", InstrumentKind.PERPETUAL, True, "USDT"),
    ("BTC/USD:BTC", InstrumentKind.PERPETUAL, False, "BTC"),
    ("ETH/USDT:USDT-240628", InstrumentKind.FUTURE, True, "USDT"),
    ("BTC/USD:BTC-240628-60000-P", InstrumentKind.OPTION, False, "BTC"),
    ("BTC/USDT", InstrumentKind.SPOT, True, "USDT"),
])
def test_symbol_grammar(symbol: str, kind: InstrumentKind, linear: bool, settle: str) -> None:
    inst = instrument_from_symbol(symbol)
    assert inst.kind is kind
    assert inst.is_linear is linear
    assert inst.settle == settle


def test_symbol_grammar_expiry_is_08_utc() -> None:
    inst = instrument_from_symbol("ETH/USDT:USDT-240628")
    assert inst.expiry_ms == parse_utc_ms("2024-06-28T08:00")
    assert not inst.is_expired(parse_utc_ms("2024-06-28T07:59"))
    assert inst.is_expired(parse_utc_ms("2024-06-28T08:00"))


@pytest.mark.parametrize("bad", ["BTCUSDT", "BTC-USDT", "", "btc/usdt:usdt:x"])
def test_symbol_grammar_rejects_bad_symbols(bad: str) -> None:
    with pytest.raises(ConfigError, match="ccxt grammar"):
        instrument_from_symbol(bad)


def test_future_without_expiry_is_rejected() -> None:
    with pytest.raises(ConfigError, match="needs an expiry"):
        instrument_from_ccxt({"symbol": "X/USDT:USDT-240628", "type": "future"})


# -- ccxt markets -------------------------------------------------------------------------
def _binance(shared: Path) -> dict[str, Any]:
    path = shared / "ccxt-static" / "markets" / "binance.derivatives.extract.json"
    return dict(json.loads(path.read_text()))


@pytest.mark.shared
def test_binance_linear_perp_from_ccxt(shared_data: Path) -> None:
    # this extract uses ccxt precisionMode DECIMAL_PLACES (2): amount 3 -> lot 0.001, price 1 -> 0.1
    inst = instrument_from_ccxt(_binance(shared_data)["BTC/USDT:USDT"], exchange="binanceusdm",
                                precision_mode=2)
    assert inst.kind is InstrumentKind.PERPETUAL
    assert inst.is_linear
    assert inst.expiry_ms is None
    assert inst.lot_size == Decimal("0.001")
    assert inst.tick_size == Decimal("0.1")
    assert inst.min_qty == Decimal("0.001")
    assert inst.min_notional == Decimal(5)
    assert inst.taker_rate == Decimal("0.0004")
    assert inst.maker_rate == Decimal("0.0002")


@pytest.mark.shared
def test_binance_inverse_perp_from_ccxt(shared_data: Path) -> None:
    inst = instrument_from_ccxt(_binance(shared_data)["BTC/USD:BTC"], precision_mode=2)
    assert inst.kind is InstrumentKind.PERPETUAL
    assert inst.is_inverse
    assert inst.settle == "BTC"
    assert inst.contract_size == Decimal(100)
    assert inst.lot_size == Decimal(1)  # 0 decimal places
    # 5 contracts = 500 USD face = 0.01 BTC at 50,000
    assert inst.notional(5.0, 50_000.0) == pytest.approx(0.01, rel=1e-15)


def _deribit_market(raw: dict[str, Any]) -> dict[str, Any]:
    # the fields ccxt's deribit fetchMarkets fills from /public/get_instruments
    is_perp = raw.get("settlement_period") == "perpetual"
    kind = raw["kind"]
    base, quote, settle = raw["base_currency"], raw["quote_currency"], raw["settlement_currency"]
    mtype = "swap" if is_perp else ("option" if kind == "option" else "future")
    linear = settle != base
    market: dict[str, Any] = {
        "symbol": f"{base}/{quote}:{settle}", "type": mtype, "swap": is_perp,
        "future": kind == "future" and not is_perp, "option": kind == "option",
        "linear": linear, "inverse": not linear, "base": base, "quote": quote, "settle": settle,
        "contractSize": raw["contract_size"], "expiry": raw["expiration_timestamp"],
        "maker": raw["maker_commission"], "taker": raw["taker_commission"],
        "precision": {"amount": raw["min_trade_amount"], "price": raw["tick_size"]},
        "limits": {"amount": {"min": raw["min_trade_amount"]}, "cost": {},
                   "leverage": {"max": raw.get("max_leverage")}},
    }
    if kind == "option":
        market["strike"] = raw["strike"]
        market["optionType"] = raw["option_type"]
    return market


@pytest.mark.shared
def test_deribit_perp_with_year_3000_expiry_is_a_perp(shared_data: Path) -> None:
    raw = json.loads((shared_data / "nautilus-trader" / "deribit"
                      / "http_get_instruments.json").read_text())["result"]
    perp_raw = next(r for r in raw if r["instrument_name"] == "BTC-PERPETUAL")
    assert perp_raw["expiration_timestamp"] == 32503708800000  # 3000-01-01
    market = _deribit_market(perp_raw)
    inst = instrument_from_ccxt(market, exchange="deribit")
    assert inst.kind is InstrumentKind.PERPETUAL
    assert inst.expiry_ms is None
    assert inst.is_inverse
    assert inst.contract_size == Decimal(10)
    assert inst.tick_size == Decimal("0.5")
    assert inst.max_leverage == 50.0
    # a market dict typed "future" but expiring in year 3000 is still a perp
    as_future = {**market, "type": "future", "swap": False, "future": True}
    assert instrument_from_ccxt(as_future).kind is InstrumentKind.PERPETUAL


@pytest.mark.shared
def test_deribit_dated_future_keeps_its_expiry(shared_data: Path) -> None:
    raw = json.loads((shared_data / "nautilus-trader" / "deribit"
                      / "http_get_instruments.json").read_text())["result"]
    fut_raw = next(r for r in raw if r["instrument_name"] == "BTC-27DEC24")
    inst = instrument_from_ccxt(_deribit_market(fut_raw) | {"symbol": "BTC/USD:BTC-241227"})
    assert inst.kind is InstrumentKind.FUTURE
    assert inst.expiry_ms == 1735300800000  # 2024-12-27T12:00Z


@pytest.mark.shared
def test_deribit_static_spot_market_stays_spot(shared_data: Path) -> None:
    # ccxt gives Deribit spot pairs the year-3000 expiry too; they are spot, not perps
    market = json.loads((shared_data / "ccxt-static" / "markets" / "deribit.json").read_text())
    inst = instrument_from_ccxt(market["BTC/USDT"])
    assert inst.kind is InstrumentKind.SPOT
    assert inst.expiry_ms is None
    assert inst.is_linear  # ccxt flags Deribit spot "inverse"; spot is valued in quote
    assert inst.strike is None  # ccxt gives strike '' for non-options


# -- issue 16 item 3: contract fields given as floats -----------------------------------
def test_float_contract_fields_are_converted_exactly_16() -> None:
    inst = instrument_from_symbol("XRP/USDT:USDT", lot_size=0.001, tick_size=0.01,
                                  min_notional=5, taker_rate="0.0004", maker_rate=-0.0001)
    # through the shortest repr, not the binary fraction (Decimal(0.01) would be
    # 0.01000000000000000020816681711721685...)
    assert inst.lot_size == Decimal("0.001")
    assert isinstance(inst.lot_size, Decimal)
    assert inst.tick_size == Decimal("0.01")
    assert str(inst.tick_size) == "0.01"
    assert inst.min_notional == Decimal(5)
    assert inst.taker_rate == Decimal("0.0004")
    assert inst.maker_rate == Decimal("-0.0001")  # a maker rebate stays signed


@pytest.mark.parametrize(("field", "value", "words"), [
    ("tick_size", "abc", "tick_size of XRP/USDT:USDT: expected a finite number"),
    ("lot_size", float("nan"), "lot_size of XRP/USDT:USDT: expected a finite number"),
    ("contract_size", None, "contract_size of XRP/USDT:USDT: expected a number"),
    ("tick_size", True, "tick_size of XRP/USDT:USDT: expected a number"),
    ("lot_size", -0.1, "lot_size of XRP/USDT:USDT must not be negative"),
])
def test_bad_contract_fields_name_the_field_16(field: str, value: Any, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        instrument_from_symbol("XRP/USDT:USDT", **{field: value})


def test_a_run_fills_orders_on_an_instrument_given_floats_16() -> None:
    # before: the first order failed with "TypeError: unsupported operand type(s) for %:
    # 'decimal.Decimal' and 'float'" (lot check), wrapped as a StrategyError
    from tests.builders import Scripted, bars, run

    sym = "XRP/USDT:USDT"
    inst = {sym: instrument_from_symbol(sym, lot_size=0.001, tick_size=0.0001)}
    strat = Scripted({0: lambda ctx: ctx.buy(sym, 10.5)})
    result = run(strat, {sym: bars([(1.1234, 1.2, 1.0, 1.15)] * 4)}, instruments=inst)
    fill = result.fills.iloc[0]
    # the next bar's open 1.1234, no slippage in the builder; 10.5 x 1.1234 x the bybit
    # profile's taker rate 0.055 % (the instrument sets none: margin.sources' precedence)
    assert fill["price_exact"] == "1.1234"
    assert fill["qty_exact"] == "10.5"
    assert Decimal(fill["fee_exact"]) == Decimal("10.5") * Decimal("1.1234") * Decimal("0.00055")
