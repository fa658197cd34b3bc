"""Shock an account snapshot and judge it: moved prices, repriced options, liquidated positions.

A snapshot is the margin calculator's input (DESIGN §4). :func:`shock` moves every price of an
asset together — perp and future marks and indexes, option underlyings, the asset's own index
(coin collateral) — and reprices options with Black-76 at the shocked underlying and shocked
implied vol. The shocked snapshot goes through :func:`backtester.margin.calculator.evaluate`.

Sign conventions: a move is a fraction of the current price (``-0.1`` = 10 % lower); a vol move
is a relative change of implied volatility (``+0.5`` = vol × 1.5). Stablecoins move only when
named explicitly (a de-peg), never through ``"*"`` or a uniform crash.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from backtester.errors import ConfigError
from backtester.instruments import OptionType, symbol_underlying
from backtester.margin.calculator import evaluate
from backtester.margin.snapshot import STABLECOINS, ParsedPosition, ParsedSnapshot, parse_snapshot
from backtester.pricing import implied_vol, inverse_price, price, years_between

__all__ = ["ShockResult", "assets_of", "judge", "liquidated_positions", "shock",
           "smallest_crash"]

# Vol used when an option's mark admits no implied vol (at or below intrinsic): its value then
# moves like its intrinsic value.
_FLOOR_VOL = 1e-4


@dataclass(frozen=True, slots=True, kw_only=True)
class ShockResult:
    """The account after one shock.

    Amounts are in the calculator's valuation currency (USD for USD pools, the coin for coin
    pools). ``equity`` is the margin balance; ``equity_change`` is ``equity`` minus the unshocked
    equity (negative = loss). ``liquidated`` lists ``"SYMBOL side"`` of the positions the profile
    would liquidate (see :func:`liquidated_positions`); ``is_bankrupt`` is True when the margin
    balance is not positive.
    """

    name: str
    moves: Mapping[str, float]
    vol_moves: Mapping[str, float]
    equity: float
    equity_change: float
    maintenance_margin: float
    margin_ratio: float | None
    status: str
    liquidated: tuple[str, ...]
    is_bankrupt: bool


def _move(table: Mapping[str, float], asset: str, where: str) -> float:
    m = table.get(asset)
    if m is None:
        m = 0.0 if asset in STABLECOINS else table.get("*", 0.0)
    if not math.isfinite(m) or m <= -1.0:
        msg = f"{where}.{asset}: expected a finite move above -1 (-100 %), got {m!r}"
        raise ConfigError(msg)
    return m


def assets_of(snapshot: Mapping[str, object]) -> tuple[str, ...]:
    """Return the non-stable assets a snapshot's prices depend on (sorted)."""
    prices = snapshot.get("prices") or {}
    assert isinstance(prices, Mapping)
    out = {symbol_underlying(str(s)) if "/" in str(s) else str(s) for s in prices}
    collateral = snapshot.get("collateral") or {}
    assert isinstance(collateral, Mapping)
    out.update(str(a) for a in collateral)
    return tuple(sorted(a for a in out if a not in STABLECOINS))


def _reprice_option(entry: dict[str, object], p: ParsedPosition, snap: ParsedSnapshot, *,
                    factor: float, vol_move: float) -> None:
    inst = p.instrument
    assert p.underlying_price is not None
    assert inst.strike is not None
    assert inst.expiry_ms is not None
    assert snap.ts_ms is not None
    forward = p.underlying_price
    shocked = forward * factor
    t = float(years_between(snap.ts_ms, inst.expiry_ms))
    is_call = inst.option_type is OptionType.CALL
    is_inverse = not inst.is_linear
    pricer = inverse_price if is_inverse else price
    vol = p.iv
    if vol is None:
        vol = float(implied_vol(p.mark, forward, inst.strike, t, is_call, is_inverse=is_inverse))
    if not math.isfinite(vol):
        vol = _FLOOR_VOL
    new_vol = max(vol * (1.0 + vol_move), _FLOOR_VOL)
    # reprice the change, not the level: a mark that Black-76 does not reproduce exactly at
    # the given iv (basis, smile) keeps its offset, and a zero shock leaves the mark unchanged
    change = (float(pricer(shocked, inst.strike, t, new_vol, is_call))
              - float(pricer(forward, inst.strike, t, vol, is_call)))
    entry["mark"] = max(p.mark + change, 0.0)
    entry["underlying"] = shocked
    entry["iv"] = new_vol
    if entry.get("index") is not None:
        entry["index"] = float(entry["index"]) * factor  # type: ignore[arg-type]


