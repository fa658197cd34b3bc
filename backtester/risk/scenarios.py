"""Stress scenarios: named historical shocks (``scenarios.json``) and user grids.

A scenario moves prices per asset by a fraction (``-0.3`` = every BTC mark, index, underlying
and BTC collateral falls 30 %) and implied vols per asset by a relative change (``+1.0`` = vol
doubles). The key ``"*"`` applies to every other non-stable asset of the account.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from backtester.errors import ConfigError

__all__ = ["Grid", "Scenario", "grid_scenarios", "load_scenarios", "parse_range"]

_DATA = Path(__file__).resolve().parent / "scenarios.json"
_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One stress scenario.

    Parameters
    ----------
    name
        Identifier (``ftx_nov_2022``, ``grid BTC -10% ETH -12% vol +50%``).
    moves
        Asset → price move as a fraction of the current price (``-0.1`` = 10 % lower);
        ``"*"`` = every other non-stable asset.
    vol_moves
        Asset → relative change of implied volatility (``0.5`` = vol × 1.5); ``"*"`` as above.
    title
        Human description.
    sources
        ``"ASSET.moves"``/``"ASSET.vol_moves"`` → where the number comes from (or "assumption").
    """

    name: str
    moves: Mapping[str, float]
    vol_moves: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    title: str = ""
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Grid:
    """A user grid: BTC moves × vol moves, other assets following BTC with a beta.

    ``btc`` moves (fractions, e.g. ``-0.05 … -0.5``), ``betas`` asset → beta to BTC (ETH 1.2
    moves ETH 1.2 × BTC's move; assets not named stay still), ``vol`` relative vol moves applied
    to every asset (``0 … 1``).
    """

    btc: tuple[float, ...]
    betas: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    vol: tuple[float, ...] = (0.0,)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{where}: expected a finite number, got {value!r}"
        raise ConfigError(msg)
    return float(value)


def _moves(raw: object, where: str) -> tuple[dict[str, float], dict[str, str]]:
    if not isinstance(raw, Mapping):
        msg = f"{where}: expected an object asset -> {{value, source}}, got {raw!r}"
        raise ConfigError(msg)
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for asset, entry in raw.items():
        if not isinstance(entry, Mapping) or "value" not in entry or "source" not in entry:
            msg = f"{where}.{asset}: expected {{\"value\": number, \"source\": text}}"
            raise ConfigError(msg)
        values[str(asset)] = _number(entry["value"], f"{where}.{asset}.value")
        sources[str(asset)] = str(entry["source"])
    return values, sources


def load_scenarios(path: str | Path | None = None) -> dict[str, Scenario]:
    """Load the named historical scenarios (default: the bundled ``scenarios.json``).

    Every number carries a ``source`` (a reference, or "assumption" with the reasoning).
    """
    file = _DATA if path is None else Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{file}: unreadable scenario file ({exc})"
        raise ConfigError(msg) from exc
    raw = data.get("scenarios") if isinstance(data, Mapping) else None
    if not isinstance(raw, Mapping):
        msg = f"{file}: expected a top-level 'scenarios' object"
        raise ConfigError(msg)
    out: dict[str, Scenario] = {}
    for name, spec in raw.items():
        where = f"{file.name}: scenarios.{name}"
        if not isinstance(spec, Mapping):
            msg = f"{where}: expected an object"
            raise ConfigError(msg)
        moves, msrc = _moves(spec.get("moves"), f"{where}.moves")
        vols, vsrc = _moves(spec.get("vol_moves") or {}, f"{where}.vol_moves")
        sources = {f"{a}.moves": s for a, s in msrc.items()}
        sources.update({f"{a}.vol_moves": s for a, s in vsrc.items()})
        out[str(name)] = Scenario(name=str(name), moves=MappingProxyType(moves),
                                  vol_moves=MappingProxyType(vols),
                                  title=str(spec.get("title", "")),
                                  sources=MappingProxyType(sources))
    return out


def parse_range(text: str, *, where: str) -> tuple[float, ...]:
    """Parse ``start:stop:step`` (stop inclusive) or ``v1,v2,...`` into a tuple of floats.

    >>> parse_range("-0.05:-0.2:0.05", where="--grid")
    (-0.05, -0.1, -0.15, -0.2)
    >>> parse_range("0,0.5", where="--vol")
    (0.0, 0.5)
    """
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            step = abs(step)
            if step == 0.0:
                msg = f"{where}: step must not be 0 in {text!r}"
                raise ConfigError(msg)
            direction = 1.0 if stop >= start else -1.0
            n = math.floor(abs(stop - start) / step + 1e-9)
            return tuple(round(start + direction * i * step, 10) for i in range(n + 1))
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        msg = f"{where}: expected start:stop:step or v1,v2,..., got {text!r}"
        raise ConfigError(msg) from None


def grid_scenarios(grid: Grid) -> list[Scenario]:
    """Expand a grid into scenarios (BTC move outer, vol move inner)."""
    out = []
    for b in grid.btc:
        for v in grid.vol:
            moves = {"BTC": b}
            label = [f"BTC{b:+.4g}"]
            for asset, beta in sorted(grid.betas.items()):
                moves[asset.upper()] = max(beta * b, -0.99)
                label.append(f"{asset.upper()}{beta * b:+.4g}")
            label.append(f"vol{v:+.4g}")
            out.append(Scenario(name="grid " + " ".join(label), moves=MappingProxyType(moves),
                                vol_moves=MappingProxyType({"*": v}) if v else _EMPTY,
                                title=f"user grid (beta {dict(grid.betas)})",
                                sources=MappingProxyType({"*": "user grid"})))
    return out
