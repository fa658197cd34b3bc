"""Deribit-like portfolio margin: a scenario engine over price moves and vol shocks.

Each risk unit (one underlying in one valuation currency) is revalued on a grid of underlying
moves × vol scenarios (docs/margin-rules.md §7.4 [DB9][DB10]):

* core grid: moves ``−price_range … +price_range`` in ``2·buckets_count + 1`` even buckets
  (default ±16 % in 9 buckets), each with vol ``up``, ``same`` and ``down``;
* extended table: moves ``extended_moves`` (default −66 %, −33 %, +50 % … +500 %) with vol up
  only, PnL scaled by ``extended_table_factor`` and damped (see ``assumptions``); evaluated for
  risk units that hold options.

The initial requirement of a unit is the worst scenario loss (``max(0, −min PnL)``); the
maintenance requirement is ``mm_factor × initial``. Valuation currency: USD for linear
positions; for inverse (coin-settled) positions the PnL is computed in the coin, so an
underlying with both kinds forms two risk units.

Scenario PnL per position (move ``x``, price ``P' = P·(1 + x)``):

* linear perpetual/future: ``qty·contract_size·(P' − P)`` USD;
* inverse perpetual/future (``contract_size`` = USD face): ``qty·contract_size·(1/P − 1/P')``
  coin, i.e. ``q·x/(1 + x)`` per coin of notional;
* option: Black-76 at forward ``F·(1 + x)``, the scenario vol and the time to expiry at
  ``time_ms``, minus the Black-76 value at the unshocked forward and vol (so the zero scenario
  is exactly zero); linear in USD per unit, inverse in coin (``value / forward``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal, cast

import numpy as np

from backtester.errors import ConfigError
from backtester.instruments.math import pnl as contract_pnl
from backtester.pricing.black76 import MS_PER_YEAR, FloatArray, price
from backtester.pricing.surface import VolSurface

__all__ = [
    "PortfolioParams",
    "PortfolioPosition",
    "PortfolioResult",
    "RiskUnitResult",
    "option_pnl_grid",
    "portfolio_margin",
]

PositionKind = Literal["perpetual", "future", "option"]
VolScenario = Literal["up", "same", "down"]

_ASSUMPTIONS = (
    "vol shock formula (third-party reading [X15] ⚠): sigma_up = max(sigma·(1 + "
    "volatility_range_up·(30/dte)^p), min_volatility_for_shock_up), sigma_down = max(sigma·(1 − "
    "volatility_range_down·(30/dte)^p), 0), p = short_term_vega_power below "
    "vega_power_switch_days else long_term_vega_power",
    "days to expiry in the vol shock are floored at min_days_to_expiry (formula undefined at 0)",
    "maintenance = mm_factor × initial (relation not stated in the captured text ⚠)",
    "extended table dampener form is not published (⚠): pnl_ext = extended_table_factor · pnl "
    "/ (1 + |pnl| / extended_dampener) — a counted loss never exceeds the dampener, so a +500 "
    "% move on a short call cannot demand several times the spot; the USD dampener is used "
    "for coin units too, converted at the spot (extended_dampener_coin is kept as data but "
    "unused: 100,000 BTC would dampen nothing)",
    "the extended table counts only short options struck beyond the core grid "
    "(|ln(K/F)| > price_range), the 'large far-OTM short options' it exists for; other "
    "positions and futures-only units use the core grid ⚠",
    "futures and options of one underlying move by the same percentage (no basis shock)",
    "option scenario PnL is taken against the Black-76 value at the current forward and vol, "
    "not against the recorded mark",
    "not modelled: delta shock (max_delta_shock), annualised move risk, minimum charges, "
    "contingency add-ons, liquidity add-ons, cross-currency (X:PM) haircuts",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioParams:
    """Parameters of the scenario engine; defaults are Deribit's published BTC values [DB10].

    Parameters
    ----------
    price_range
        Largest core underlying move as a fraction (0.16 = ±16 %).
    buckets_count
        Buckets on each side of zero (grid size ``2·buckets_count + 1``).
    volatility_range_up, volatility_range_down
        Relative vol shocks at 30 days to expiry.
    min_volatility_for_shock_up
        Floor of the shocked-up vol (fraction).
    short_term_vega_power, long_term_vega_power
        Exponent ``p`` of ``(30/dte)^p`` below / from ``vega_power_switch_days``.
    vega_power_switch_days
        Days to expiry at which the exponent switches.
    min_days_to_expiry
        Floor on days to expiry used in the vol shock.
    extended_moves
        Underlying moves of the extended table (fractions), evaluated with vol up only.
    extended_table_factor
        Fraction of extended-table PnL that counts.
    extended_dampener_coin, extended_dampener_usd
        Dampener of extended PnL for coin-valued and USD-valued units.
    mm_factor
        Maintenance margin as a fraction of initial margin.
    """

    price_range: float = 0.16
    buckets_count: int = 4
    volatility_range_up: float = 0.5
    volatility_range_down: float = 0.25
    min_volatility_for_shock_up: float = 0.5
    short_term_vega_power: float = 0.3
    long_term_vega_power: float = 0.13
    vega_power_switch_days: float = 30.0
    min_days_to_expiry: float = 1.0
    extended_moves: tuple[float, ...] = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
    extended_table_factor: float = 1.0
    extended_dampener_coin: float = 100_000.0
    extended_dampener_usd: float = 25_000.0
    mm_factor: float = 0.8
    assumptions: tuple[str, ...] = field(default=_ASSUMPTIONS)

    def __post_init__(self) -> None:
        if not 0 < self.price_range < 1 or self.buckets_count < 1:
            msg = "PortfolioParams needs 0 < price_range < 1 and buckets_count >= 1"
            raise ConfigError(msg)
        if any(m <= -1 for m in self.extended_moves):
            msg = f"PortfolioParams extended_moves must be > -1, got {self.extended_moves}"
            raise ConfigError(msg)
        if self.min_days_to_expiry <= 0 or self.extended_dampener_coin <= 0 \
                or self.extended_dampener_usd <= 0 or not 0 < self.mm_factor <= 1:
            msg = ("PortfolioParams needs min_days_to_expiry > 0, dampeners > 0 and "
                   "0 < mm_factor <= 1")
            raise ConfigError(msg)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PortfolioParams:
        """Build from a mapping (e.g. a profile's JSON); unknown keys are an error.

        >>> PortfolioParams.from_dict({"price_range": 0.1, "buckets_count": 2}).price_range
        0.1
        """
        known = {f.name for f in fields(cls)} - {"assumptions"}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"unknown PortfolioParams keys {unknown}; expected some of {sorted(known)}"
            raise ConfigError(msg)
        kwargs: dict[str, object] = {}
        for key, value in data.items():
            if key == "extended_moves":
                if not isinstance(value, list | tuple):
                    msg = f"PortfolioParams extended_moves must be a list, got {value!r}"
                    raise ConfigError(msg)
                kwargs[key] = tuple(float(v) for v in value)
            elif key == "buckets_count":
                kwargs[key] = int(value)  # type: ignore[call-overload]
            else:
                kwargs[key] = float(value)  # type: ignore[arg-type]
        return cls(**kwargs)  # type: ignore[arg-type]

    def core_moves(self) -> tuple[float, ...]:
        """Return the core grid of underlying moves (fractions), ascending.

        >>> PortfolioParams().core_moves()
        (-0.16, -0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12, 0.16)
        """
        return _core_moves(self.price_range, self.buckets_count)


@functools.lru_cache(maxsize=16)
def _core_moves(price_range: float, n: int) -> tuple[float, ...]:
    return tuple(round(price_range * i / n, 12) for i in range(-n, n + 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioPosition:
    """One position as the scenario engine sees it (independent of the engine's Position).

    Parameters
    ----------
    symbol, underlying
        Instrument symbol and the underlying it moves with (e.g. ``BTC``).
    kind
        ``perpetual``, ``future`` or ``option``.
    is_linear
        True for quote-settled (PnL in USD), False for coin-settled (PnL in coin).
    qty
        Signed contracts (positive long).
    contract_size
        Linear and inverse options: underlying units per contract; inverse futures: USD face.
    mark_price
        Futures: the contract's mark (USD). Options: mark per unit in the premium currency
        (informational; scenario PnL uses Black-76 values).
    strike, option_type, expiry_ms, iv
        Options: strike (USD), ``call``/``put``, expiry (ms UTC), implied vol (fraction) used
        when ``portfolio_margin`` gets no vol for it.
    forward
        Options: the option's own forward (USD); None uses the underlying price.
    """

    symbol: str
    underlying: str
    kind: PositionKind
    is_linear: bool
    qty: float
    contract_size: float = 1.0
    mark_price: float = 0.0
    strike: float | None = None
    option_type: Literal["call", "put"] | None = None
    expiry_ms: int | None = None
    iv: float | None = None
    forward: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskUnitResult:
    """Scenario results of one risk unit.

    Parameters
    ----------
    underlying, currency
        The underlying and the valuation currency (``USD`` or the coin).
    initial_margin, maintenance_margin
        Requirement in ``currency`` (>= 0).
    worst_scenario
        Label of the scenario with the largest loss, e.g. ``-16% vol up``.
    scenarios
        Labels of every scenario, in the order of ``pnl``.
    moves, vol_scenarios
        Core grid axes of ``core_pnl``.
    core_pnl
        Core PnL matrix, rows = moves, columns = vol scenarios (up, same, down).
    extended_pnl
        Damped extended-table PnL, one per extended move (vol up).
    """

    underlying: str
    currency: str
    initial_margin: float
    maintenance_margin: float
    worst_scenario: str
    scenarios: tuple[str, ...]
    moves: tuple[float, ...]
    vol_scenarios: tuple[VolScenario, ...]
    core_pnl: tuple[tuple[float, ...], ...]
    extended_pnl: tuple[float, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioResult:
    """Portfolio margin of an account.

    Parameters
    ----------
    initial_margin, maintenance_margin
        Per valuation currency (``USD`` and/or coins), summed over that currency's risk units.
    units
        One :class:`RiskUnitResult` per (underlying, currency), sorted.
    assumptions
        Modelling assumptions (⚠ items of the rules text) behind the numbers.
    """

    initial_margin: Mapping[str, float]
    maintenance_margin: Mapping[str, float]
    units: tuple[RiskUnitResult, ...]
    assumptions: tuple[str, ...]

    @property
    def worst_scenarios(self) -> Mapping[str, str]:
        """Worst scenario label per ``underlying:currency`` unit."""
        return {f"{u.underlying}:{u.currency}": u.worst_scenario for u in self.units}


def _shocked_vols(sigma: FloatArray, dte: FloatArray, p: PortfolioParams
                  ) -> tuple[FloatArray, FloatArray]:
    days = np.maximum(dte, p.min_days_to_expiry)
    power = np.where(days < p.vega_power_switch_days, p.short_term_vega_power,
                     p.long_term_vega_power)
    scale = (30.0 / days) ** power
    up = np.maximum(sigma * (1.0 + p.volatility_range_up * scale), p.min_volatility_for_shock_up)
    down = np.maximum(sigma * (1.0 - p.volatility_range_down * scale), 0.0)
    return up, down


def _resolve_vol(pos: PortfolioPosition, forward: float, t_years: float,
                 vols: Mapping[str, float | VolSurface] | None) -> float:
    source: float | VolSurface | None = None
    if vols is not None:
        source = vols.get(pos.symbol, vols.get(pos.underlying))
    if source is None:
        source = pos.iv
    if source is None:
        msg = f"no implied vol for option {pos.symbol}: give PortfolioPosition.iv or vols[...]"
        raise ConfigError(msg)
    value = source if isinstance(source, float | int) else float(
        source.vol(float(pos.strike or 0.0), forward, max(t_years, 1e-9)))
    if not np.isfinite(value) or value < 0:
        msg = f"implied vol of {pos.symbol} must be finite and >= 0, got {value!r}"
        raise ConfigError(msg)
    return float(value)


def option_pnl_grid(forward: FloatArray, strike: float, t_years: FloatArray, sigma: FloatArray,
                    *, is_call: bool, is_linear: bool, moves: FloatArray,
                    vol_columns: Sequence[VolScenario], params: PortfolioParams) -> FloatArray:
    """Scenario PnL of one unit of an option (``qty·contract_size = 1``) at ``n`` valuations.

    The option scenario PnL of the module docstring, for ``n`` valuations at once (e.g. one per
    bar of a run): Black-76 at forward ``F·(1 + move)`` and each scenario vol, minus the value
    at ``F`` and ``sigma``; in USD per unit (linear) or coin per unit (inverse). Every element
    is computed with the same float operations whatever ``n`` is.

    Parameters
    ----------
    forward, t_years, sigma
        Shape ``(n,)``: the option's forward (USD), time to expiry (365-day years) and implied
        vol (fraction) at each valuation.
    strike
        Strike (USD).
    is_call, is_linear
        Call or put; quote-settled (USD values) or coin-settled (values / forward).
    moves, vol_columns
        The grid: underlying moves (fractions) and vol scenarios (``up``/``same``/``down``).
    params
        Vol shock parameters.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, len(moves), len(vol_columns))``.
    """
    f0 = np.asarray(forward, dtype=np.float64)[:, None, None]
    t = np.asarray(t_years, dtype=np.float64)[:, None, None]
    s0 = np.asarray(sigma, dtype=np.float64)[:, None, None]
    up, down = _shocked_vols(s0, t * 365.0, params)
    by_name = {"up": up, "same": s0, "down": down}
    col_vols = np.concatenate([by_name[c] for c in vol_columns], axis=2)
    f1 = f0 * (1.0 + moves)[:, None]
    v1 = np.asarray(price(f1, strike, t, col_vols, is_call))
    v0 = np.asarray(price(f0, strike, t, s0, is_call))
    if is_linear:
        return v1 - v0
    return v1 / f1 - v0 / f0


def _position_pnl(pos: PortfolioPosition, *, spot: float, moves: FloatArray,
                  vol_columns: Sequence[VolScenario], time_ms: int,
                  vols: Mapping[str, float | VolSurface] | None, params: PortfolioParams,
                  grid: FloatArray | None = None) -> FloatArray:
    # Returns PnL with shape (len(moves), len(vol_columns)) in the position's valuation currency.
    # ``grid``: the option's per-unit grid (option_pnl_grid) at this valuation, when known.
    units = pos.qty * pos.contract_size
    if grid is not None:
        return units * grid
    if pos.kind in ("perpetual", "future"):
        p0 = pos.mark_price if pos.mark_price > 0 else spot
        p1 = p0 * (1.0 + moves)
        # The compiled formula is elementwise: an array of scenario prices gives an array.
        pnl = cast("FloatArray", contract_pnl(pos.qty, pos.contract_size, p0,
                                              cast("float", p1), pos.is_linear))
        return np.repeat(pnl[:, None], len(vol_columns), axis=1)
    if pos.strike is None or pos.option_type is None or pos.expiry_ms is None:
        msg = f"option {pos.symbol} needs strike, option_type and expiry_ms"
        raise ConfigError(msg)
    f0 = pos.forward if pos.forward is not None else spot
    t = max(pos.expiry_ms - time_ms, 0) / MS_PER_YEAR
    sigma = _resolve_vol(pos, f0, t, vols)
    return units * option_pnl_grid(np.asarray([f0]), pos.strike, np.asarray([t]),
                                   np.asarray([sigma]), is_call=pos.option_type == "call",
                                   is_linear=pos.is_linear, moves=moves,
                                   vol_columns=vol_columns, params=params)[0]


def _label(move: float, vol: str) -> str:
    return f"{move * 100:+.0f}% vol {vol}"


@functools.lru_cache(maxsize=16)
def _labels(core: tuple[float, ...], core_cols: tuple[VolScenario, ...],
            ext: tuple[float, ...]) -> tuple[str, ...]:
    # every scenario's label, in the order of a unit's flattened PnL (core rows, then extended)
    return tuple([_label(m, c) for m in core for c in core_cols] + [_label(m, "up") for m in ext])


def _is_far_otm_short(pos: PortfolioPosition, spot: float, price_range: float) -> bool:
    # the extended table exists for large far-OTM short options: strikes beyond the core grid
    if pos.kind != "option" or pos.qty >= 0 or pos.strike is None:
        return False
    fwd = pos.forward or spot
    return bool(abs(np.log(pos.strike / fwd)) > price_range)


def portfolio_margin(positions: Sequence[PortfolioPosition], *,
                     underlying_prices: Mapping[str, float],
                     vols: Mapping[str, float | VolSurface] | None = None, time_ms: int,
                     params: PortfolioParams | None = None,
                     grids: Mapping[str, tuple[FloatArray, FloatArray]] | None = None
                     ) -> PortfolioResult:
    """Return the portfolio margin of ``positions`` from the scenario grid.

    Parameters
    ----------
    positions
        The account's positions (perpetuals, futures, options), any underlyings.
    underlying_prices
        Underlying price (USD) per ``PortfolioPosition.underlying``.
    vols
        Optional implied vols: keyed by option symbol (a fraction or a surface) or by underlying
        (a surface, or one vol for all its options); else ``PortfolioPosition.iv``.
    time_ms
        Valuation time (ms UTC) for time to expiry.
    params
        Scenario parameters; Deribit's published values by default.
    grids
        Optional precomputed per-unit option grids keyed by option symbol: (core, extended),
        :func:`option_pnl_grid` of the option at this valuation over ``params.core_moves()``
        with vols (up, same, down) and over ``params.extended_moves`` with vol up (one row of
        a call over many valuations; the engine records a run's steps this way). The result
        is the same as without them.

    Returns
    -------
    PortfolioResult
        Requirements per valuation currency, per-unit scenario matrices and the assumptions.
    """
    p = PortfolioParams() if params is None else params
    core = np.asarray(p.core_moves())
    ext_all = np.asarray(p.extended_moves)
    core_cols: tuple[VolScenario, ...] = ("up", "same", "down")
    groups: dict[tuple[str, str], list[PortfolioPosition]] = {}
    for pos in positions:
        if pos.kind not in ("perpetual", "future", "option"):
            msg = (f"position {pos.symbol} kind must be perpetual, future or option, "
                   f"got {pos.kind!r}")
            raise ConfigError(msg)
        currency = "USD" if pos.is_linear else pos.underlying
        groups.setdefault((pos.underlying, currency), []).append(pos)
    units: list[RiskUnitResult] = []
    for (underlying, currency), members in sorted(groups.items()):
        spot = underlying_prices.get(underlying)
        if spot is None or not np.isfinite(spot) or spot <= 0:
            msg = f"underlying_prices[{underlying!r}] must be a positive price, got {spot!r}"
            raise ConfigError(msg)
        core_pnl = np.zeros((len(core), len(core_cols)))
        has_options = len(ext_all) > 0 and any(m.kind == "option" for m in members)
        ext = ext_all if has_options else ext_all[:0]
        ext_raw = np.zeros(len(ext))
        for pos in members:
            given = grids.get(pos.symbol) if grids is not None and pos.kind == "option" \
                else None
            core_pnl += _position_pnl(pos, spot=spot, moves=core, vol_columns=core_cols,
                                      time_ms=time_ms, vols=vols, params=p,
                                      grid=None if given is None else given[0])
            if has_options and _is_far_otm_short(pos, spot, p.price_range):
                ext_raw += _position_pnl(pos, spot=spot, moves=ext, vol_columns=("up",),
                                         time_ms=time_ms, vols=vols, params=p,
                                         grid=None if given is None else given[1])[:, 0]
        # one USD bound for both unit kinds (the published coin value, 100,000 BTC, would not
        # dampen anything): coin units use the USD dampener converted at the spot
        damp = p.extended_dampener_usd if currency == "USD" else p.extended_dampener_usd / spot
        ext_pnl = p.extended_table_factor * ext_raw / (1.0 + np.abs(ext_raw) / damp)
        labels = _labels(tuple(core.tolist()), core_cols, tuple(ext.tolist()))
        flat = np.concatenate([core_pnl.ravel(), ext_pnl])
        worst = int(np.argmin(flat))
        im = max(0.0, -float(flat[worst]))
        units.append(RiskUnitResult(
            underlying=underlying, currency=currency, initial_margin=im,
            maintenance_margin=p.mm_factor * im, worst_scenario=labels[worst],
            scenarios=labels, moves=tuple(core.tolist()),
            vol_scenarios=core_cols,
            core_pnl=tuple(map(tuple, core_pnl.tolist())),
            extended_pnl=tuple(ext_pnl.tolist())))
    initial: dict[str, float] = {}
    maintenance: dict[str, float] = {}
    for u in units:
        initial[u.currency] = initial.get(u.currency, 0.0) + u.initial_margin
        maintenance[u.currency] = maintenance.get(u.currency, 0.0) + u.maintenance_margin
    return PortfolioResult(initial_margin=initial, maintenance_margin=maintenance,
                           units=tuple(units), assumptions=p.assumptions)


def evaluate_portfolio(snapshot: Mapping[str, object], *, profile: object) -> dict[str, object]:
    """The margin calculator in ``mode: "portfolio"`` (DESIGN §4 output fields).

    Balances, PnL and per-position fields are those of standard cross margin; the account's
    initial margin is the worst scenario loss of the grid per risk unit (summed over units and
    converted to the valuation currency) and maintenance its ``mm_factor`` share. The output
    adds ``portfolio``: the standard (summed) requirements for comparison, the worst scenario
    per unit and the model's assumptions.
    """
    from backtester.instruments.assets import STABLECOINS
    from backtester.margin.calculator import evaluate
    from backtester.margin.snapshot import parse_snapshot

    del profile
    cross = {**snapshot, "mode": "cross"}
    base = evaluate(cross)
    parsed = parse_snapshot(cross)
    book: list[PortfolioPosition] = []
    prices: dict[str, float] = {}
    for p in parsed.positions:
        inst = p.instrument
        und = p.underlying_price if p.underlying_price is not None else p.index_price
        prices.setdefault(inst.base, und)
        book.append(PortfolioPosition(
            symbol=p.symbol, underlying=inst.base,
            kind="option" if inst.is_option else ("perpetual" if inst.is_perpetual else "future"),
            is_linear=inst.is_linear, qty=p.qty, contract_size=inst.cs, mark_price=p.mark,
            strike=inst.strike,
            option_type=None if inst.option_type is None else inst.option_type.value,  # type: ignore[arg-type]
            expiry_ms=inst.expiry_ms, iv=p.iv, forward=und if inst.is_option else None))
    res = portfolio_margin(book, underlying_prices=prices, time_ms=parsed.ts_ms or 0)
    currency = str(base["valuation_currency"])

    def convert(amounts: Mapping[str, float]) -> float:
        total_usd = sum(v * (1.0 if c == "USD" or c in STABLECOINS else prices.get(c, 0.0))
                        for c, v in amounts.items())
        if currency == "USD" or currency in STABLECOINS:
            return total_usd
        return total_usd / prices[currency] if prices.get(currency) else total_usd

    im = convert(res.initial_margin)
    mm = convert(res.maintenance_margin)
    mb = float(base["margin_balance"])  # type: ignore[arg-type]
    call = parsed.profile.call_level
    out = dict(base)
    out["initial_margin"] = im
    out["maintenance_margin"] = mm
    out["margin_ratio"] = mm / mb if mb > 0 else None
    out["available"] = mb - im
    out["status"] = ("liquidate" if mm > 0 and mb <= mm else
                     "call" if mb > 0 and mm / mb >= call else "ok")
    out["portfolio"] = {"standard_initial_margin": base["initial_margin"],
                        "standard_maintenance_margin": base["maintenance_margin"],
                        "worst_scenarios": dict(res.worst_scenarios),
                        "assumptions": list(res.assumptions)}
    return out
