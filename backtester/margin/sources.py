"""Which source each exchange number of a run comes from: fee rates and tier tables.

Both follow a fixed precedence, per symbol (docs/margin.md "Fees" and "Tier tables"):

Fee rates (maker and taker each on its own):

1. the **instrument's** own rates: a ccxt market's ``maker``/``taker`` (the dataset's
   ``markets.json``), or rates set on an :class:`~backtester.instruments.Instrument` by the
   caller;
2. the **profile's** ``maker_rate``/``taker_rate`` (options: ``option_fee_rate`` for both);
3. the project **defaults** :data:`DEFAULT_MAKER_RATE` / :data:`DEFAULT_TAKER_RATE` /
   :data:`DEFAULT_OPTION_FEE_RATE` (an assumption, said in the run's warnings).

The option fee cap is the profile's ``option_fee_cap``, else :data:`DEFAULT_OPTION_FEE_CAP`.

Tier tables (futures and perps whose profile has no size-dependent ``margin_rates``):

1. the **run configuration**'s ``tiers``;
2. the **dataset**'s ``leverage_tiers.json`` (stored by ``backtester fetch``, or by ``fetch`` /
   ``data import`` given ``--tiers-file``);
3. the **profile**'s ``tiers``;
4. none: maintenance at the flat :data:`FLAT_MAINTENANCE_RATE` at every size, no bracket
   leverage cap and no tier-by-tier liquidation, with one warning per symbol.

Rates are fractions (0.0005 = 0.05 %); tier notionals are in the settle currency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from backtester.errors import ConfigError
from backtester.instruments import Instrument, InstrumentKind
from backtester.margin.tiers import TierTable
from backtester.numeric import dec

if TYPE_CHECKING:
    # the profile module builds a run's parameters with these rules: type-only, no cycle at
    # run time
    from backtester.margin.profile import Profile

__all__ = [
    "DEFAULT_MAKER_RATE", "DEFAULT_OPTION_FEE_CAP", "DEFAULT_OPTION_FEE_RATE",
    "DEFAULT_TAKER_RATE", "FLAT_MAINTENANCE_RATE", "FeeRates", "FeeResolution", "FeeSource",
    "TierResolution", "TierSource", "apply_fee_rates", "fee_rates", "needs_tiers",
    "option_fee_cap", "resolve_fee_rates", "resolve_tiers", "tier_table",
]

#: Futures/perp fee rates when neither the instrument nor the profile gives one: the regular
#: (non-VIP) maker 0.02 % / taker 0.05 % of Binance USDⓈ-M — an assumption for other venues.
DEFAULT_MAKER_RATE = Decimal("0.0002")
DEFAULT_TAKER_RATE = Decimal("0.0005")
#: Option fee rate (per unit of the underlying) when neither the instrument nor the profile
#: gives one: Bybit's published 0.03 % (margin-rules §5.4 [BY8]) — an assumption elsewhere.
DEFAULT_OPTION_FEE_RATE = Decimal("0.0003")
#: Option fee cap as a fraction of the premium: Bybit's and Deribit's (legacy) 12.5 %
#: (margin-rules §5.4 [BY8], §7.6 [DB13]).
DEFAULT_OPTION_FEE_CAP = Decimal("0.125")
#: Maintenance-margin rate of a future/perp without a tier table: 0.5 % of the notional at
#: every size (the first tier of BTCUSDT on Binance and Bybit; an assumption for the rest).
FLAT_MAINTENANCE_RATE = 0.005

_LIST_MAX = 4  # symbols named in one warning line before "and N more"


# -- fees ---------------------------------------------------------------------------------------
class FeeSource(StrEnum):
    """Where a fee rate came from (highest precedence first)."""

    INSTRUMENT = "instrument"  # a ccxt market's maker/taker, or set on the Instrument
    PROFILE = "profile"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeRates:
    """The fee rates a symbol is charged (fractions of notional; options: of the underlying)
    and the source of each."""

    maker: Decimal
    taker: Decimal
    maker_source: FeeSource
    taker_source: FeeSource

    def as_dict(self) -> dict[str, str]:
        """JSON-ready: rates as exact decimal strings and their sources."""
        return {"maker": str(self.maker), "taker": str(self.taker),
                "maker_source": self.maker_source.value,
                "taker_source": self.taker_source.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeResolution:
    """The instruments with their fee rates set, each symbol's rates, and the warnings."""

    instruments: dict[str, Instrument]
    rates: dict[str, FeeRates]
    warnings: tuple[str, ...]