def shock(snapshot: Mapping[str, object], moves: Mapping[str, float],
          vol_moves: Mapping[str, float] | None = None) -> dict[str, object]:
    """Return a copy of ``snapshot`` with every price of each asset moved together.

    Parameters
    ----------
    snapshot
        A margin-calculator snapshot (DESIGN §4).
    moves
        Asset → price move as a fraction (``{"BTC": -0.3}``); ``"*"`` applies to every other
        non-stable asset. Perp/future ``mark`` and ``index``, option ``underlying`` and the
        asset's own price entry (``prices.BTC.index``, which values BTC collateral) all move.
    vol_moves
        Asset → relative implied-vol move for its options (``"*"`` as above). Options are
        repriced with Black-76 at the shocked underlying and vol, time held at ``time``; their
        vol is ``prices[option].iv`` or, when absent, solved from the mark.

    Returns
    -------
    dict
        The shocked snapshot (the input is not modified); options carry the shocked ``iv``.

    Examples
    --------
    >>> s = {"profile": "bybit", "collateral": {"USDT": 1000.0},
    ...      "prices": {"BTC/USDT:USDT": {"mark": 100.0, "index": 100.0}}, "positions": []}
    >>> shock(s, {"BTC": -0.1})["prices"]["BTC/USDT:USDT"]
    {'mark': 90.0, 'index': 90.0}
    """
    vol_moves = vol_moves or {}
    parsed = parse_snapshot(snapshot)
    out = copy.deepcopy(dict(snapshot))
    options = {p.symbol: p for p in parsed.positions if p.instrument.is_option}
    prices = out.get("prices") or {}
    assert isinstance(prices, Mapping)
    new: dict[str, object] = {}
    for sym, raw in prices.items():
        entry = dict(raw)
        asset = symbol_underlying(sym) if "/" in sym else sym
        factor = 1.0 + _move(moves, asset, "moves")
        if sym in options:
            _reprice_option(entry, options[sym], parsed, factor=factor,
                            vol_move=_move(vol_moves, asset, "vol_moves"))
        else:
            for key in ("mark", "index", "underlying"):
                if entry.get(key) is not None:
                    entry[key] = float(entry[key]) * factor
        new[sym] = entry
    for asset in moves:
        if asset in STABLECOINS and asset not in new:
            new[asset] = {"index": 1.0 + _move(moves, asset, "moves")}
    out["prices"] = new
    return out


def _is_liquidating(res: Mapping[str, object]) -> bool:
    return res.get("status") == "liquidate"


def _fx(p: ParsedPosition, snap: ParsedSnapshot) -> float:
    """Valuation units per settle unit (as the calculator converts)."""
    if snap.profile.valuation != "usd":
        return 1.0
    settle = p.instrument.settle
    if settle in snap.asset_prices:
        return snap.asset_prices[settle]
    return p.index_price if settle == p.instrument.base else 1.0


def _close_value(p: ParsedPosition) -> float:
    # what closing at mark books into the wallet (settle currency): PnL for perps/futures,
    # the option's market value (sale proceeds, or cost of buying back a short) for options
    if p.instrument.is_option:
        return p.qty * p.instrument.cs * p.mark
    return p.instrument.pnl(p.qty, p.entry_price, p.mark)


