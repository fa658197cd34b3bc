"""The account as a margin-calculator snapshot (DESIGN §4 input format)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backtester.timeutil import ms_to_iso

if TYPE_CHECKING:
    from backtester.margin.protocols import FinishedRun

__all__ = ["account_snapshot"]


def account_snapshot(engine: FinishedRun) -> dict[str, Any]:
    """Return the final account of a run in the calculator's JSON input format."""
    acct = engine.account
    feeds = engine.feed.symbols
    prices: dict[str, dict[str, float]] = {}
    positions = []
    for sym, pos in sorted(acct.positions.items()):
        if pos.qty == 0:
            continue
        f = feeds[sym]
        i = max(f.idx, 0)
        inst = pos.instrument
        entry: dict[str, Any] = {
            "symbol": sym, "side": "long" if pos.qty > 0 else "short", "size": abs(pos.qty_f),
            "entry_price": pos.entry_f, "leverage": pos.leverage,
            "isolated_margin": None if pos.isolated_margin is None else float(
                pos.isolated_margin),
            "instrument": {"type": {"perpetual": "swap"}.get(inst.kind.value, inst.kind.value),
                           "linear": inst.is_linear, "contract_size": inst.cs,
                           "settle": inst.settle,
                           "taker": float(inst.fee_rate(is_maker=False)),
                           "maker": float(inst.fee_rate(is_maker=True))}}
        if inst.expiry_ms is not None:
            entry["instrument"]["expiry"] = ms_to_iso(inst.expiry_ms)
        if inst.is_option:
            entry["instrument"]["strike"] = inst.strike
            entry["instrument"]["option_type"] = inst.option_type.value if inst.option_type \
                else None
        tiers = engine.profile.tiers.get(sym)
        rates = engine.profile.rates.get(sym)
        if rates is not None and not inst.is_option:
            # size-dependent rates (Deribit standard margin), as the engine charged them
            entry["instrument"]["margin_rates"] = {"im": [rates.im_base, rates.im_per_coin],
                                                   "mm": [rates.mm_base, rates.mm_per_coin]}
        elif tiers is None and not inst.is_option:
            # no tier table: the engine charged the profile's default maintenance rate
            entry["tiers"] = [{"min_notional": 0.0, "max_notional": 1e18,
                               "mmr": engine.profile.default_mmr, "maintenance_amount": 0.0,
                               "max_leverage": 1000.0}]
        if tiers is not None:
            entry["tiers"] = [{"min_notional": tiers.floors[k],
                               "max_notional": tiers.caps[k] if tiers.caps else (
                                   tiers.floors[k + 1] if k + 1 < len(tiers.floors)
                                   else 1e18), "mmr": tiers.mmr[k],
                               "maintenance_amount": tiers.cum[k],
                               "max_leverage": tiers.max_leverage[k]}
                              for k in range(len(tiers.floors))]
        positions.append(entry)
        prices[sym] = {"mark": f.mc[i], "index": f.ic[i]}
        if inst.is_option:
            # the price the engine's option requirement read (the option's forward for
            # Deribit-style margin, the index for Bybit's)
            prices[sym]["underlying"] = engine.margin.underlying_price(f)
    for asset in acct.balances:
        if not engine.feed.is_stable(asset):
            prices.setdefault(asset, {"index": engine.margin.price_usd(asset)})
    return {"profile": engine.profile.name, "mode": engine.config.margin_mode.value,
            "position_mode": "one-way", "time": ms_to_iso(engine.now_ms),
            "collateral": {a: float(b) for a, b in sorted(acct.balances.items())},
            "collateral_exact": {a: str(b) for a, b in sorted(acct.balances.items())},
            "prices": prices, "positions": positions}
