"""Liquidation and bankruptcy prices.

Definitions (margin-rules §0): the liquidation price ``LP`` is the mark at which margin balance
equals maintenance margin, ``MB(P) = MM(P)``; the bankruptcy price ``BP`` is the mark at which
the margin balance is zero. Both are None where no positive price exists (e.g. a long that
cannot lose its margin, or a fully hedged pair).

Conventions: a :class:`Leg` holds a signed ``qty`` in contracts (long > 0); ``balance`` is the
margin balance of everything that does NOT move with the leg's mark (wallet balance plus the
unrealized PnL of other positions, at their current marks, margin-rules §1.6) in the pool's
valuation currency; each leg converts its settle-currency amounts with ``fx`` (valuation units
per settle unit, held at the current index). Collateral is held at its current value.

Cross (general solver): for legs on one mark P (one-way position, or the long and short of a
hedge-mode symbol, which share one LP [B1]) solve
``balance + Σ fx·UPnL_i(P) = other_maintenance + Σ fx·(notional_i(P)·MMR_i − cum_i)``:
linear legs are linear in ``P`` (closed form, the Binance USDⓈ-M formula §2.3 [B1]), inverse
legs are linear in ``1/P`` (the COIN-M formula §3 [B2]). When the notional at the solution lies
in another tier than assumed the solve is redone with that tier, as Binance says [B1]; if that
does not settle, a bisection on the (continuous, thanks to ``cum``) margin surplus finishes it.

Isolated: ``binance`` — the same solver with ``balance`` = isolated margin [B1]; ``okx`` — the
same with the taker rate added to MMR (closing cost; freqtrade's OKX formula [F1], §6); ``bybit``
— ``LP = EP ∓ (margin − MM_entry)/Q`` linear [BY5] §5.2, ``C / (PV ± (margin − MM_entry))``
inverse [BY4] §5.3, with the maintenance margin taken at the entry value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backtester.errors import ConfigError
from backtester.margin.tiers import TierTable

__all__ = [
    "Leg",
    "bankruptcy_price",
    "binance_coinm_liquidation_price",
    "binance_usdm_liquidation_price",
    "bybit_inverse_cross_liquidation_price",
    "isolated_bankruptcy_price",
    "isolated_liquidation_price",
    "liquidation_price",
    "margin_surplus",
    "secant_root",
]

_MAX_ITER = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Leg:
    """A position that moves with the mark being solved for.

    Parameters
    ----------
    qty
        Signed contracts (long > 0).
    entry_price
        Average entry price.
    contract_size
        Linear: base units per contract; inverse: USD face per contract.
    is_linear
        False for inverse (coin-settled) contracts.
    tiers
        Tier table; when None, ``mmr``/``maintenance_amount`` are fixed (size-dependent rates).
    mmr, maintenance_amount
        Fixed rate and deduction used when ``tiers`` is None.
    fx
        Valuation-currency units per settle-currency unit (1 when they are the same).
    fx_moves
        True when the settle currency is the coin whose price is solved for (an inverse
        contract in a USD pool): ``fx`` then moves in proportion to the price.
    """

    qty: float
    entry_price: float
    contract_size: float = 1.0
    is_linear: bool = True
    tiers: TierTable | None = None
    mmr: float = 0.0
    maintenance_amount: float = 0.0
    fx: float = 1.0
    fx_moves: bool = False

    def notional(self, price: float) -> float:
        """Absolute value at ``price`` in the settle currency (inverse: coin)."""
        q = abs(self.qty) * self.contract_size
        return q * price if self.is_linear else q / price

    def upnl(self, price: float) -> float:
        """Unrealized PnL at ``price`` in the settle currency."""
        q = self.qty * self.contract_size
        if self.is_linear:
            return q * (price - self.entry_price)
        return q * (1.0 / self.entry_price - 1.0 / price)

    def rate_and_amount(self, price: float) -> tuple[float, float]:
        """``(MMR, cum)`` at ``price``."""
        if self.tiers is None:
            return self.mmr, self.maintenance_amount
        return self.tiers.rate_and_amount(self.notional(price))

    def maintenance_margin(self, price: float) -> float:
        """``notional × MMR − cum`` at ``price`` (settle currency)."""
        m, c = self.rate_and_amount(price)
        return self.notional(price) * m - c


def margin_surplus(legs: Sequence[Leg], price: float, *, balance: float,
                   other_maintenance: float = 0.0, extra_rate: float = 0.0,
                   mark: float | None = None, moving_balance: float = 0.0,
                   fixed_rate: float | None = None) -> float:
    """Return ``MB(P) − MM(P)`` in the valuation currency with all legs at ``price``.

    ``extra_rate`` is added to every leg's MMR (OKX closing cost). ``moving_balance`` is the
    part of ``balance`` (valued at ``mark``) that moves in proportion to the price — collateral
    in the coin solved for — and legs with ``fx_moves`` convert at a price that moves the same
    way. ``fixed_rate`` replaces every leg's (MMR, cum) by (rate, 0) (the bankruptcy price with
    a closing fee). Positive = healthy.
    """
    scale = price / mark if mark else 1.0
    total = balance + moving_balance * (scale - 1.0) - other_maintenance
    for leg in legs:
        m, c = leg.rate_and_amount(price) if fixed_rate is None else (fixed_rate, 0.0)
        fx = leg.fx * scale if leg.fx_moves else leg.fx
        total += fx * (leg.upnl(price) - (leg.notional(price) * (m + extra_rate) - c))
    return total


def secant_root(f: Callable[[float], float], x0: float, x1: float, *,
                iterations: int = 60) -> float | None:
    """Return a root of ``f`` near ``x0`` by secant steps from ``x0`` and ``x1`` (exact in one
    step where ``f`` is affine), or None when the steps leave the positive numbers or stall.

    >>> round(secant_root(lambda x: 3.0 * x - 1.5, 1.0, 0.9), 12)
    0.5
    """
    f0 = f(x0)
    if f0 == 0.0:
        return x0
    f1 = f(x1)
    for _ in range(iterations):
        if f1 == f0:
            return None
        x2 = x1 - f1 * (x1 - x0) / (f1 - f0)
        if not x2 > 0.0:
            return None
        f2 = f(x2)
        if abs(f2) <= 1e-12 * (abs(f0) + abs(f1) + 1.0) or x2 == x1:
            return x2
        x0, f0, x1, f1 = x1, f1, x2, f2
    return x1


def _solve(legs: Sequence[Leg], rates: Sequence[tuple[float, float]], balance: float,
           other_maintenance: float, extra_rate: float) -> float | None:
    # Closed form for fixed (MMR, cum) per leg; returns the price, None when f has no root.
    k0 = balance - other_maintenance
    k1 = 0.0
    is_linear = legs[0].is_linear
    for leg, (m, c) in zip(legs, rates):
        cs = leg.contract_size
        q_abs = abs(leg.qty) * cs
        sq = leg.qty * cs
        k0 += leg.fx * c
        if is_linear:
            k0 -= leg.fx * sq * leg.entry_price
            k1 += leg.fx * (sq - q_abs * (m + extra_rate))
        else:
            k0 += leg.fx * sq / leg.entry_price
            k1 += leg.fx * (sq + q_abs * (m + extra_rate))
    if k1 == 0.0:
        return None
    if is_linear:
        p = -k0 / k1
        return p if p > 0.0 else None
    x = k0 / k1
    return 1.0 / x if x > 0.0 else None


def liquidation_price(legs: Sequence[Leg], *, mark: float, balance: float,
                      other_maintenance: float = 0.0, extra_rate: float = 0.0,
                      moving_balance: float = 0.0) -> float | None:
    """Return the mark at which ``MB = MM`` for legs moving together, others held fixed.

    Parameters
    ----------
    legs
        Positions on the same mark (all linear or all inverse).
    mark
        Current mark; its tiers are the first guess.
    balance
        Wallet balance + unrealized PnL of all other positions at their current marks
        (valuation currency). Isolated: the isolated margin.
    other_maintenance
        Sum of the other positions' maintenance margins (0 when isolated).
    extra_rate
        Added to each leg's MMR (OKX taker closing cost).
    moving_balance
        The part of ``balance`` that moves with the price (collateral in the coin solved for,
        valued at ``mark``); with it, or with a leg whose ``fx_moves``, the price is solved
        numerically on :func:`margin_surplus`.

    Returns
    -------
    float or None
        The liquidation price, or None when there is none (LP <= 0, or the legs cannot be
        liquidated by this mark).

    Examples
    --------
    Binance COIN-M, margin-rules §3 [B13]: WB 101 BTC, long 100,000 contracts × 100 USD @ 45,000,
    MMR 12.5 %, cum 11.605 BTC:

    >>> leg = Leg(qty=100_000, entry_price=45_000.0, contract_size=100, is_linear=False,
    ...           mmr=0.125, maintenance_amount=11.605)
    >>> round(liquidation_price([leg], mark=45_000.0, balance=101.0), 2)
    33599.42
    """
    if not legs:
        return None
    if any(leg.is_linear != legs[0].is_linear for leg in legs):
        msg = "liquidation_price: legs on one mark must be all linear or all inverse"
        raise ConfigError(msg)
    if moving_balance or any(leg.fx_moves for leg in legs):
        return _moving_root(legs, mark, balance=balance, other_maintenance=other_maintenance,
                            extra_rate=extra_rate, moving_balance=moving_balance)
    rates = [leg.rate_and_amount(mark) for leg in legs]
    price: float | None = None
    for _ in range(_MAX_ITER):
        price = _solve(legs, rates, balance, other_maintenance, extra_rate)
        if price is None:
            return None
        new_rates = [leg.rate_and_amount(price) for leg in legs]
        if new_rates == rates:
            return price
        rates = new_rates
    return _bisect(legs, mark, price, balance, other_maintenance, extra_rate)


def _bisect(legs: Sequence[Leg], mark: float, guess: float | None, balance: float,
            other_maintenance: float, extra_rate: float) -> float | None:
    def f(p: float) -> float:
        return margin_surplus(legs, p, balance=balance, other_maintenance=other_maintenance,
                              extra_rate=extra_rate)

    return _bisect_between(f, mark, guess)


def _bisect_between(f: Callable[[float], float], mark: float,
                    guess: float | None) -> float | None:
    # the root of f between the mark and a guess, by bisection (f is continuous across tiers
    # thanks to cum); the guess itself when the two ends do not bracket a root
    if guess is None:
        return None
    lo, hi = (guess, mark) if guess < mark else (mark, guess)
    flo, fhi = f(lo), f(hi)
    if flo * fhi > 0.0:
        return guess
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if (fm > 0.0) == (flo > 0.0):
            lo, flo = mid, fm
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def bankruptcy_price(legs: Sequence[Leg], *, balance: float, mark: float | None = None,
                     moving_balance: float = 0.0, fee_rate: float = 0.0) -> float | None:
    """Return the mark at which the margin balance is zero (others held fixed), or None.

    ``balance``, ``mark`` and ``moving_balance`` as in :func:`liquidation_price` (isolated:
    the isolated margin); ``fee_rate``: the margin balance must also pay a taker fee of that
    rate on the notional to close at the price (Bybit [BY1] §5.3).

    >>> round(bankruptcy_price([Leg(qty=1.0, entry_price=20_000.0)], balance=400.0), 6)
    19600.0
    """
    if not legs:
        return None
    if moving_balance or any(leg.fx_moves for leg in legs):
        if mark is None:
            msg = "bankruptcy_price: a moving balance needs the current mark"
            raise ConfigError(msg)
        return _moving_root(legs, mark, balance=balance, other_maintenance=0.0,
                            extra_rate=0.0, moving_balance=moving_balance, fixed_rate=fee_rate)
    return _solve(legs, [(fee_rate, 0.0)] * len(legs), balance, 0.0, 0.0)


def _moving_root(legs: Sequence[Leg], mark: float, *, balance: float,
                 other_maintenance: float, extra_rate: float, moving_balance: float,
                 fixed_rate: float | None = None) -> float | None:
    # the price where margin_surplus is zero with moving parts, by secant steps from the mark
    # (exact in one step where the surplus is affine in the price: linear legs, moving
    # collateral, inverse legs converted at a moving price), then tier-aware bisection between
    # the mark and that guess
    def f(p: float) -> float:
        return margin_surplus(legs, p, balance=balance, other_maintenance=other_maintenance,
                              extra_rate=extra_rate, mark=mark, moving_balance=moving_balance,
                              fixed_rate=fixed_rate)

    net = sum(leg.qty for leg in legs)
    guess = secant_root(f, mark, mark * (0.9 if net > 0 else 1.1))
    if guess is None or abs(f(guess)) <= 1e-12 * (abs(balance) + 1.0):
        return guess
    return _bisect_between(f, mark, guess)


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


def isolated_liquidation_price(leg: Leg, *, mark: float, margin: float,
                               formula: str = "binance",
                               taker_rate: float = 0.0) -> float | None:
    """Return an isolated position's liquidation price by the profile's formula.

    Parameters
    ----------
    leg
        The position.
    mark
        Current mark (first tier guess).
    margin
        The position's isolated margin (settle currency; for Bybit IM + extra margin).
    formula
        ``binance`` (§2.3/§3 with WB = isolated margin), ``okx`` (§6, MMR + taker),
        ``bybit`` (§5.2 linear / §5.3 inverse, MM at entry value).
    taker_rate
        Taker fee rate (``okx`` only).

    Examples
    --------
    Bybit §5.2 [BY5]: 1 BTC @ 20,000, 50x, MMR 0.5 % → IM 400, MM 100, LP 19,700:

    >>> leg = Leg(qty=1.0, entry_price=20_000.0, mmr=0.005)
    >>> isolated_liquidation_price(leg, mark=20_000.0, margin=400.0, formula="bybit")
    19700.0
    """
    if formula == "binance":
        return liquidation_price([leg], mark=mark, balance=margin)
    if formula == "okx":
        return liquidation_price([leg], mark=mark, balance=margin, extra_rate=taker_rate)
    if formula == "bybit":
        return _bybit_isolated(leg, margin)
    msg = f"isolated formula {formula!r}: expected 'binance', 'bybit' or 'okx'"
    raise ConfigError(msg)


def _bybit_isolated(leg: Leg, margin: float) -> float | None:
    q = abs(leg.qty) * leg.contract_size
    if q == 0.0:
        return None
    ep = leg.entry_price
    is_long = leg.qty > 0
    value = leg.notional(ep)                       # position value at entry
    m, c = leg.rate_and_amount(ep)
    cushion = margin - (value * m - c)             # IM + extra − MM
    if leg.is_linear:
        lp = ep - cushion / q if is_long else ep + cushion / q
        return lp if lp > 0.0 else None
    denominator = value + cushion if is_long else value - cushion
    return q / denominator if denominator > 0.0 else None


def isolated_bankruptcy_price(leg: Leg, *, margin: float) -> float | None:
    """Return the mark at which ``margin + UPnL = 0`` (settle currency), or None."""
    return bankruptcy_price([leg], balance=margin)


def binance_usdm_liquidation_price(
    *, wallet_balance: float, other_maintenance: float = 0.0, other_upnl: float = 0.0,
    both: tuple[int, float, float, float, float] | None = None,
    long: tuple[float, float, float, float] | None = None,
    short: tuple[float, float, float, float] | None = None,
) -> float | None:
    """Return Binance's published USDⓈ-M liquidation price, margin-rules §2.3 [B1], verbatim.

    ``both = (side, size, entry, mmr, cum)`` (one-way), ``long``/``short = (size, entry, mmr,
    cum)`` (hedge); sizes in base units, absolute. Isolated: ``other_* = 0`` and
    ``wallet_balance`` the isolated wallet. Single-tier: no re-solve when the tier changes (use
    :func:`liquidation_price` for that).

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