def liquidated_positions(snapshot: Mapping[str, object],
                         result: Mapping[str, object] | None = None) -> tuple[str, ...]:
    """Return ``"SYMBOL side"`` of the positions the profile would liquidate in ``snapshot``.

    Rules:

    * ``isolated``: each position whose liquidation price is crossed by its mark (long: mark ≤
      liquidation price; short: mark ≥ it) — its own margin is exhausted.
    * ``cross`` and ``portfolio``: nothing unless the account status is ``liquidate``; then the
      engine's order (``margin.state``: perps and futures before options, then the largest
      maintenance margin in the valuation currency) is followed, closing whole positions at
      mark and booking their value into the pool, until the account is no longer liquidating.
      Liquidation fees, slippage and partial (tiered / incremental) slices are not modelled, so
      this says *which* positions go first, not how much of the last one.
    """
    parsed = parse_snapshot(snapshot)
    res = evaluate(snapshot) if result is None else result
    rows = res.get("positions") or []
    assert isinstance(rows, list)
    if parsed.mode == "isolated":
        out = []
        for p, row in zip(parsed.positions, rows, strict=True):
            lp = row.get("liquidation_price")
            if lp is None:
                continue
            if (p.qty > 0 and p.mark <= lp) or (p.qty < 0 and p.mark >= lp):
                out.append(f"{p.symbol} {p.side}")
        return tuple(out)
    if not _is_liquidating(res):
        return ()
    raw_positions = snapshot.get("positions") or []
    assert isinstance(raw_positions, list)
    remaining = list(range(len(parsed.positions)))
    closed: list[str] = []
    booked = 0.0
    current = res
    while remaining:
        mb = float(current["margin_balance"]) + booked  # type: ignore[arg-type]
        mm = float(current["maintenance_margin"])  # type: ignore[arg-type]
        if mb > 0.0 and mm < mb:
            break
        cur_rows = current.get("positions") or []
        assert isinstance(cur_rows, list)

        def key(k: int, cur_rows: list[dict[str, object]] = cur_rows) -> tuple[int, float, int]:
            p = parsed.positions[remaining[k]]
            mm_k = float(cur_rows[k].get("maintenance_margin") or 0.0)  # type: ignore[arg-type]
            return (1 if p.instrument.is_option else 0, -mm_k * _fx(p, parsed), remaining[k])

        victim_k = min(range(len(remaining)), key=key)
        victim = parsed.positions[remaining.pop(victim_k)]
        booked += _close_value(victim) * _fx(victim, parsed)
        closed.append(f"{victim.symbol} {victim.side}")
        reduced = {**snapshot, "positions": [raw_positions[i] for i in remaining]}
        current = evaluate(reduced)
    return tuple(closed)


def judge(snapshot: Mapping[str, object], *, name: str, moves: Mapping[str, float],
          vol_moves: Mapping[str, float] | None = None,
          base_equity: float | None = None) -> ShockResult:
    """Shock ``snapshot``, evaluate it and return the outcome (see :class:`ShockResult`)."""
    vol_moves = dict(vol_moves or {})
    shocked = shock(snapshot, moves, vol_moves)
    res = evaluate(shocked)
    equity = float(res["margin_balance"])  # type: ignore[arg-type]
    if base_equity is None:
        base_equity = float(evaluate(snapshot)["margin_balance"])  # type: ignore[arg-type]
    ratio = res.get("margin_ratio")
    return ShockResult(name=name, moves=dict(moves), vol_moves=vol_moves, equity=equity,
                       equity_change=equity - base_equity,
                       maintenance_margin=float(res["maintenance_margin"]),  # type: ignore[arg-type]
                       margin_ratio=None if ratio is None else float(ratio),  # type: ignore[arg-type]
                       status=str(res["status"]),
                       liquidated=liquidated_positions(shocked, res),
                       is_bankrupt=equity <= 0.0)


def _liquidates(snapshot: Mapping[str, object], assets: Iterable[str], x: float) -> bool:
    return _is_liquidating(evaluate(shock(snapshot, dict.fromkeys(assets, x))))


def smallest_crash(snapshot: Mapping[str, object], assets: Iterable[str] | None = None, *,
                   step: float = 0.01, tolerance: float = 0.001,
                   limit: float = 0.99) -> float | None:
    """Return the smallest uniform fall of ``assets`` that puts the account in liquidation.

    Every listed asset (default: all non-stable assets of the snapshot) moves by the same
    fraction ``x``; the result is that ``x`` (negative, e.g. ``-0.0955``), 0.0 when the account
    is already liquidating, None when no fall down to ``-limit`` liquidates it. The search scans
    ``0, -step, -2·step, …`` (a hedged book need not be monotonic, so the first crossing is
    the one wanted) and bisects the first bracket until it is narrower than ``tolerance``
    (an absolute fraction: 0.001 = 0.1 %); the liquidating end of the bracket is returned.
    """
    names = tuple(assets_of(snapshot) if assets is None else assets)
    if _is_liquidating(evaluate(snapshot)):
        return 0.0
    if not names:
        return None
    prev = 0.0
    n = max(1, math.ceil(limit / step))
    for i in range(1, n + 1):
        x = -min(i * step, limit)
        if _liquidates(snapshot, names, x):
            lo, hi = prev, x        # lo survives, hi liquidates
            while abs(hi - lo) > tolerance / 10:
                mid = 0.5 * (lo + hi)
                if _liquidates(snapshot, names, mid):
                    hi = mid
                else:
                    lo = mid
            return hi
        prev = x
    return None