def option_fee_cap(profile: Profile) -> Decimal:
    """The option fee cap (fraction of the premium): the profile's, else the default."""
    return DEFAULT_OPTION_FEE_CAP if profile.option_fee_cap is None else dec(
        profile.option_fee_cap)


def _fallback(profile: Profile, *, is_maker: bool, is_option: bool) -> tuple[Decimal, FeeSource]:
    # the profile's rate, else the project default
    if is_option:
        given: float | None = profile.option_fee_rate
        default = DEFAULT_OPTION_FEE_RATE
    else:
        given = profile.maker_rate if is_maker else profile.taker_rate
        default = DEFAULT_MAKER_RATE if is_maker else DEFAULT_TAKER_RATE
    if given is None:
        return default, FeeSource.DEFAULT
    return dec(given), FeeSource.PROFILE


def fee_rates(instrument: Instrument, profile: Profile) -> FeeRates:
    """Return the rates ``instrument`` is charged under ``profile``: its own > the profile's
    > the defaults, for maker and taker each.

    >>> from backtester.instruments import instrument_from_symbol
    >>> from backtester.margin.profile import load_profile
    >>> r = fee_rates(instrument_from_symbol("BTC/USDT:USDT"), load_profile("bybit"))
    >>> r.taker, r.taker_source.value
    (Decimal('0.00055'), 'profile')
    """
    out: dict[str, Any] = {}
    for side, own in (("maker", instrument.maker_rate), ("taker", instrument.taker_rate)):
        if own is not None:
            out[side], out[f"{side}_source"] = own, FeeSource.INSTRUMENT
        else:
            out[side], out[f"{side}_source"] = _fallback(
                profile, is_maker=side == "maker", is_option=instrument.is_option)
    return FeeRates(**out)


def apply_fee_rates(instrument: Instrument, profile: Profile) -> tuple[Instrument, FeeRates]:
    """Return ``instrument`` with its fee rates set by :func:`fee_rates`, and the rates."""
    rates = fee_rates(instrument, profile)
    if instrument.maker_rate == rates.maker and instrument.taker_rate == rates.taker:
        return instrument, rates
    return replace(instrument, maker_rate=rates.maker, taker_rate=rates.taker), rates


def resolve_fee_rates(instruments: Mapping[str, Instrument], profile: Profile) -> FeeResolution:
    """Set every instrument's fee rates by the precedence above.

    The warnings say, grouped by rates and source, which symbols are charged rates that are not
    the instrument's own (the profile's, or the project defaults as an assumption).
    """
    insts: dict[str, Instrument] = {}
    rates: dict[str, FeeRates] = {}
    groups: dict[tuple[FeeRates, bool], list[str]] = {}
    for sym, inst in instruments.items():
        insts[sym], rates[sym] = apply_fee_rates(inst, profile)
        r = rates[sym]
        own = r.maker_source is FeeSource.INSTRUMENT and r.taker_source is FeeSource.INSTRUMENT
        if not own:
            groups.setdefault((r, inst.is_option), []).append(sym)
    warnings = [_fee_warning(syms, r, profile, is_option=opt)
                for (r, opt), syms in groups.items()]
    return FeeResolution(instruments=insts, rates=rates, warnings=tuple(warnings))


def _pct(rate: Decimal | float) -> str:
    return f"{float(rate) * 100:g} %"


def _names(symbols: Sequence[str], noun: str) -> str:
    head = ", ".join(symbols[:_LIST_MAX])
    rest = len(symbols) - _LIST_MAX
    return head if rest <= 0 else f"{head} and {rest} more {noun}"


def _fee_warning(symbols: Sequence[str], r: FeeRates, profile: Profile, *,
                 is_option: bool) -> str:
    def origin(src: FeeSource) -> str:
        return {FeeSource.INSTRUMENT: "the market data",
                FeeSource.PROFILE: f"profile {profile.name}",
                FeeSource.DEFAULT: "the project default (an assumption)"}[src]

    if r.maker_source == r.taker_source:
        what = f"maker {_pct(r.maker)}, taker {_pct(r.taker)} from {origin(r.maker_source)}"
    else:
        what = (f"maker {_pct(r.maker)} from {origin(r.maker_source)}, taker {_pct(r.taker)} "
                f"from {origin(r.taker_source)}")
    if is_option:
        what += (f", of the underlying and capped at {_pct(option_fee_cap(profile))} of the "
                 "premium")
    kind = "options" if is_option else "symbols"
    return (f"fees of {_names(symbols, kind)}: {what}; the data gives no fee rates of its own "
            "(a ccxt market's maker/taker), and an account's fee tier or rebates are not "
            "modelled")


