"""Tiered maintenance-margin brackets (Binance brackets, Bybit risk limits, OKX position tiers).

Units: notionals and maintenance amounts are in the contract's settle currency (USDT/USDC for
linear contracts, the coin for inverse COIN-M contracts, where a tier table is in coin notional
and works the same way). Rates are fractions (0.004 = 0.4 %).

Rule (margin-rules §2.1 [B1]): ``maintenance margin = notional × MMR(tier) − maintenance amount``
with the tier chosen by the notional at the mark price; the tier is the highest one whose
``min_notional <= notional`` (a notional exactly at a floor belongs to the upper tier, [F1]).
When the maintenance amount (Binance ``cum``) is not published it is derived by the recursion
``cum_n = floor_n · (MMR_n − MMR_{n−1}) + cum_{n−1}`` which makes the maintenance margin
continuous across tier boundaries.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backtester.errors import ConfigError
from backtester.margin import kernel

__all__ = ["Tier", "TierTable", "derive_maintenance_amounts", "load_binance_tiers"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    """One bracket of a tier table.

    Parameters
    ----------
    tier
        1-based bracket number.
    min_notional, max_notional
        Notional floor and cap of the bracket, in the settle currency.
    mmr
        Maintenance-margin rate of the bracket (fraction).
    maintenance_amount
        The deduction (Binance ``cum``, Bybit "MM deduction") in the settle currency.
    max_leverage
        Highest leverage allowed while the position notional is in this bracket.
    """

    tier: int
    min_notional: float
    max_notional: float
    mmr: float
    maintenance_amount: float
    max_leverage: float


def derive_maintenance_amounts(floors: Sequence[float], mmrs: Sequence[float]) -> list[float]:
    """Return the maintenance amounts (``cum``) implied by tier floors and rates.

    Implements ``cum_n = floor_n · (MMR_n − MMR_{n−1}) + cum_{n−1}`` with ``cum_1 = floor_1 ·
    MMR_1`` (0 for a table starting at 0), margin-rules §2.1 [B1].

    >>> derive_maintenance_amounts([0, 50_000, 250_000], [0.004, 0.005, 0.01])
    [0.0, 50.0, 1300.0]
    """
    out: list[float] = []
    prev_mmr = 0.0
    cum = 0.0
    for floor, mmr in zip(floors, mmrs):
        cum += float(floor) * (float(mmr) - prev_mmr)
        out.append(round(cum, 10))
        prev_mmr = float(mmr)
    return out


class TierTable:
    """A sorted tier table with O(log n) lookup.

    The floors, rates and amounts are kept in tuples so that the per-bar lookups allocate
    nothing. Build one with :meth:`from_tiers`, :meth:`from_rows` (the calculator's JSON rows),
    :meth:`from_ccxt` (ccxt unified leverage tiers) or :func:`load_binance_tiers`.
    """

    __slots__ = ("_amounts", "_arrays", "_floors", "_levs", "_mmrs", "tiers")

    def __init__(self, tiers: Sequence[Tier]) -> None:
        if not tiers:
            msg = "a tier table needs at least one tier"
            raise ConfigError(msg)
        ordered = tuple(sorted(tiers, key=lambda t: t.min_notional))
        self.tiers: tuple[Tier, ...] = ordered
        self._floors = tuple(t.min_notional for t in ordered)
        self._mmrs = tuple(t.mmr for t in ordered)
        self._amounts = tuple(t.maintenance_amount for t in ordered)
        self._levs = tuple(t.max_leverage for t in ordered)
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.tiers)

    def __repr__(self) -> str:
        return f"TierTable({len(self.tiers)} tiers, mmr {self._mmrs[0]}..{self._mmrs[-1]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TierTable) and self.tiers == other.tiers

    def __hash__(self) -> int:
        return hash(self.tiers)

    # -- lookups (hot path) ---------------------------------------------------------------
    def index_for(self, notional: float) -> int:
        """Return the 0-based index of the tier holding ``notional`` (settle currency).

        The highest tier whose ``min_notional <= notional``; a notional beyond the last cap
        stays in the last tier, below the first floor in the first.
        """
        i = bisect_right(self._floors, notional) - 1
        return 0 if i < 0 else i

    def tier_for(self, notional: float) -> Tier:
        """Return the :class:`Tier` holding ``notional`` (settle currency).

        >>> t = TierTable.from_rows([{"min_notional": 0, "max_notional": 50_000, "mmr": 0.004,
        ...     "max_leverage": 125}, {"min_notional": 50_000, "max_notional": 250_000,
        ...     "mmr": 0.005, "max_leverage": 100}])
        >>> t.tier_for(50_000).tier
        2
        """
        return self.tiers[self.index_for(notional)]

    def rate_and_amount(self, notional: float) -> tuple[float, float]:
        """Return ``(MMR, maintenance amount)`` of the tier holding ``notional``."""
        i = self.index_for(notional)
        return self._mmrs[i], self._amounts[i]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The floors, rates and maintenance amounts as float64 arrays (the margin kernel's
        tier layout)."""
        if self._arrays is None:
            self._arrays = (np.asarray(self._floors, dtype=np.float64),
                            np.asarray(self._mmrs, dtype=np.float64),
                            np.asarray(self._amounts, dtype=np.float64))
        return self._arrays

    def maintenance_margin(self, notional: float) -> float:
        """Return ``notional × MMR − maintenance amount`` (settle currency, never negative),
        [B1] §2.1, as the margin kernel computes it.

        >>> t = TierTable.from_rows([{"min_notional": 0, "max_notional": 50_000, "mmr": 0.004,
        ...     "max_leverage": 125}, {"min_notional": 50_000, "max_notional": 250_000,
        ...     "mmr": 0.005, "max_leverage": 100}])
        >>> round(t.maintenance_margin(60_000), 6)   # 60,000 × 0.5 % − 50
        250.0
        """
        floors, mmr, cum = self.arrays()
        return float(kernel.tiered_maintenance(notional, floors, mmr, cum, 0, len(floors)))

    def max_leverage(self, notional: float) -> float:
        """Return the highest leverage allowed for a position of ``notional``."""
        return self._levs[self.index_for(notional)]

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_tiers(cls, tiers: Iterable[Tier]) -> TierTable:
        """Build a table from :class:`Tier` objects."""
        return cls(list(tiers))

    @classmethod
    def from_rows(cls, rows: object, *, where: str = "tiers") -> TierTable:
        """Build a table from the calculator's JSON rows.

        Each row: ``min_notional``, ``max_notional``, ``mmr``, ``max_leverage`` and optionally
        ``maintenance_amount`` (derived by the cum recursion when absent) and ``tier``.
        Errors name the field path, prefixed by ``where``.
        """
        if not isinstance(rows, list | tuple) or not rows:
            msg = f"{where}: expected a non-empty list of tiers, got {rows!r}"
            raise ConfigError(msg)
        parsed: list[dict[str, float]] = []
        for i, row in enumerate(rows):
            path = f"{where}[{i}]"
            if not isinstance(row, Mapping):
                msg = f"{path}: expected an object with min_notional, mmr, max_leverage"
                raise ConfigError(msg)
            known = {"tier", "min_notional", "max_notional", "mmr", "maintenance_amount",
                     "max_leverage"}
            for key in row:
                if key not in known:
                    msg = f"{path}.{key}: unknown tier field; expected one of {sorted(known)}"
                    raise ConfigError(msg)
            item = {
                "min_notional": _number(row.get("min_notional"), f"{path}.min_notional", low=0.0),
                "max_notional": _number(row.get("max_notional", math.inf),
                                        f"{path}.max_notional", low=0.0),
                "mmr": _number(row.get("mmr"), f"{path}.mmr", low=0.0, high=1.0),
                "max_leverage": _number(row.get("max_leverage", 1.0), f"{path}.max_leverage",
                                        low=0.0, strict=True),
            }
            if row.get("maintenance_amount") is not None:
                item["maintenance_amount"] = _number(row["maintenance_amount"],
                                                     f"{path}.maintenance_amount")
            parsed.append(item)
        return cls._build(parsed, where)

    @classmethod
    def from_ccxt(cls, rows: object, *, where: str = "tiers") -> TierTable:
        """Build a table from ccxt unified leverage tiers (``fetch_leverage_tiers`` rows).

        Uses ``minNotional``, ``maxNotional``, ``maintenanceMarginRate``, ``maxLeverage`` and
        ``info.cum`` when present (Binance); otherwise derives the maintenance amount.
        """
        if not isinstance(rows, list | tuple) or not rows:
            msg = f"{where}: expected a non-empty list of ccxt leverage tiers"
            raise ConfigError(msg)
        parsed: list[dict[str, float]] = []
        for i, row in enumerate(rows):
            path = f"{where}[{i}]"
            if not isinstance(row, Mapping):
                msg = f"{path}: expected a ccxt leverage tier object"
                raise ConfigError(msg)
            item = {
                "min_notional": _number(row.get("minNotional"), f"{path}.minNotional", low=0.0),
                "max_notional": _number(row.get("maxNotional", math.inf), f"{path}.maxNotional",
                                        low=0.0),
                "mmr": _number(row.get("maintenanceMarginRate"),
                               f"{path}.maintenanceMarginRate", low=0.0, high=1.0),
                "max_leverage": _number(row.get("maxLeverage", 1.0), f"{path}.maxLeverage",
                                        low=0.0, strict=True),
            }
            info = row.get("info")
            if isinstance(info, Mapping) and info.get("cum") is not None:
                item["maintenance_amount"] = _number(info["cum"], f"{path}.info.cum")
            parsed.append(item)
        return cls._build(parsed, where)

    @classmethod
    def _build(cls, parsed: list[dict[str, float]], where: str) -> TierTable:
        parsed.sort(key=lambda r: r["min_notional"])
        for i in range(1, len(parsed)):
            if parsed[i]["min_notional"] == parsed[i - 1]["min_notional"]:
                msg = f"{where}[{i}].min_notional: two tiers start at {parsed[i]['min_notional']}"
                raise ConfigError(msg)
        tiers: list[Tier] = []
        prev_mmr = 0.0
        prev_cum = 0.0
        for i, r in enumerate(parsed):
            # a missing amount continues the recursion from the previous tier's actual amount
            cum = r.get("maintenance_amount")
            if cum is None:
                cum = round(r["min_notional"] * (r["mmr"] - prev_mmr) + prev_cum, 10)
            tiers.append(Tier(tier=i + 1, min_notional=r["min_notional"],
                              max_notional=r["max_notional"], mmr=r["mmr"],
                              maintenance_amount=cum, max_leverage=r["max_leverage"]))
            prev_mmr, prev_cum = r["mmr"], cum
        return cls(tiers)


def load_binance_tiers(path: str | Path, symbol: str | None = None) -> dict[str, TierTable]:
    """Read a ccxt leverage-tiers dump (e.g. freqtrade's ``binance_leverage_tiers.json``).

    The file is a JSON object ``{ccxt symbol: [ccxt tier rows]}``. Returns ``{symbol: table}``,
    only for ``symbol`` when it is given (a ConfigError names a symbol missing from the file).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})"
        raise ConfigError(msg) from exc
    if not isinstance(data, Mapping):
        msg = f"{p}: expected an object mapping ccxt symbols to tier lists"
        raise ConfigError(msg)
    if symbol is not None:
        if symbol not in data:
            msg = f"{p}: no tiers for {symbol!r}"
            raise ConfigError(msg)
        return {symbol: TierTable.from_ccxt(data[symbol], where=f"{p.name}[{symbol!r}]")}
    return {str(k): TierTable.from_ccxt(v, where=f"{p.name}[{k!r}]") for k, v in data.items()}


def _number(value: object, path: str, *, low: float | None = None, high: float | None = None,
            strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        msg = f"{path}: expected a number, got {value!r}"
        raise ConfigError(msg)
    try:
        x = float(value)
    except ValueError:
        msg = f"{path}: expected a number, got {value!r}"
        raise ConfigError(msg) from None
    if math.isnan(x):
        msg = f"{path}: expected a number, got NaN"
        raise ConfigError(msg)
    if low is not None and (x < low or (strict and x == low)):
        msg = f"{path}: expected a number {'>' if strict else '>='} {low:g}, got {x:g}"
        raise ConfigError(msg)
    if high is not None and x > high:
        msg = f"{path}: expected a number <= {high:g}, got {x:g}"
        raise ConfigError(msg)
    return x
