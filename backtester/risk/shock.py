"""Shock an account snapshot and judge it: moved prices, repriced options, liquidated positions.

A snapshot is the margin calculator's input (DESIGN §4). :func:`shock` moves every price of an
asset together — perp and future marks and indexes, option underlyings, the asset's own index
(coin collateral) — and reprices options with Black-76 at the shocked underlying and shocked
implied vol. The shocked snapshot goes through :func:`backtester.margin.calculator.evaluate`.

Sign conventions: a move is a fraction of the current price (``-0.1`` = 10 % lower, ``+0.2`` =
20 % higher); a vol move is a relative change of implied volatility (``+0.5`` = vol × 1.5).
Stablecoins move only when named explicitly (a de-peg), never through ``"*"`` or a uniform crash.

:func:`smallest_move` finds the nearest move (a fall or a rise) of some assets that puts the
account in liquidation; :func:`smallest_crash` is its fall. In isolated mode a position loses
at most its allocation: :func:`account_equity` counts each position's own margin balance
(allocation + UPnL) at no less than 0.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from backtester.errors import ConfigError
from backtester.instruments import OptionType, symbol_underlying
from backtester.instruments.assets import STABLECOINS
from backtester.margin.calculator import evaluate
from backtester.margin.kernel import DIST_DOWN, DIST_UP
from backtester.margin.snapshot import (
    ParsedPosition,
    ParsedSnapshot,
    parse_snapshot,
    valuation_price,
)
from backtester.margin.status import MarginStatus
from backtester.pricing import implied_vol, inverse_price, price, years_between

__all__ = ["FALL_LIMIT", "RISE_LIMIT", "Direction", "ShockResult", "account_equity", "assets_of",
           "bankrupt_positions", "judge", "liquidated_positions", "shock", "smallest_crash",
           "smallest_move"]

# Vol used when an option's mark admits no implied vol (at or below intrinsic): its value then
# moves like its intrinsic value.
_FLOOR_VOL = 1e-4

#: Largest fall searched by :func:`smallest_move` (−99 %: a price must stay above 0), the
#: per-bar distance to liquidation's (``backtester.margin.kernel.DIST_DOWN``).
FALL_LIMIT = 1.0 - DIST_DOWN
#: Largest rise searched by :func:`smallest_move`: +1,000 % (the price × 11), the same range as
#: the per-bar distance to liquidation (``backtester.margin.kernel.DIST_UP``). A short
#: liquidates at a rise of about its collateral / notional (+100 % at 1x, +200 % at 0.5x),
#: so rises well beyond +100 % are reachable for a lightly leveraged short; a short backed by
#: more than ten times its notional is reported as not liquidating within range.
RISE_LIMIT = DIST_UP - 1.0
#: Rises beyond +100 % are scanned in steps this many times the fall/rise ``step``.
_COARSE = 10


class Direction(StrEnum):
    """Which way a searched move goes: ``down`` (a fall, move < 0) or ``up`` (a rise, > 0)."""

    DOWN = "down"
    UP = "up"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShockResult:
    """The account after one shock.

    Amounts are in the calculator's valuation currency (USD for USD pools, the coin for coin
    pools). ``equity`` is the account's equity at the shocked marks (:func:`account_equity`:
    the margin balance; in isolated mode each position counts at no less than 0, so a position
    loses at most its allocation); ``equity_change`` is ``equity`` minus the unshocked equity
    (negative = loss). ``status`` (a :class:`~backtester.margin.status.MarginStatus`, equal to
    ``ok``/``call``/``liquidate``) and ``margin_ratio`` are the calculator's (isolated: the worst
    position's, each position judged on its own margin). ``liquidated`` lists ``"SYMBOL side"``
    of the positions the profile would liquidate (see :func:`liquidated_positions`);
    ``is_bankrupt`` is True when the account's equity is not positive;
    ``bankrupt_positions`` (isolated only) lists the positions whose own margin balance is not
    positive — their allocation is used up and the rest of their loss is not the account's.
    """

    name: str
    moves: Mapping[str, float]
    vol_moves: Mapping[str, float]
    equity: float
    equity_change: float
    maintenance_margin: float
    margin_ratio: float | None
    status: MarginStatus
    liquidated: tuple[str, ...]
    is_bankrupt: bool
    bankrupt_positions: tuple[str, ...] = ()


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
    return _shocked(snapshot, parse_snapshot(snapshot), moves, vol_moves or {})


def _shocked(snapshot: Mapping[str, object], parsed: ParsedSnapshot, moves: Mapping[str, float],
             vol_moves: Mapping[str, float]) -> dict[str, object]:
    # shock() with the snapshot already parsed (a search shocks one snapshot many times)
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
    # valuation units per settle unit: the calculator's conversion (the snapshot evaluated, so
    # the price is known)
    settle = p.instrument.settle
    price = valuation_price(snap, settle)
    if price is None:
        msg = (f"positions[{p.index}].instrument.settle: no USD price for {settle}; give "
               f"prices.{settle}.index")
        raise ConfigError(msg)
    return price


def _close_value(p: ParsedPosition) -> float:
    # what closing at mark books into the wallet (settle currency)
    return p.instrument.close_value(p.qty, p.entry_price, p.mark)


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


def _own_balances(snapshot: Mapping[str, object]) -> list[float]:
    # isolated: each position's own margin balance (allocation + UPnL, valuation currency) is
    # what the calculator reports for that position alone with no free collateral beside it
    raw = snapshot.get("positions") or []
    assert isinstance(raw, list)
    return [float(evaluate({**snapshot, "collateral": {}, "positions": [p]})  # type: ignore[arg-type]
                  ["margin_balance"]) for p in raw]


def account_equity(snapshot: Mapping[str, object],
                   result: Mapping[str, object] | None = None) -> float:
    """Return the account's equity in the valuation currency, an isolated loss capped.

    Cross and portfolio: the calculator's margin balance (collateral value + Σ UPnL; negative
    when the losses exceed the collateral). Isolated: the free balance plus each position's own
    margin balance (its allocation + its UPnL) floored at 0 — a position loses at most its
    allocation, the exchange's insurance fund takes the rest (as the engine books it). Marks as
    given, no liquidation fee: a position past its liquidation price but not its bankruptcy
    price still counts what is left of its allocation, which a liquidation would partly or
    wholly pay out as the fee; the true equity then lies between this and the free balance
    plus the other positions.

    Parameters
    ----------
    snapshot
        A margin-calculator snapshot (DESIGN §4).
    result
        ``evaluate(snapshot)`` when already computed.

    Examples
    --------
    >>> tiers = [{"min_notional": 0, "max_notional": 1e12, "mmr": 0.005,
    ...           "maintenance_amount": 0, "max_leverage": 100}]
    >>> s = {"profile": "bybit", "mode": "isolated", "collateral": {"USDT": 1000.0},
    ...      "prices": {"BTC/USDT:USDT": {"mark": 40000.0}},
    ...      "positions": [{"symbol": "BTC/USDT:USDT", "side": "long", "size": 1,
    ...                     "entry_price": 50000.0, "isolated_margin": 5000.0,
    ...                     "tiers": tiers}]}
    >>> account_equity(s)   # 1,000 free + max(5,000 - 10,000, 0)
    1000.0
    """
    return _equity_and_bankrupt(snapshot, result)[0]


def bankrupt_positions(snapshot: Mapping[str, object]) -> tuple[str, ...]:
    """Return ``"SYMBOL side"`` of the isolated positions whose own margin balance is ≤ 0.

    Their allocation is used up (the mark is at or past the bankruptcy price). Empty for cross
    and portfolio books, where bankruptcy is the account's (``equity <= 0``).
    """
    return _equity_and_bankrupt(snapshot, None)[1]


def _equity_and_bankrupt(snapshot: Mapping[str, object],
                         result: Mapping[str, object] | None) -> tuple[float, tuple[str, ...]]:
    parsed = parse_snapshot(snapshot)
    res = evaluate(snapshot) if result is None else result
    equity = float(res["margin_balance"])  # type: ignore[arg-type]
    if parsed.mode != "isolated":
        return equity, ()
    own = _own_balances(snapshot)
    # margin balance = free + Σ own balances: remove the part of each below 0
    return (equity - sum(min(b, 0.0) for b in own),
            tuple(f"{p.symbol} {p.side}" for p, b in zip(parsed.positions, own, strict=True)
                  if b <= 0.0))


def judge(snapshot: Mapping[str, object], *, name: str, moves: Mapping[str, float],
          vol_moves: Mapping[str, float] | None = None,
          base_equity: float | None = None) -> ShockResult:
    """Shock ``snapshot``, evaluate it and return the outcome (see :class:`ShockResult`).

    ``base_equity`` is the unshocked :func:`account_equity` when already computed.
    """
    vol_moves = dict(vol_moves or {})
    shocked = shock(snapshot, moves, vol_moves)
    res = evaluate(shocked)
    equity, bankrupt = _equity_and_bankrupt(shocked, res)
    if base_equity is None:
        base_equity = account_equity(snapshot)
    ratio = res.get("margin_ratio")
    return ShockResult(name=name, moves=dict(moves), vol_moves=vol_moves, equity=equity,
                       equity_change=equity - base_equity,
                       maintenance_margin=float(res["maintenance_margin"]),  # type: ignore[arg-type]
                       margin_ratio=None if ratio is None else float(ratio),  # type: ignore[arg-type]
                       status=MarginStatus(str(res["status"])),
                       liquidated=liquidated_positions(shocked, res),
                       is_bankrupt=equity <= 0.0,
                       bankrupt_positions=bankrupt)


def _liquidates(snapshot: Mapping[str, object], parsed: ParsedSnapshot, assets: Iterable[str],
                x: float) -> bool:
    return _is_liquidating(evaluate(_shocked(snapshot, parsed, dict.fromkeys(assets, x), {})))


def _scan(direction: Direction, step: float, limit: float) -> list[float]:
    # unsigned scan points: falls in steps of ``step``; rises the same up to +100 %, then in
    # steps of _COARSE x step (a price x 11 in 1 % steps would cost 1,000 evaluations)
    if direction is Direction.DOWN:
        return [min(i * step, limit) for i in range(1, max(1, math.ceil(limit / step)) + 1)]
    fine = min(limit, 1.0)
    points = [min(i * step, fine) for i in range(1, max(1, math.ceil(fine / step)) + 1)]
    if limit > fine:
        coarse = _COARSE * step
        points += [min(fine + j * coarse, limit)
                   for j in range(1, math.ceil((limit - fine) / coarse) + 1)]
    return points


def smallest_move(snapshot: Mapping[str, object], assets: Iterable[str] | None = None, *,
                  direction: Direction = Direction.DOWN, step: float = 0.01,
                  tolerance: float = 0.001, limit: float | None = None) -> float | None:
    """Return the smallest move of ``assets`` in ``direction`` that liquidates the account.

    Every listed asset (default: all non-stable assets of the snapshot) moves by the same
    fraction ``x``, every other price is held at its mark. The result is signed — negative for
    ``down`` (``-0.0955`` = a 9.55 % fall), positive for ``up`` (``+0.19`` = a 19 % rise) — 0.0
    when the account is already liquidating, None when no move up to ``limit`` liquidates it.

    Parameters
    ----------
    snapshot
        A margin-calculator snapshot (DESIGN §4).
    assets
        The assets moved together; the others are held.
    direction
        ``Direction.DOWN`` (falls) or ``Direction.UP`` (rises).
    step
        Scan step, a fraction of the price. Falls are scanned ``step, 2·step, …`` down to
        ``-limit``; rises in ``step`` up to +100 %, then in ``10·step`` up to ``+limit``. A
        hedged book need not be monotonic, so the first crossing from 0 is the one wanted; a
        liquidating window narrower than the scan step can be stepped over.
    tolerance
        The first bracket is bisected until it is narrower than ``tolerance / 10`` (an
        absolute fraction); the liquidating end of the bracket is returned.
    limit
        The largest fall or rise searched (unsigned); default :data:`FALL_LIMIT` (0.99) down,
        :data:`RISE_LIMIT` (10.0, i.e. +1,000 %) up.
    """
    names = tuple(assets_of(snapshot) if assets is None else assets)
    if _is_liquidating(evaluate(snapshot)):
        return 0.0
    if not names:
        return None
    if limit is None:
        limit = FALL_LIMIT if direction is Direction.DOWN else RISE_LIMIT
    sign = -1.0 if direction is Direction.DOWN else 1.0
    parsed = parse_snapshot(snapshot)
    prev = 0.0
    for s in _scan(direction, step, limit):
        x = sign * s
        if _liquidates(snapshot, parsed, names, x):
            lo, hi = prev, x        # lo survives, hi liquidates
            while abs(hi - lo) > tolerance / 10:
                mid = 0.5 * (lo + hi)
                if _liquidates(snapshot, parsed, names, mid):
                    hi = mid
                else:
                    lo = mid
            return hi
        prev = x
    return None


def smallest_crash(snapshot: Mapping[str, object], assets: Iterable[str] | None = None, *,
                   step: float = 0.01, tolerance: float = 0.001,
                   limit: float = FALL_LIMIT) -> float | None:
    """Return the smallest uniform fall of ``assets`` that puts the account in liquidation.

    The fall of :func:`smallest_move` (``direction=Direction.DOWN``): negative (e.g.
    ``-0.0955``), 0.0 when the account is already liquidating, None when no fall down to
    ``-limit`` liquidates it. Scan in ``step``, then bisection to ``tolerance`` (0.001 = 0.1 %).
    """
    return smallest_move(snapshot, assets, direction=Direction.DOWN, step=step,
                         tolerance=tolerance, limit=limit)