# -- tier tables --------------------------------------------------------------------------------
class TierSource(StrEnum):
    """Where a symbol's tier table came from (highest precedence first)."""

    RUN = "run configuration"
    DATASET = "dataset"
    PROFILE = "profile"
    MARGIN_RATES = "profile margin_rates"  # size-dependent rates replace tiers (Deribit)
    FLAT = "flat default"


@dataclass(frozen=True, slots=True, kw_only=True)
class TierResolution:
    """Each symbol's tier table (symbols without one are absent), its source, the warnings."""

    tables: dict[str, TierTable]
    sources: dict[str, TierSource]
    warnings: tuple[str, ...]


def tier_table(rows: Sequence[Mapping[str, Any]], *, where: str) -> TierTable:
    """Parse tier rows in either the calculator's format (``min_notional``, ``mmr`` ...) or
    ccxt's unified leverage tiers (``minNotional``, ``maintenanceMarginRate`` ...)."""
    if isinstance(rows, list | tuple) and rows and isinstance(rows[0], Mapping) \
            and "min_notional" in rows[0]:
        return TierTable.from_rows(list(rows), where=where)
    return TierTable.from_ccxt(rows, where=where)


def needs_tiers(instrument: Instrument, profile: Profile) -> bool:
    """True for futures and perps whose maintenance margin comes from a tier table (not
    options, spot, or symbols with the profile's size-dependent ``margin_rates``)."""
    if instrument.is_option or instrument.kind is InstrumentKind.SPOT:
        return False
    return profile.margin_rates_for(instrument.base, instrument.settle) is None


def _symbol_rows(payload: Any, where: str) -> Mapping[str, Any]:
    # a tier payload: {symbol: rows} or a leverage_tiers.json {"tiers": {symbol: rows}, ...}
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        msg = f"{where}: expected an object of symbol -> tier list, got {type(payload).__name__}"
        raise ConfigError(msg)
    inner = payload.get("tiers", payload)
    if not isinstance(inner, Mapping):
        msg = f"{where}.tiers: expected an object of symbol -> tier list"
        raise ConfigError(msg)
    return inner


def resolve_tiers(instruments: Mapping[str, Instrument], profile: Profile, *,
                  run_tiers: Any = None, dataset_tiers: Any = None,
                  dataset: str | None = None) -> TierResolution:
    """Choose each symbol's tier table: run configuration > dataset > profile > none.

    Parameters
    ----------
    instruments
        The run's instruments by symbol.
    profile
        The run's profile (its ``tiers`` and ``margin_rates``).
    run_tiers
        The run configuration's ``tiers`` (symbol → ccxt or calculator rows, or a
        ``leverage_tiers.json`` payload), or None.
    dataset_tiers
        The dataset's ``leverage_tiers.json`` payload, or None.
    dataset
        The dataset's name, for the messages.

    Raises
    ------
    ConfigError
        A chosen table that does not parse (the message names its source and symbol).
    """
    run_rows = _symbol_rows(run_tiers, "tiers")
    where_ds = (f"dataset {dataset} leverage_tiers.json" if dataset
                else "dataset leverage_tiers.json")
    ds_rows = _symbol_rows(dataset_tiers, where_ds)
    tables: dict[str, TierTable] = {}
    sources: dict[str, TierSource] = {}
    warnings: list[str] = []
    for sym, inst in instruments.items():
        if inst.is_option or inst.kind is InstrumentKind.SPOT:
            continue
        if run_rows.get(sym):
            tables[sym] = tier_table(run_rows[sym], where=f"tiers.{sym}")
            sources[sym] = TierSource.RUN
        elif ds_rows.get(sym):
            tables[sym] = tier_table(ds_rows[sym], where=f"{where_ds}: tiers.{sym}")
            sources[sym] = TierSource.DATASET
        elif sym in profile.tiers:
            tables[sym] = profile.tiers[sym]
            sources[sym] = TierSource.PROFILE
        elif not needs_tiers(inst, profile):
            sources[sym] = TierSource.MARGIN_RATES
        else:
            sources[sym] = TierSource.FLAT
            # one line per symbol, under one "no tier table: " prefix (the CLI prints a
            # family of them as one line naming warnings.json)
            warnings.append(
                f"no tier table: {sym} has none in the run's tiers, the "
                f"{'dataset' if dataset else 'data'} or profile {profile.name}; maintenance "
                f"margin at a flat {_pct(FLAT_MAINTENANCE_RATE)} of the notional at every size, "
                "no bracket leverage cap and no tier-by-tier liquidation (an assumption); give "
                "tiers with the run key `tiers`, `backtester fetch` or `data import "
                "--tiers-file`")
    return TierResolution(tables=tables, sources=sources, warnings=tuple(warnings))
