"""The exchanges' published liquidation-price formulas, verbatim: independent references.

The library finds liquidation and bankruptcy prices as roots of the margin kernel's evaluation
(:func:`backtester.margin.prices.price_root`); these closed forms, copied from the sources in
docs/margin-rules.md, are what tests/unit/margin/test_prices.py checks those roots against.
They are test references only — no run or calculator path uses them.
"""

from __future__ import annotations

__all__ = [
    "binance_coinm_liquidation_price",
    "binance_usdm_liquidation_price",
    "bybit_inverse_cross_liquidation_price",
    "bybit_isolated_liquidation_price",
]


def bybit_inverse_cross_liquidation_price(*, contracts: float, entry_price: float,
                                          balance: float, mmr: float, taker_rate: float,
                                          bankruptcy: float, is_long: bool) -> float | None:
    """Return Bybit's cross liquidation price of an inverse position, [BY1] §5.3, verbatim.

    ``C·(1/EP − 1/LP) = −(B − (C/EP)·MMR − C·taker/BP)`` for a long (mirrored for a short):
    the maintenance margin is the position value at the entry price times MMR plus the fee
    to close at the bankruptcy price. ``contracts`` is the USD face ``C``, ``balance`` the coin
    balance ``B`` backing the position (Balance − OrderMargin).

    >>> bp = 1.00075 * 10_000 / (1.25 + 0.5)
    >>> round(bybit_inverse_cross_liquidation_price(contracts=10_000, entry_price=8_000,
    ...     balance=0.5, mmr=0.005, taker_rate=0.00075, bankruptcy=bp, is_long=True), 2)
    5739.08
    """
    cushion = balance - contracts / entry_price * mmr - contracts * taker_rate / bankruptcy
    inv = 1.0 / entry_price + (cushion if is_long else -cushion) / contracts
    return 1.0 / inv if inv > 0.0 else None


def bybit_isolated_liquidation_price(*, qty: float, entry_price: float, margin: float,
                                     maintenance_at_entry: float, contract_size: float = 1.0,
                                     is_linear: bool = True) -> float | None:
    """Return Bybit's isolated liquidation price, [BY5] §5.2 (linear) and [BY4] §5.3
    (inverse), verbatim: ``LP = EP ∓ (margin − MM)/Q`` linear, ``C / (PV ± (margin − MM))``
    inverse, with the maintenance margin ``MM`` on the position value at entry ``PV``.

    ``qty`` signed contracts; ``margin`` and ``maintenance_at_entry`` in the settle currency.

    >>> bybit_isolated_liquidation_price(qty=1.0, entry_price=20_000.0, margin=400.0,
    ...                                  maintenance_at_entry=100.0)
    19700.0
    """
    q = abs(qty) * contract_size
    if q == 0.0:
        return None
    cushion = margin - maintenance_at_entry
    if is_linear:
        lp = entry_price - cushion / q if qty > 0 else entry_price + cushion / q
        return lp if lp > 0.0 else None
    value = q / entry_price
    denominator = value + cushion if qty > 0 else value - cushion
    return q / denominator if denominator > 0.0 else None


def binance_usdm_liquidation_price(
    *, wallet_balance: float, other_maintenance: float = 0.0, other_upnl: float = 0.0,
    both: tuple[int, float, float, float, float] | None = None,
    long: tuple[float, float, float, float] | None = None,
    short: tuple[float, float, float, float] | None = None,
) -> float | None:
    """Return Binance's published USDⓈ-M liquidation price, margin-rules §2.3 [B1], verbatim.

    ``both = (side, size, entry, mmr, cum)`` (one-way), ``long``/``short = (size, entry, mmr,
    cum)`` (hedge); sizes in base units, absolute. Isolated: ``other_* = 0`` and
    ``wallet_balance`` the isolated wallet. Single-tier: no re-solve when the tier changes
    (the calculator's root re-solves across tiers).

    >>> round(binance_usdm_liquidation_price(wallet_balance=1_000.0,
    ...                                      both=(1, 1.0, 20_000.0, 0.004, 0.0)), 4)
    19076.3052
    """
    sb, pb, eb, mb, cb = both if both is not None else (0, 0.0, 0.0, 0.0, 0.0)
    pl, el, ml, cl = long if long is not None else (0.0, 0.0, 0.0, 0.0)
    ps, es, ms, cs = short if short is not None else (0.0, 0.0, 0.0, 0.0)
    numerator = (wallet_balance - other_maintenance + other_upnl + cb + cl + cs
                 - sb * pb * eb - pl * el + ps * es)
    denominator = pb * mb + pl * ml + ps * ms - sb * pb - pl + ps
    if denominator == 0.0:
        return None
    lp = numerator / denominator
    return lp if lp > 0.0 else None


def binance_coinm_liquidation_price(
    *, wallet_balance: float, contract_size: float, other_maintenance: float = 0.0,
    other_upnl: float = 0.0,
    both: tuple[int, float, float, float, float] | None = None,
    long: tuple[float, float, float, float] | None = None,
    short: tuple[float, float, float, float] | None = None,
) -> float | None:
    """Return Binance's COIN-M liquidation price, margin-rules §3 [B2][B13], verbatim.

    Sizes in contracts; amounts in coin; tuples as in :func:`binance_usdm_liquidation_price`.

    >>> round(binance_coinm_liquidation_price(wallet_balance=101.0, contract_size=100,
    ...       both=(1, 100_000, 45_000.0, 0.125, 11.605)), 2)
    33599.42
    """
    sb, pb, eb, mb, cb = both if both is not None else (0, 0.0, 1.0, 0.0, 0.0)
    pl, el, ml, cl = long if long is not None else (0.0, 1.0, 0.0, 0.0)
    ps, es, ms, cs = short if short is not None else (0.0, 1.0, 0.0, 0.0)
    numerator = (pb * mb + pl * ml + ps * ms + sb * pb + pl - ps) * contract_size
    denominator = ((wallet_balance - other_maintenance + other_upnl + cb + cl + cs)
                   + (sb * pb / eb + pl / el - ps / es) * contract_size)
    if denominator == 0.0:
        return None
    lp = numerator / denominator
    return lp if lp > 0.0 else None
