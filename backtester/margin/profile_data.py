"""The engine's view of an exchange profile: the numbers the bar loop needs, as data.

Built from the profile JSON files by :func:`engine_profile`. Every number that is not from a
published exchange source is listed in ``assumptions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from backtester.errors import ConfigError
from backtester.hints import option
from backtester.margin.portfolio import PortfolioParams
from backtester.margin.profiles import MarginRates
from backtester.margin.sources import DEFAULT_OPTION_FEE_CAP, FLAT_MAINTENANCE_RATE
from backtester.margin.tiers import TierTable

__all__ = ["ProfileData", "SimpleTiers"]


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
