"""Exchange profiles, and the margin parameters of a run on one: loaded as data.

Each exchange profile lives in ``backtester/margin/profiles/<name>.json``. Numbers carry their
source tag from ``docs/margin-rules.md``; numbers not taken from a published source are listed
in the profile's ``assumptions``. Rates are fractions (0.005 = 0.5 %); amounts are in the
currency the field names.

Two values, because they are two different things:

* :class:`Profile` (:func:`load_profile`) is the **exchange's** parameters as its file states
  them, one per exchange: default tier tables per symbol, fee rates that may be unset (None:
  the project default applies, :mod:`backtester.margin.sources`), size-dependent rates per
  coin key, the pooling and liquidation rules. The calculator, the fee and tier precedence,
  the stress tests and ``backtester data`` read it.
* :class:`ProfileData` (:func:`engine_profile`) is the margin parameters of **one run** on a
  profile, derived from a Profile and the run: the tier table chosen for each of the run's
  symbols by the precedence in :mod:`backtester.margin.sources` (run configuration > dataset
  ``leverage_tiers.json`` > profile > flat default with a warning), in the bar loop's form
  (:class:`SimpleTiers`); size-dependent rates resolved for the run's futures; the option
  formula; booked amounts (fee cap, delivery fee) as Decimal; the run's pool currency and
  default collateral. One Profile gives a different ProfileData for every set of instruments
  and tier tables, so the two do not merge into one type.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from backtester.errors import ConfigError
from backtester.hints import option
from backtester.margin.options import (
    DEFAULT_BYBIT_LIQUIDATION_FEE_RATE,
    default_maintenance_rate,
    style_for_profile,
)
from backtester.margin.sources import DEFAULT_OPTION_FEE_CAP, FLAT_MAINTENANCE_RATE, option_fee_cap
from backtester.margin.tiers import TierTable
from backtester.numeric import dec

if TYPE_CHECKING:
    from backtester.instruments import Instrument
    from backtester.margin.portfolio import PortfolioParams

__all__ = ["PROFILE_NAMES", "MarginRates", "Profile", "ProfileData", "SimpleTiers",
           "engine_profile", "load_profile"]

PROFILE_NAMES = ("binance-usdm", "binance-coinm", "bybit", "okx", "deribit")
_DIR = Path(__file__).resolve().parent / "profiles"

PoolRule = Literal["per_settle_asset", "per_coin", "usd", "per_currency"]
Valuation = Literal["usd", "coin"]
LiquidationStyle = Literal["binance", "tiered", "incremental"]
FundingStyle = Literal["discrete", "continuous"]
IsolatedFormula = Literal["binance", "bybit", "okx"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginRates:
    """Size-dependent margin rates (Deribit standard margin, margin-rules §7.2 [DB2][DB5]).

    ``rate = base + per_coin × size_coin`` where ``size_coin`` is the position size in coins of
    the underlying. Example: BTC_USDC perp IM ``0.02 + 0.00005 × size``.
    """

    im_base: float
    im_per_coin: float
    mm_base: float
    mm_per_coin: float

    @classmethod
    def from_json(cls, value: object, *, where: str) -> MarginRates:
        """Parse ``{"im": [base, per_coin], "mm": [base, per_coin]}``."""
        if not isinstance(value, Mapping) or set(value) != {"im", "mm"}:
            msg = (f'{where}: expected {{"im": [base, per_coin], "mm": [base, per_coin]}}, '
                   f"got {value!r}")
            raise ConfigError(msg)
        out: dict[str, float] = {}
        for key in ("im", "mm"):
            pair = value[key]
            if (not isinstance(pair, list | tuple) or len(pair) != 2
                    or not all(isinstance(x, int | float) and not isinstance(x, bool)
                               and x >= 0 for x in pair)):
                msg = (f"{where}.{key}: expected [base, per_coin] of two non-negative numbers, "
                       f"got {pair!r}")
                raise ConfigError(msg)
            out[f"{key}_base"], out[f"{key}_per_coin"] = float(pair[0]), float(pair[1])
        return cls(**out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """An exchange's margin parameters.

    Parameters
    ----------
    name
        Profile name (``binance-usdm`` …).
    valuation
        ``"usd"``: account amounts in USD (stablecoins at their index); ``"coin"``: in the one
        coin of a single-coin pool.
    pool
        How collateral is pooled: ``per_settle_asset`` (Binance USDⓈ-M, one pool per settle
        asset), ``per_coin`` (Binance COIN-M), ``usd`` (Bybit UTA / OKX multi-currency: one USD
        pool with haircuts), ``per_currency`` (Deribit standard).
    haircuts
        Collateral ratio per asset (value = amount × index × ratio).
    default_leverage, call_level
        Leverage when none is chosen; maintenance / margin balance at which a call is raised.
    liquidation_fee_rate, liquidation_fee_rates, option_liquidation_fee_rate
        Fee on the liquidated notional: default, per underlying coin, and for options.
    liquidation_slippage_rate
        How far against the position a liquidation fills (capped at the bankruptcy price).
    liquidation_style
        ``binance`` (one IOC then takeover), ``tiered`` (step down risk tiers),
        ``incremental`` (Deribit small steps).
    isolated_formula
        Which isolated liquidation-price formula applies (see :mod:`backtester.margin.prices`).
    maker_rate, taker_rate
        Fee rates of futures and perps whose instrument (market data) states none; None: the
        project defaults (:mod:`backtester.margin.sources`, precedence in docs/margin.md).
    option_fee_rate, option_fee_cap
        Option fee ``min(rate × index, cap × premium)`` per unit (Bybit 12.5 % cap, §5.4); the
        rate applies, like ``maker_rate``/``taker_rate``, to options whose instrument states
        none (maker and taker alike).
    delivery_fee_rate, delivery_twap_minutes
        Expiry delivery fee rate and the index TWAP window before expiry (Deribit 30 min).
    daily_settlement_hour_utc
        Hour of the daily settlement (Deribit 8) or None.
    funding_style
        ``discrete`` (paid at stamps) or ``continuous`` (Deribit).
    funding_rate_cap
        Largest ``|funding rate|`` per interval the exchange allows (a fraction, 0.03 = 3 %);
        data validation flags stored rates beyond it (:mod:`backtester.data.outliers`). It
        never clamps a rate. None: no cap known.
    has_exchange_margin_ratio
        True when the exchange publishes its own ratio (OKX: equity / (MM + liquidation cost)).
    inverse_margin_at_face
        True when the coin an inverse contract settles in margins it at face value (no haircut
        on that coin while such a position is open; Bybit [BY1] §5.3).
    bankruptcy_includes_close_fee
        True when the bankruptcy price leaves room for the taker fee to close the position at
        that price (Bybit [BY1] §5.3: ``BP = (1 + taker)·C / (C/EP + balance)`` inverse).
    inverse_cross_formula
        The calculator's cross liquidation price of an inverse position: ``general`` (MB = MM
        at the mark, :func:`backtester.margin.prices.liquidation_price`) or ``bybit`` ([BY1]
        §5.3: maintenance on the entry value plus the fee to close at the bankruptcy price).
    margin_rates
        Size-dependent rates per key (``"BTC"`` coin-settled, ``"BTC_USDC"`` linear).
    tiers
        Default tier tables per ccxt symbol.
    assumptions
        Every number in the profile not from a published source.
    """

    name: str
    valuation: Valuation
    pool: PoolRule
    haircuts: Mapping[str, float]
    default_leverage: float
    call_level: float
    liquidation_fee_rate: float
    liquidation_fee_rates: Mapping[str, float] = field(default_factory=dict)
    option_liquidation_fee_rate: float | None = None
    liquidation_slippage_rate: float = 0.005
    liquidation_style: LiquidationStyle = "binance"
    isolated_formula: IsolatedFormula = "binance"
    maker_rate: float | None = None
    taker_rate: float | None = None
    option_fee_rate: float | None = None
    option_fee_cap: float | None = None
    delivery_fee_rate: float = 0.0
    delivery_twap_minutes: int | None = None
    daily_settlement_hour_utc: int | None = None
    funding_style: FundingStyle = "discrete"
    funding_rate_cap: float | None = None
    has_exchange_margin_ratio: bool = False
    inverse_margin_at_face: bool = False
    bankruptcy_includes_close_fee: bool = False
    inverse_cross_formula: Literal["general", "bybit"] = "general"
    margin_rates: Mapping[str, MarginRates] = field(default_factory=dict)
    tiers: Mapping[str, TierTable] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()

    def liquidation_fee_rate_for(self, underlying: str, *, is_option: bool = False) -> float:
        """Return the liquidation fee rate for a contract on ``underlying``."""
        if is_option and self.option_liquidation_fee_rate is not None:
            return self.option_liquidation_fee_rate
        return self.liquidation_fee_rates.get(underlying, self.liquidation_fee_rate)

    def margin_rates_for(self, base: str, settle: str) -> MarginRates | None:
        """Return size-dependent rates for ``base`` settled in ``settle`` (None if none)."""
        if settle != base:
            rates = self.margin_rates.get(f"{base}_{settle}")
            if rates is not None:
                return rates
            return None
        return self.margin_rates.get(base)


_SCALARS = {f.name for f in fields(Profile)} - {"name"}
_DOC_KEYS = {"sources", "notes", "description"}


def load_profile(name: str, overrides: Mapping[str, object] | None = None) -> Profile:
    """Load a profile by name, applying ``overrides`` (field name → value).

    Raises
    ------
    ConfigError
        For an unknown profile or field, with a "did you mean" suggestion.

    >>> load_profile("binance-usdm").default_leverage
    20.0
    """
    if name not in PROFILE_NAMES:
        msg = (f"profile: unknown profile {name!r}{_suggest(name, PROFILE_NAMES)}; "
               f"expected one of {', '.join(PROFILE_NAMES)}")
        raise ConfigError(msg)
    if not overrides:
        return _shipped(name)
    path = _DIR / f"{name}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    data = {k: v for k, v in raw.items() if k not in _DOC_KEYS}
    if overrides:
        for key, value in overrides.items():
            if key not in _SCALARS:
                msg = f"profile override {key!r}: unknown field{_suggest(key, _SCALARS)}"
                raise ConfigError(msg)
            data[key] = value
    return _build(name, data, str(path.name))


@functools.cache
def _shipped(name: str) -> Profile:
    # a shipped profile as its file says (immutable: frozen, with read-only mappings), read once
    # per process — the calculator loads one per snapshot, stress and sweeps thousands
    path = _DIR / f"{name}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    return _build(name, {k: v for k, v in raw.items() if k not in _DOC_KEYS}, str(path.name))


def _build(name: str, data: dict[str, object], where: str) -> Profile:
    for key in data:
        if key not in _SCALARS and key != "name":
            msg = f"{where}: unknown profile field {key!r}{_suggest(key, _SCALARS)}"
            raise ConfigError(msg)
    kwargs: dict[str, object] = {k: v for k, v in data.items() if k != "name"}
    kwargs["haircuts"] = _rates(data.get("haircuts", {}), f"{where}: haircuts")
    kwargs["liquidation_fee_rates"] = _rates(data.get("liquidation_fee_rates", {}),
                                             f"{where}: liquidation_fee_rates")
    kwargs["margin_rates"] = MappingProxyType({
        str(k): v if isinstance(v, MarginRates) else
        MarginRates.from_json(v, where=f"{where}: margin_rates.{k}")
        for k, v in _mapping(data.get("margin_rates", {}), "margin_rates").items()})
    kwargs["tiers"] = MappingProxyType({
        str(k): v if isinstance(v, TierTable) else
        TierTable.from_rows(v, where=f"{where}: tiers[{k!r}]")
        for k, v in _mapping(data.get("tiers", {}), "tiers").items()})
    kwargs["assumptions"] = tuple(str(a) for a in data.get("assumptions", ()) or ())  # type: ignore[attr-defined]
    for key in ("default_leverage", "call_level", "liquidation_fee_rate",
                "liquidation_slippage_rate", "maker_rate", "taker_rate", "option_fee_rate",
                "option_fee_cap", "delivery_fee_rate", "funding_rate_cap"):
        if key in kwargs:
            value = kwargs[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                msg = f"{where}: {key} must be a number, got {value!r}"
                raise ConfigError(msg)
            kwargs[key] = float(value)
    try:
        return Profile(name=name, **kwargs)  # type: ignore[arg-type]
    except TypeError as exc:
        msg = f"{where}: {exc}"
        raise ConfigError(msg) from exc


def _rates(value: object, where: str) -> Mapping[str, float]:
    out: dict[str, float] = {}
    for k, v in _mapping(value, where).items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
            msg = f"{where}.{k}: expected a rate in [0, 1], got {v!r}"
            raise ConfigError(msg)
        out[str(k)] = float(v)
    return MappingProxyType(out)


def _mapping(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        msg = f"profile field {key}: expected an object, got {value!r}"
        raise ConfigError(msg)
    return value


def _suggest(word: str, choices: object) -> str:
    near = difflib.get_close_matches(word, sorted(choices), n=1)  # type: ignore[call-overload]
    return f" (did you mean {near[0]!r}?)" if near else ""


# -- the margin parameters of one run --------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SimpleTiers:
    """The hot-path view of a :class:`~backtester.margin.tiers.TierTable`: sorted floors
    (notional, settle currency), MMR, maintenance amount (``cum``) and max leverage per tier.
    ``MM = notional * MMR(tier) - cum(tier)``. Build with :meth:`from_table`."""

    floors: tuple[float, ...]
    mmr: tuple[float, ...]
    cum: tuple[float, ...]
    max_leverage: tuple[float, ...]
    caps: tuple[float, ...] = ()

    @classmethod
    def from_table(cls, table: TierTable) -> SimpleTiers:
        """Take the floors, rates, amounts and leverages of a parsed tier table."""
        t = table.tiers
        return cls(floors=tuple(x.min_notional for x in t), mmr=tuple(x.mmr for x in t),
                   cum=tuple(x.maintenance_amount for x in t),
                   max_leverage=tuple(x.max_leverage for x in t),
                   caps=tuple(x.max_notional for x in t))

    def index(self, notional: float) -> int:
        """0-based tier whose floor is the highest at or below ``notional``."""
        fl = self.floors
        i = 0
        n = len(fl)
        while i + 1 < n and fl[i + 1] <= notional:
            i += 1
        return i

    def maintenance(self, notional: float) -> float:
        """Maintenance margin at ``notional`` (tiered: rate x notional - maintenance amount)."""
        i = self.index(notional)
        return notional * self.mmr[i] - self.cum[i]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileData:
    """Per-profile parameters used by the engine (see ``backtester/margin/profiles/*.json``)."""

    name: str
    #: how collateral is pooled (``Profile.pool``): ``usd`` one USD-valued pool for every asset;
    #: ``per_settle_asset``/``per_coin``/``per_currency`` one pool per asset, a position drawing
    #: only on the pool of its settle asset (``backtester.margin.state``)
    pool: str = "usd"
    quote_asset: str = "USDT"
    default_collateral: Decimal = Decimal(100_000)
    default_leverage: float = 20.0
    call_level: float = 0.8
    liquidation_style: str = "binance"
    liquidation_fee_rate: float = 0.005
    liquidation_fee_rates: dict[str, float] = field(default_factory=dict)
    daily_settlement_hour_utc: int | None = None
    liquidation_slippage_rate: float = 0.005
    #: maintenance rate of a future/perp without a tier table (flat, every size; the run warns)
    default_mmr: float = FLAT_MAINTENANCE_RATE
    option_fee_cap: Decimal = DEFAULT_OPTION_FEE_CAP
    delivery_fee_rate: Decimal = Decimal("0.0002")
    delivery_window_ms: int = 30 * 60_000
    haircuts: dict[str, float] = field(default_factory=dict)
    tiers: dict[str, SimpleTiers] = field(default_factory=dict)
    #: size-dependent IM/MM rates per futures symbol (Deribit standard margin, margin-rules
    #: §7.2): they replace leverage-based IM and tiered/default MM for those symbols
    rates: dict[str, MarginRates] = field(default_factory=dict)
    funding_style: str = "discrete"  # discrete stamps, or continuous accrual (Deribit)
    option_margin_style: str = "linear"  # deribit | linear | bybit (backtester.margin.options)
    option_maintenance_rate: float = 0.075
    option_liquidation_fee_rate: float = 0.002
    portfolio_params: PortfolioParams | None = None  # None: Deribit's published grid
    #: the settle coin of an open inverse contract margins it at face value (no haircut;
    #: Bybit [BY1] §5.3)
    inverse_margin_at_face: bool = False
    #: the bankruptcy price leaves room for the taker fee to close at that price ([BY1] §5.3)
    bankruptcy_includes_close_fee: bool = False
    assumptions: tuple[str, ...] = ()

    def liquidation_fee_for(self, underlying: str) -> float:
        """Liquidation fee rate of a future/perp on ``underlying`` (per-coin override or the
        profile's default)."""
        return self.liquidation_fee_rates.get(underlying, self.liquidation_fee_rate)

    def check_leverage(self, symbol: str, leverage: float, *,
                       instrument_max: float | None = None) -> None:
        """Refuse a leverage above the maximum of the symbol's first bracket.

        The first bracket (the smallest notionals) allows the most leverage; a leverage above
        it would reject every order of the symbol. The maximum comes from the symbol's tier
        table, else ``instrument_max`` (the market's ``limits.leverage.max``); symbols margined
        by size-dependent rates (Deribit) take no leverage and are not checked.

        Raises
        ------
        ConfigError
            ``leverage`` is above that maximum, naming the symbol, the maximum and the fix.
        """
        if symbol in self.rates:
            return
        tiers = self.tiers.get(symbol)
        top = tiers.max_leverage[0] if tiers is not None and tiers.max_leverage else \
            instrument_max
        if top is None or leverage <= top:
            return
        where = (f"its first leverage bracket (notional up to {tiers.caps[0]:,.0f})"
                 if tiers is not None and tiers.caps else "the market's leverage limit")
        msg = (f"leverage {leverage:g} for {symbol} is above the exchange maximum {top:g} of "
               f"{where} in the {self.name} profile; every order would be rejected: give "
               f"{option('leverage', f'{symbol}={top:g}')} or less")
        raise ConfigError(msg)

    def haircut(self, asset: str) -> float:
        """Collateral ratio of ``asset`` (1.0 when the profile lists none)."""
        return self.haircuts.get(asset, 1.0)


def engine_profile(name: str, *, tiers: Mapping[str, TierTable] | None = None,
                   instruments: Mapping[str, Instrument] | None = None) -> ProfileData:
    """Return the engine parameters of profile ``name`` with the run's tier tables ``tiers``
    (symbol → table, as chosen by :func:`~backtester.margin.sources.resolve_tiers`) and the
    profile's size-dependent margin rates for the futures among ``instruments``."""
    prof = load_profile(name)
    table = {s: SimpleTiers.from_table(t) for s, t in (tiers or {}).items()}
    rates = {}
    for sym, inst in (instruments or {}).items():
        r = None if inst.is_option else prof.margin_rates_for(inst.base, inst.settle)
        if r is not None:
            rates[sym] = r
    coin_pool = prof.valuation == "coin"
    style = style_for_profile(name)
    return ProfileData(
        name=name, pool=prof.pool, quote_asset="BTC" if coin_pool else "USDT",
        default_collateral=Decimal(2) if coin_pool else Decimal(100_000),
        default_leverage=prof.default_leverage, call_level=prof.call_level,
        liquidation_style=prof.liquidation_style,
        liquidation_fee_rate=prof.liquidation_fee_rate,
        liquidation_fee_rates=dict(prof.liquidation_fee_rates),
        liquidation_slippage_rate=prof.liquidation_slippage_rate,
        default_mmr=FLAT_MAINTENANCE_RATE,
        option_fee_cap=option_fee_cap(prof), delivery_fee_rate=dec(prof.delivery_fee_rate),
        delivery_window_ms=(prof.delivery_twap_minutes or 30) * 60_000,
        haircuts=dict(prof.haircuts), tiers=table, rates=rates,
        funding_style=prof.funding_style,
        daily_settlement_hour_utc=prof.daily_settlement_hour_utc,
        option_margin_style=style,
        option_maintenance_rate=default_maintenance_rate(style),
        option_liquidation_fee_rate=prof.option_liquidation_fee_rate
        or DEFAULT_BYBIT_LIQUIDATION_FEE_RATE,
        inverse_margin_at_face=prof.inverse_margin_at_face,
        bankruptcy_includes_close_fee=prof.bankruptcy_includes_close_fee,
        assumptions=prof.assumptions)
