"""The engine's view of an exchange profile: the numbers the bar loop needs, as data.

Built from the profile JSON files by :func:`engine_profile`. Every number that is not from a
published exchange source is listed in ``assumptions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from backtester.margin.portfolio import PortfolioParams

__all__ = ["ProfileData", "SimpleTiers"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimpleTiers:
    """Tiered brackets of one symbol: sorted floors (notional, settle currency), MMR, cum and
    max leverage per tier. ``MM = notional * MMR(tier) - cum(tier)``."""

    floors: tuple[float, ...]
    mmr: tuple[float, ...]
    cum: tuple[float, ...]
    max_leverage: tuple[float, ...]

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
    quote_asset: str = "USDT"
    default_collateral: Decimal = Decimal(100_000)
    default_leverage: float = 20.0
    call_level: float = 0.8
    liquidation_style: str = "binance"
    liquidation_fee_rate: float = 0.005
    liquidation_slippage_rate: float = 0.005
    default_mmr: float = 0.005
    option_fee_cap: Decimal = Decimal("0.125")
    delivery_fee_rate: Decimal = Decimal("0.0002")
    delivery_window_ms: int = 30 * 60_000
    haircuts: dict[str, float] = field(default_factory=dict)
    tiers: dict[str, SimpleTiers] = field(default_factory=dict)
    funding_style: str = "discrete"  # discrete stamps, or continuous accrual (Deribit)
    option_margin_style: str = "linear"  # deribit | linear | bybit (backtester.margin.options)
    option_maintenance_rate: float = 0.075
    option_liquidation_fee_rate: float = 0.002
    portfolio_params: PortfolioParams | None = None  # None: Deribit's published grid
    assumptions: tuple[str, ...] = ()

    def haircut(self, asset: str) -> float:
        """Collateral ratio of ``asset`` (1.0 when the profile lists none)."""
        return self.haircuts.get(asset, 1.0)
