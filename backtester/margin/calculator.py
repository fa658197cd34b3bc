"""The margin calculator: evaluate one account snapshot (DESIGN §4) and return JSON-ready output.

Units: per-position amounts are in the position's settle currency; account amounts in the
valuation currency (USD for USD-valued pools: binance-usdm, bybit, okx; the pool's coin for
single-coin pools: binance-coinm, deribit standard). ``margin_ratio`` = maintenance margin /
margin balance (null when the margin balance is not positive). Status: ``liquidate`` when
maintenance ≥ margin balance, ``call`` when the ratio reaches the profile's call level.

Pools (profile ``pool``): ``per_settle_asset`` — one pool per settle asset, each valued in USD
at its index (the account status and ratio are those of the worst pool);
``per_coin``/``per_currency`` — exactly one coin pool (a second one is an error naming the
field); ``usd`` — one pool, collateral valued at ``index × haircut`` and position PnL and
requirements at the settle asset's index (haircuts apply to collateral only).

A negative collateral amount is a liability — a stablecoin the account owes after a short option
settled against coin collateral, say — and counts at its full value (index × amount, no
haircut: a haircut discounts what an asset is worth as collateral, not a debt), as the engine
values it. A pool holding one is ``liquidate`` once its margin balance reaches its maintenance
margin even with no position open (maintenance 0: a margin balance at or below 0), as the
engine rules (``backtester.margin.pools.liquidation_status``). Borrowing interest and the
exchanges' margin on borrowings (Bybit, OKX) are not modelled.

Cross: margin balance = collateral value + Σ UPnL; requirements add up (DESIGN §4). Isolated:
each position has its own margin (``isolated_margin``, default its initial margin at entry)
and ``collateral`` is the free balance; the account is liquidating when any position is.

Liquidation and bankruptcy prices (:mod:`backtester.margin.prices`) move the legs of one symbol
together (cross: the long and short of a hedge-mode symbol share one price) and hold everything
else — other symbols, options, collateral and conversion rates — at its current value.
Options get their requirements from ``backtester.margin.options.option_requirement`` (imported
lazily) and have no liquidation price here; ``mode: "portfolio"`` is delegated to
``backtester.margin.portfolio.evaluate_portfolio(snapshot, profile=...)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from backtester.errors import ConfigError
from backtester.margin.prices import (
    Leg,
    bankruptcy_price,
    bybit_inverse_cross_liquidation_price,
    isolated_bankruptcy_price,
    isolated_liquidation_price,
    liquidation_price,
)
from backtester.margin.requirements import position_requirement, rated_requirement
from backtester.margin.snapshot import ParsedPosition, ParsedSnapshot, parse_snapshot

__all__ = ["evaluate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Valued:
    pos: ParsedPosition
    pool: str
    fx: float                  # valuation units per settle unit
    notional: float            # settle currency
    tier: int | None
    initial_margin: float
    maintenance_margin: float
    upnl: float
    leg: Leg | None            # None for options (held fixed in price solves)


def evaluate(snapshot: Mapping[str, object]) -> dict[str, object]:
    """Evaluate a margin snapshot and return the calculator output (DESIGN §4).

    Parameters
    ----------
    snapshot
        The input object: ``profile``, ``mode``, ``position_mode``, ``collateral``,
        ``haircuts``, ``prices``, ``positions``, ``time`` (see DESIGN §4).

    Returns
    -------
    dict
        ``valuation_currency``, ``margin_balance``, ``wallet_balance``, ``unrealized_pnl``,
        ``initial_margin``, ``maintenance_margin``, ``margin_ratio``, ``available``, ``status``
        (``ok``/``call``/``liquidate``), ``exchange_margin_ratio`` (OKX only) and
        ``positions`` (input order: ``symbol``, ``side``, ``notional``, ``tier``,
        ``initial_margin``, ``maintenance_margin``, ``liquidation_price``,
        ``bankruptcy_price``).

    Raises
    ------
    ConfigError
        For any invalid field, naming its path.

    Examples
    --------
    >>> out = evaluate({"profile": "bybit", "collateral": {"USDT": 400.0},
    ...     "prices": {"BTC/USDT:USDT": {"mark": 20_000.0}},
    ...     "positions": [{"symbol": "BTC/USDT:USDT", "side": "long", "size": 1,
    ...                    "entry_price": 20_000.0, "leverage": 50}]})
    >>> out["maintenance_margin"], out["status"]
    (100.0, 'ok')
    """
    snap = parse_snapshot(snapshot)
    if snap.mode == "portfolio":
        portfolio = _lazy("backtester.margin.portfolio", "portfolio mode")
        result: dict[str, object] = portfolio.evaluate_portfolio(snapshot, profile=snap.profile)
        return result
    valued = [_value(p, snap) for p in snap.positions]
    if snap.mode == "isolated":
        return _isolated(snap, valued)
    return _cross(snap, valued)


def _lazy(module: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        short = module.rsplit(".", 1)[-1]
        if short == "options":
            msg = "options need backtester.margin.options"
        else:
            msg = f"{what} needs {module}"
        raise ConfigError(msg) from None


def _pool_of(p: ParsedPosition, snap: ParsedSnapshot) -> str:
    return "USD" if snap.profile.pool == "usd" else p.instrument.settle


def _asset_price(asset: str, snap: ParsedSnapshot, path: str) -> float:
    price = snap.asset_prices.get(asset)
    if price is None:
        msg = f"{path}: no USD price for {asset}; give prices.{asset}.index"
        raise ConfigError(msg)
    return price


def _fx(p: ParsedPosition, snap: ParsedSnapshot) -> float:
    if snap.profile.pool != "usd":
        return 1.0
    settle = p.instrument.settle
    if settle in snap.asset_prices:
        return snap.asset_prices[settle]
    if settle == p.instrument.base:
        return p.index_price   # coin-settled: the contract's own index is the coin's USD price
    return _asset_price(settle, snap, f"positions[{p.index}].instrument.settle")


def _value(p: ParsedPosition, snap: ParsedSnapshot) -> _Valued:
    inst = p.instrument
    fx = _fx(p, snap)
    if inst.is_option:
        if snap.mode == "isolated":
            msg = f"positions[{p.index}].instrument.type: options are margined in cross only"
            raise ConfigError(msg)
        options = _lazy("backtester.margin.options", "options")
        req = options.option_requirement(
            inst, p.qty, mark=p.mark, underlying_price=p.underlying_price, iv=p.iv,
            ts_ms=snap.ts_ms, profile=snap.profile, option_margin=p.option_margin)
        assert p.underlying_price is not None
        return _Valued(pos=p, pool=_pool_of(p, snap), fx=fx,
                       notional=inst.notional(p.qty, p.underlying_price), tier=None,
                       initial_margin=float(req.initial_margin),
                       maintenance_margin=float(req.maintenance_margin),
                       upnl=_option_value(p, snap), leg=None)
    req = position_requirement(inst, p.qty, p.mark, leverage=p.leverage, tiers=p.tiers,
                               margin_rates=p.margin_rates, index_price=p.index_price)
    if req.is_leverage_exceeded:
        # the exchange refuses such a leverage (Binance §2.1 [B3]), as a run's order admission
        # does (leverage_exceeds_bracket): no initial margin below the bracket's is reported
        msg = (f"positions[{p.index}].leverage: {p.leverage:g} exceeds the maximum leverage "
               f"{req.max_leverage:g} of tier {req.tier} for a notional of {req.notional:,.2f} "
               f"on {p.symbol}; use at most {req.max_leverage:g}")
        raise ConfigError(msg)
    # in a USD pool a coin-settled contract converts at its own coin's price, which moves
    # with the mark being solved for
    moves = snap.profile.pool == "usd" and inst.settle == inst.base
    leg = Leg(qty=p.qty, entry_price=p.entry_price, contract_size=inst.cs,
              is_linear=inst.is_linear, tiers=p.tiers if p.margin_rates is None else None,
              mmr=req.mmr, maintenance_amount=0.0, fx=fx, fx_moves=moves)
    return _Valued(pos=p, pool=_pool_of(p, snap), fx=fx, notional=req.notional, tier=req.tier,
                   initial_margin=req.initial_margin, maintenance_margin=req.maintenance_margin,
                   upnl=inst.pnl(p.qty, p.entry_price, p.mark), leg=leg)


def _option_value(p: ParsedPosition, snap: ParsedSnapshot) -> float:
    # an option's premium was paid from (or credited to) the wallet, so the margin balance
    # counts its market value qty x size x mark — except in Bybit's cross margin, whose margin
    # balance is wallet + futures PnL only ([BY3] §5.1: options value enters in PM)
    if snap.profile.name == "bybit":
        return 0.0
    return p.qty * p.instrument.cs * p.mark


def _collateral_pools(snap: ParsedSnapshot, valued: list[_Valued]) -> tuple[dict[str, float],
                                                                             dict[str, float]]:
    """Return (pool → collateral value in pool units, pool → USD per pool unit)."""
    profile = snap.profile
    pools: dict[str, float] = {}
    to_usd: dict[str, float] = {}
    if profile.pool == "usd":
        total = 0.0
        face = _face_value_assets(snap)
        for asset, amount in snap.collateral.items():
            # a debt counts in full (no haircut); so does a coin margining an inverse
            # contract at face value
            haircut = 1.0 if asset in face or amount <= 0 else snap.haircuts.get(asset)
            if haircut is None:
                msg = (f"collateral.{asset}: profile {profile.name} has no collateral ratio for "
                       f"{asset}; give haircuts.{asset}")
                raise ConfigError(msg)
            total += amount * _asset_price(asset, snap, f"collateral.{asset}") * haircut
        pools["USD"] = total
        to_usd["USD"] = 1.0
        return pools, to_usd
    for asset, amount in snap.collateral.items():
        pools[asset] = amount * (snap.haircuts.get(asset, 1.0) if amount > 0 else 1.0)
    for v in valued:
        pools.setdefault(v.pool, 0.0)
    if profile.pool in ("per_coin", "per_currency") and len(pools) > 1:
        names = sorted(pools)
        first = next((v for v in valued if v.pool != names[0]), None)
        where = (f"positions[{first.pos.index}].instrument.settle" if first is not None
                 else f"collateral.{names[1]}")
        msg = (f"{where}: profile {profile.name} values one coin pool per snapshot; this one "
               f"needs {', '.join(names)} — evaluate each currency in its own snapshot")
        raise ConfigError(msg)
    for pool in pools:
        if profile.valuation == "usd":
            to_usd[pool] = _asset_price(pool, snap, f"collateral.{pool}")
        else:
            to_usd[pool] = 1.0
    return pools, to_usd


def _face_value_assets(snap: ParsedSnapshot) -> frozenset[str]:
    # the settle coins of inverse positions, which margin them at face value on profiles with
    # inverse_margin_at_face (Bybit [BY1] §5.3; MarginEngine.face_value_assets in a run)
    if not snap.profile.inverse_margin_at_face:
        return frozenset()
    return frozenset(p.instrument.settle for p in snap.positions
                     if not p.instrument.is_linear and not p.instrument.is_option)


def _moving_collateral(snap: ParsedSnapshot, coin: str) -> float:
    # USD value (with its haircut) of a USD pool's collateral in ``coin``: it moves with a
    # position on that coin when a liquidation or bankruptcy price is solved
    amount = snap.collateral.get(coin)
    if snap.profile.pool != "usd" or not amount or coin not in snap.asset_prices:
        return 0.0
    haircut = 1.0 if coin in _face_value_assets(snap) else snap.haircuts.get(coin, 1.0)
    return amount * snap.asset_prices[coin] * (haircut if amount > 0 else 1.0)


def _status(mm: float, mb: float, call_level: float, has_risk: bool) -> str:
    if has_risk and (mb <= 0.0 or mm >= mb):
        return "liquidate"
    if has_risk and mm / mb >= call_level:
        return "call"
    return "ok"


def _position_out(v: _Valued, lp: float | None, bp: float | None) -> dict[str, object]:
    return {"symbol": v.pos.symbol, "side": v.pos.side, "notional": v.notional, "tier": v.tier,
            "initial_margin": v.initial_margin, "maintenance_margin": v.maintenance_margin,
            "liquidation_price": lp, "bankruptcy_price": bp}


def _valuation_currency(snap: ParsedSnapshot, pools: Mapping[str, float]) -> str:
    if snap.profile.valuation == "usd":
        return "USD"
    return next(iter(pools)) if pools else "USD"


def _cross(snap: ParsedSnapshot, valued: list[_Valued]) -> dict[str, object]:
    profile = snap.profile
    pools, to_usd = _collateral_pools(snap, valued)
    prices: dict[int, tuple[float | None, float | None]] = {}
    totals = {"wallet": 0.0, "upnl": 0.0, "im": 0.0, "mm": 0.0, "liq_cost": 0.0}
    worst_ratio: float | None = 0.0
    status_rank = {"ok": 0, "call": 1, "liquidate": 2}
    status = "ok"
    for pool, wallet in pools.items():
        members = [v for v in valued if v.pool == pool]
        upnl = sum(v.fx * v.upnl for v in members)
        mm = sum(v.fx * v.maintenance_margin for v in members)
        im = sum(v.fx * v.initial_margin for v in members)
        mb = wallet + upnl
        usd = to_usd[pool]
        totals["wallet"] += wallet * usd
        totals["upnl"] += upnl * usd
        totals["im"] += im * usd
        totals["mm"] += mm * usd
        totals["liq_cost"] += usd * sum(
            v.fx * v.notional * float(v.pos.instrument.fee_rate(is_maker=False))
            for v in members)
        # a negative balance in the pool is a liability: at risk even with no position
        owes = any(amount < 0 for asset, amount in snap.collateral.items()
                   if profile.pool == "usd" or asset == pool)
        pool_status = _status(mm, mb, profile.call_level, bool(members) or owes)
        if status_rank[pool_status] > status_rank[status]:
            status = pool_status
        ratio = mm / mb if mb > 0.0 else None
        if worst_ratio is not None:
            worst_ratio = None if ratio is None else max(worst_ratio, ratio)
        for symbol in dict.fromkeys(v.pos.symbol for v in members if v.leg is not None):
            group = [v for v in members if v.pos.symbol == symbol and v.leg is not None]
            legs = [v.leg for v in group if v.leg is not None]
            g_upnl = sum(v.fx * v.upnl for v in group)
            g_mm = sum(v.fx * v.maintenance_margin for v in group)
            inst = group[0].pos.instrument
            mark = group[0].pos.mark
            moving = _moving_collateral(snap, inst.base)
            fee = (float(inst.fee_rate(is_maker=False)) if profile.bankruptcy_includes_close_fee
                   else 0.0)
            bp = bankruptcy_price(legs, balance=mb - g_upnl, mark=mark, moving_balance=moving,
                                  fee_rate=fee)
            if (profile.inverse_cross_formula == "bybit" and len(group) == 1
                    and not inst.is_linear and bp is not None):
                # [BY1] §5.3: maintenance on the entry value plus the fee to close at BP
                v = group[0]
                lp = bybit_inverse_cross_liquidation_price(
                    contracts=abs(v.pos.qty) * inst.cs, entry_price=v.pos.entry_price,
                    balance=(mb - g_upnl) / v.fx, mmr=v.leg.mmr if v.leg else 0.0,
                    taker_rate=float(inst.fee_rate(is_maker=False)), bankruptcy=bp,
                    is_long=v.pos.qty > 0)
            else:
                lp = liquidation_price(legs, mark=mark, balance=mb - g_upnl,
                                       other_maintenance=mm - g_mm, moving_balance=moving)
            for v in group:
                prices[v.pos.index] = (lp, bp)
    mb_total = totals["wallet"] + totals["upnl"]
    out: dict[str, object] = {
        "valuation_currency": _valuation_currency(snap, pools),
        "margin_balance": mb_total,
        "wallet_balance": totals["wallet"],
        "unrealized_pnl": totals["upnl"],
        "initial_margin": totals["im"],
        "maintenance_margin": totals["mm"],
        "margin_ratio": worst_ratio if len(pools) > 1 else (
            totals["mm"] / mb_total if mb_total > 0.0 else None),
        "available": mb_total - totals["im"],
        "status": status,
    }
    if profile.has_exchange_margin_ratio:
        denominator = totals["mm"] + totals["liq_cost"]
        out["exchange_margin_ratio"] = mb_total / denominator if denominator > 0.0 else None
    out["positions"] = [_position_out(v, *prices.get(v.pos.index, (None, None))) for v in valued]
    return out


def _isolated(snap: ParsedSnapshot, valued: list[_Valued]) -> dict[str, object]:
    profile = snap.profile
    pools, to_usd = _collateral_pools(snap, valued)
    free = sum(w * to_usd[p] for p, w in pools.items())
    totals = {"margin": 0.0, "upnl": 0.0, "im": 0.0, "mm": 0.0, "liq_cost": 0.0}
    status_rank = {"ok": 0, "call": 1, "liquidate": 2}
    status = "ok"
    worst_ratio: float | None = 0.0
    worst_exchange: float | None = None
    rows: list[dict[str, object]] = []
    for v in valued:
        p = v.pos
        margin = p.isolated_margin if p.isolated_margin is not None else _entry_margin(p)
        usd = to_usd[v.pool] * v.fx
        totals["margin"] += margin * usd
        totals["upnl"] += v.upnl * usd
        totals["im"] += v.initial_margin * usd
        totals["mm"] += v.maintenance_margin * usd
        taker = float(p.instrument.fee_rate(is_maker=False))
        mb = margin + v.upnl
        pos_status = _status(v.maintenance_margin, mb, profile.call_level, True)
        if status_rank[pos_status] > status_rank[status]:
            status = pos_status
        ratio = v.maintenance_margin / mb if mb > 0.0 else None
        if worst_ratio is not None:
            worst_ratio = None if ratio is None else max(worst_ratio, ratio)
        cost = v.maintenance_margin + v.notional * taker
        exchange_ratio = mb / cost if cost > 0.0 else None
        if exchange_ratio is not None and (worst_exchange is None
                                           or exchange_ratio < worst_exchange):
            worst_exchange = exchange_ratio
        assert v.leg is not None
        lp = isolated_liquidation_price(v.leg, mark=p.mark, margin=margin,
                                        formula=profile.isolated_formula, taker_rate=taker)
        bp = isolated_bankruptcy_price(v.leg, margin=margin)
        rows.append(_position_out(v, lp, bp))
    out: dict[str, object] = {
        "valuation_currency": _valuation_currency(snap, pools),
        "margin_balance": free + totals["margin"] + totals["upnl"],
        "wallet_balance": free + totals["margin"],
        "unrealized_pnl": totals["upnl"],
        "initial_margin": totals["im"],
        "maintenance_margin": totals["mm"],
        "margin_ratio": worst_ratio,
        "available": free,
        "status": status,
    }
    if profile.has_exchange_margin_ratio:
        out["exchange_margin_ratio"] = worst_exchange
    out["positions"] = rows
    return out


def _entry_margin(p: ParsedPosition) -> float:
    """Initial margin at the entry price: the default isolated margin."""
    if p.margin_rates is not None:
        return rated_requirement(p.instrument, p.qty, p.entry_price, rates=p.margin_rates,
                                 index_price=p.entry_price).initial_margin
    return p.instrument.notional(p.qty, p.entry_price) / p.leverage
