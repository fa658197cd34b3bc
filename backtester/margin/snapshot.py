"""Parse and validate a margin-calculator snapshot (DESIGN §4) into plain values.

Every invalid field raises :class:`~backtester.errors.ConfigError` whose message starts with
the field path, e.g. ``positions[1].side: expected 'long' or 'short', got 'buy'``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from backtester.errors import ConfigError
from backtester.instruments import Instrument, InstrumentKind, OptionType, instrument_from_symbol
from backtester.instruments.assets import STABLECOINS
from backtester.margin.profile import PROFILE_NAMES, MarginRates, Profile, load_profile
from backtester.margin.sources import apply_fee_rates
from backtester.margin.tiers import TierTable
from backtester.numeric import dec

# STABLECOINS (backtester.instruments.assets): assets valued at 1 USD when the snapshot gives no
# index for them; still importable from here
__all__ = ["STABLECOINS", "ParsedPosition", "ParsedSnapshot", "parse_snapshot", "valuation_price"]


# ``collateral_exact`` (optional, informational): the run's booked balances as exact decimal
# strings, written beside ``collateral`` in a run's state.json
_TOP = {"profile", "mode", "position_mode", "collateral", "collateral_exact", "haircuts",
        "prices", "positions", "time", "call_level"}
_POSITION = {"symbol", "side", "size", "entry_price", "leverage", "isolated_margin",
             "instrument", "tiers"}
_INSTRUMENT = {"type", "linear", "contract_size", "settle", "strike", "expiry", "option_type",
               "taker", "maker", "margin_rates", "option_margin"}
_PRICE = {"mark", "index", "underlying", "iv"}
#: Largest magnitude of any number in a snapshot: beyond it a float no longer resolves an eighth
#: of a unit (2**53 / 8 ≈ 1.1e15), and products of such numbers could overflow to infinity.
MAX_MAGNITUDE = 1e15
_KINDS = {"swap": InstrumentKind.PERPETUAL, "future": InstrumentKind.FUTURE,
          "option": InstrumentKind.OPTION}


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedPosition:
    """One validated position (``qty`` signed contracts, long > 0)."""

    index: int
    symbol: str
    side: Literal["long", "short"]
    qty: float
    entry_price: float
    leverage: float
    isolated_margin: float | None
    instrument: Instrument
    tiers: TierTable | None
    margin_rates: MarginRates | None
    option_margin: Mapping[str, float] | None
    mark: float
    index_price: float
    underlying_price: float | None
    iv: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedSnapshot:
    """A validated snapshot."""

    profile: Profile
    mode: Literal["cross", "isolated", "portfolio"]
    position_mode: Literal["one-way", "hedge"]
    collateral: Mapping[str, float]
    haircuts: Mapping[str, float]
    asset_prices: Mapping[str, float]
    positions: tuple[ParsedPosition, ...]
    ts_ms: int | None


def _fail(msg: str) -> ConfigError:
    return ConfigError(msg)


def _check_keys(obj: Mapping[str, object], allowed: set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            msg = f"{path}{'.' if path else ''}{key}: unknown field{hint}"
            raise _fail(msg)


def _obj(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        msg = f"{path}: expected an object, got {value!r}"
        raise _fail(msg)
    return value


def _num(value: object, path: str, *, positive: bool = False, low: float | None = None,
         high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{path}: expected a number, got {value!r}"
        raise _fail(msg)
    try:
        x = float(value)
    except OverflowError:  # a JSON integer too large for a float
        x = math.inf
    if not math.isfinite(x):
        msg = f"{path}: expected a finite number, got {value!r}"
        raise _fail(msg)
    if abs(x) > MAX_MAGNITUDE:
        msg = f"{path}: {value!r} is beyond the calculator's range (|x| <= {MAX_MAGNITUDE:g})"
        raise _fail(msg)
    if positive and x <= 0.0:
        msg = f"{path}: expected a positive number, got {value!r}"
        raise _fail(msg)
    if low is not None and x < low:
        msg = f"{path}: expected a number >= {low:g}, got {value!r}"
        raise _fail(msg)
    if high is not None and x > high:
        msg = f"{path}: expected a number <= {high:g}, got {value!r}"
        raise _fail(msg)
    return x


def _choice(value: object, path: str, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in choices:
        expected = " or ".join(repr(c) for c in choices)
        msg = f"{path}: expected {expected}, got {value!r}"
        raise _fail(msg)
    return str(value)


def parse_time_ms(value: object, path: str) -> int:
    """Parse ISO 8601 UTC text (``Z`` or an offset; naive = UTC) or integer ms."""
    if isinstance(value, bool):
        msg = f"{path}: expected an ISO 8601 UTC time or integer milliseconds, got {value!r}"
        raise _fail(msg)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            dt = None
        if dt is not None:
            dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
            return round(dt.timestamp() * 1000)
    msg = f"{path}: expected an ISO 8601 UTC time or integer milliseconds, got {value!r}"
    raise _fail(msg)



def valuation_price(snap: ParsedSnapshot, asset: str) -> float | None:
    """Return the valuation-currency price of one unit of ``asset`` in ``snap``, None if unknown.

    The one conversion the calculator and the stress tests use: 1 when the profile values the
    account in a coin (a single-coin pool); otherwise the asset's USD index from the snapshot's
    ``prices`` (stablecoins: 1 when none is given); in a USD pool, a coin-settled contract's
    own coin at that contract's index (the first such position's).
    """
    if snap.profile.valuation != "usd":
        return 1.0
    price = snap.asset_prices.get(asset)
    if price is not None:
        return price
    if snap.profile.pool == "usd":
        own = next((p for p in snap.positions if p.instrument.settle == asset
                    and p.instrument.base == asset), None)
        if own is not None:
            return own.index_price
    return None

def parse_snapshot(snapshot: Mapping[str, object]) -> ParsedSnapshot:
    """Validate ``snapshot`` (DESIGN §4) and return its parsed form."""
    snap = _obj(snapshot, "snapshot")
    _check_keys(snap, _TOP, "")
    name = snap.get("profile")
    if name not in PROFILE_NAMES:
        near = difflib.get_close_matches(str(name), PROFILE_NAMES, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        msg = f"profile: expected one of {', '.join(PROFILE_NAMES)}, got {name!r}{hint}"
        raise _fail(msg)
    overrides: dict[str, object] = {}
    if snap.get("call_level") is not None:
        overrides["call_level"] = _num(snap["call_level"], "call_level", positive=True, high=1.0)
    profile = load_profile(str(name), overrides)
    mode = _choice(snap.get("mode"), "mode", ("cross", "isolated", "portfolio"), "cross")
    position_mode = _choice(snap.get("position_mode"), "position_mode", ("one-way", "hedge"),
                            "one-way")
    # a negative balance is a liability (e.g. USDC after a short option settled against coin
    # collateral): valued at its full price, no haircut (calculator module docstring)
    collateral = {str(k): _num(v, f"collateral.{k}")
                  for k, v in _obj(snap.get("collateral") or {}, "collateral").items()}
    haircuts = dict(profile.haircuts)
    for k, v in _obj(snap.get("haircuts") or {}, "haircuts").items():
        haircuts[str(k)] = _num(v, f"haircuts.{k}", low=0.0, high=1.0)
    prices = _obj(snap.get("prices") or {}, "prices")
    for sym, entry in prices.items():
        _check_keys(_obj(entry, f"prices.{sym}"), _PRICE, f"prices.{sym}")
    asset_prices: dict[str, float] = {}
    for sym, entry in prices.items():
        idx = _obj(entry, f"prices.{sym}").get("index")
        if "/" not in str(sym) and idx is not None:
            asset_prices[str(sym)] = _num(idx, f"prices.{sym}.index", positive=True)
    for asset in STABLECOINS:
        asset_prices.setdefault(asset, 1.0)
    ts_ms = None if snap.get("time") is None else parse_time_ms(snap["time"], "time")
    raw_positions = snap.get("positions") or []
    if not isinstance(raw_positions, list):
        msg = f"positions: expected a list, got {raw_positions!r}"
        raise _fail(msg)
    positions = tuple(_position(i, raw, profile=profile, prices=prices, ts_ms=ts_ms)
                      for i, raw in enumerate(raw_positions))
    seen: dict[tuple[str, str], int] = {}
    for p in positions:
        key = (p.symbol, p.side if position_mode == "hedge" else "both")
        if key in seen:
            rule = ("hedge mode holds one long and one short per symbol" if position_mode == "hedge"
                    else "one-way mode holds one position per symbol (use position_mode 'hedge')")
            msg = f"positions[{p.index}].symbol: {p.symbol} repeats positions[{seen[key]}]; {rule}"
            raise _fail(msg)
        seen[key] = p.index
    return ParsedSnapshot(profile=profile, mode=mode,  # type: ignore[arg-type]
                          position_mode=position_mode,  # type: ignore[arg-type]
                          collateral=collateral, haircuts=haircuts, asset_prices=asset_prices,
                          positions=positions, ts_ms=ts_ms)


def _position(i: int, raw: object, *, profile: Profile, prices: Mapping[str, object],
              ts_ms: int | None) -> ParsedPosition:
    path = f"positions[{i}]"
    pos = _obj(raw, path)
    _check_keys(pos, _POSITION, path)
    symbol = pos.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        msg = f"{path}.symbol: expected a ccxt symbol such as 'BTC/USDT:USDT', got {symbol!r}"
        raise _fail(msg)
    side = _choice(pos.get("side"), f"{path}.side", ("long", "short"), "")
    if not side:
        msg = f"{path}.side: expected 'long' or 'short', got None"
        raise _fail(msg)
    size = _num(pos.get("size"), f"{path}.size", positive=True)
    spec = _obj(pos.get("instrument") or {}, f"{path}.instrument")
    _check_keys(spec, _INSTRUMENT, f"{path}.instrument")
    instrument = _instrument(symbol, spec, profile=profile, path=f"{path}.instrument")
    needs_entry = not instrument.is_option
    entry_raw = pos.get("entry_price")
    entry = (_num(entry_raw, f"{path}.entry_price", positive=needs_entry, low=0.0)
             if entry_raw is not None or needs_entry else 0.0)
    leverage = (profile.default_leverage if pos.get("leverage") is None
                else _num(pos["leverage"], f"{path}.leverage", positive=True))
    iso = pos.get("isolated_margin")
    isolated_margin = None if iso is None else _num(iso, f"{path}.isolated_margin", low=0.0)
    if instrument.expiry_ms is not None:
        if ts_ms is None:
            msg = (f"time: required when the snapshot holds futures or options ({path} is a "
                   f"{instrument.kind}); give the valuation time, e.g. '2024-06-01T00:00:00Z'")
            raise _fail(msg)
        if ts_ms >= instrument.expiry_ms:
            msg = f"{path}.instrument.expiry: {symbol} expired before the snapshot time"
            raise _fail(msg)
    price_entry = prices.get(symbol)
    if price_entry is None:
        msg = f"prices.{symbol}: missing; every position needs its mark price"
        raise _fail(msg)
    pe = _obj(price_entry, f"prices.{symbol}")
    mark = _num(pe.get("mark"), f"prices.{symbol}.mark", positive=not instrument.is_option,
                low=0.0)
    index_price = (mark if pe.get("index") is None
                   else _num(pe["index"], f"prices.{symbol}.index", positive=True))
    underlying = None
    iv = None
    if instrument.is_option:
        underlying = _num(pe.get("underlying"), f"prices.{symbol}.underlying", positive=True)
        iv = None if pe.get("iv") is None else _num(pe["iv"], f"prices.{symbol}.iv", positive=True)
    tiers = None
    if pos.get("tiers") is not None:
        tiers = TierTable.from_rows(pos["tiers"], where=f"{path}.tiers")
    rates = None
    if spec.get("margin_rates") is not None:
        rates = MarginRates.from_json(spec["margin_rates"], where=f"{path}.instrument.margin_rates")
    elif tiers is None and not instrument.is_option:
        rates = profile.margin_rates_for(instrument.base, instrument.settle)
    if tiers is None and rates is None and not instrument.is_option:
        tiers = profile.tiers.get(symbol)
        if tiers is None:
            msg = (f"{path}.tiers: no tier table for {symbol} in profile {profile.name}; "
                   f"give tiers (or instrument.margin_rates)")
            raise _fail(msg)
    option_margin = None
    if spec.get("option_margin") is not None:
        om = _obj(spec["option_margin"], f"{path}.instrument.option_margin")
        _check_keys(om, {"maintenance_rate", "liquidation_fee"}, f"{path}.instrument.option_margin")
        option_margin = {str(k): _num(v, f"{path}.instrument.option_margin.{k}", low=0.0)
                         for k, v in om.items()}
    sign = 1.0 if side == "long" else -1.0
    return ParsedPosition(index=i, symbol=symbol, side=side,  # type: ignore[arg-type]
                          qty=sign * size, entry_price=entry, leverage=leverage,
                          isolated_margin=isolated_margin, instrument=instrument, tiers=tiers,
                          margin_rates=rates, option_margin=option_margin, mark=mark,
                          index_price=index_price, underlying_price=underlying, iv=iv)


def _instrument(symbol: str, spec: Mapping[str, object], *, profile: Profile,
                path: str) -> Instrument:
    # fee rates: the snapshot's own > the profile's > the defaults (backtester.margin.sources)
    overrides: dict[str, Any] = {}
    if spec.get("maker") is not None:
        overrides["maker_rate"] = dec(_num(spec["maker"], f"{path}.maker", low=-1.0, high=1.0))
    if spec.get("taker") is not None:
        overrides["taker_rate"] = dec(_num(spec["taker"], f"{path}.taker", low=0.0, high=1.0))
    kind_raw = spec.get("type")
    if kind_raw is not None:
        if kind_raw not in _KINDS:
            msg = f"{path}.type: expected 'swap', 'future' or 'option', got {kind_raw!r}"
            raise _fail(msg)
        overrides["kind"] = _KINDS[str(kind_raw)]
        if kind_raw == "swap":
            overrides.update(expiry_ms=None, strike=None, option_type=None)
    linear = spec.get("linear")
    if linear is not None and not isinstance(linear, bool):
        msg = f"{path}.linear: expected true or false, got {linear!r}"
        raise _fail(msg)
    if spec.get("contract_size") is not None:
        overrides["contract_size"] = dec(_num(spec["contract_size"], f"{path}.contract_size",
                                              positive=True))
    if spec.get("settle") is not None:
        if not isinstance(spec["settle"], str) or not spec["settle"]:
            msg = f"{path}.settle: expected an asset code such as 'USDT', got {spec['settle']!r}"
            raise _fail(msg)
        overrides["settle"] = spec["settle"]
    if spec.get("expiry") is not None:
        overrides["expiry_ms"] = parse_time_ms(spec["expiry"], f"{path}.expiry")
    if spec.get("strike") is not None:
        overrides["strike"] = _num(spec["strike"], f"{path}.strike", positive=True)
    if spec.get("option_type") is not None:
        ot = _choice(spec["option_type"], f"{path}.option_type", ("call", "put"), "call")
        overrides["option_type"] = OptionType(ot)
    try:
        instrument = instrument_from_symbol(symbol, is_linear=linear, **overrides)
    except ConfigError as exc:
        msg = f"{path}: {exc}"
        raise ConfigError(msg) from None
    return apply_fee_rates(instrument, profile)[0]
