"""The margin kernel: the one implementation of the margin arithmetic (DESIGN §4 "One kernel").

A fixed **book** — legs with their contract math, tiers, rates, leverage and isolated
allocations; collateral balances with haircuts; unsettled session amounts; working orders;
collateral pools — is evaluated over arrays of **scenarios**: a block of bars with each
underlying at its mark low, high and close (the per-bar check), one set of prices (the
calculator, a liquidation's triggering prices, a bankruptcy-price solve) or a grid of moves.
Every caller — the bar loop's margin monitor, order admission, liquidation, the calculator, the
distance to liquidation, stress and portfolio margin — evaluates through these functions; the
PnL, notional, tiered and size-dependent margin, short-option margin and haircut arithmetic is
written here once.

The functions are compiled with numba (``cache=True``; never ``fastmath``), so that evaluating a
block of bars costs one call. Arrays, not objects, cross the boundary: :mod:`backtester.margin.
book` builds them from a narrow view of the account.

Units and signs
---------------
* ``qty`` signed contracts (long > 0); ``cs`` contract size (linear and options: coin per
  contract; inverse: USD face per contract).
* Leg amounts (value, notional, initial and maintenance margin) are in the leg's **settle
  currency**; account amounts are USD, each settle currency converted at its USD price.
* ``value``: a future's unrealized PnL (linear ``q·cs·(mark − entry)``, inverse
  ``q·cs·(1/entry − 1/mark)`` in coin); an option's market value ``q·cs·mark`` (its premium was
  booked as cash).
* Scenario index ``w``: 0 the bar's low, 1 its high, 2 its close.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from backtester.instruments.math import notional, pnl

__all__ = [
    "AF_BAL",
    "AF_HAIRCUT",
    "AF_PRE",
    "AF_SESSION",
    "AI_GROUP",
    "AI_POOL",
    "AI_ROW",
    "AI_SC",
    "AI_SH",
    "AI_SL",
    "AI_STABLE",
    "DIST_DOWN",
    "DIST_GRID",
    "DIST_UP",
    "FORCED",
    "INTRABAR",
    "ISOLATED",
    "LF_CS",
    "LF_DMMR",
    "LF_ENTRY",
    "LF_EXPIRY",
    "LF_IMB",
    "LF_IMP",
    "LF_ISO",
    "LF_LEV",
    "LF_MMB",
    "LF_MMP",
    "LF_OLIQ",
    "LF_OMM",
    "LF_QTY",
    "LF_STRIKE",
    "LI_CALL",
    "LI_GROUP",
    "LI_LIN",
    "LI_MMK",
    "LI_OPT",
    "LI_OSTYLE",
    "LI_POOL",
    "LI_ROW",
    "LI_SETTLE",
    "LI_SMC",
    "LI_SMH",
    "LI_SML",
    "LI_SUC",
    "LI_SUH",
    "LI_SUL",
    "LI_SYM",
    "LI_TN",
    "LI_TOFF",
    "MMK_DEFAULT",
    "MMK_RATES",
    "MMK_TIERS",
    "MULTI",
    "NAF",
    "NAI",
    "NLF",
    "NLI",
    "NOF",
    "NOI",
    "NPOOL",
    "NREC",
    "OF_CS",
    "OF_IMB",
    "OF_IMP",
    "OF_LEV",
    "OF_PRICE",
    "OF_QTY",
    "OI_BUY",
    "OI_LIN",
    "OI_MMK",
    "OI_OPT",
    "OI_POOL",
    "OI_ROW",
    "OI_SC",
    "OI_SETTLE",
    "OPTIONS_OFF_MB",
    "OSTYLE_BYBIT",
    "OSTYLE_DERIBIT",
    "OSTYLE_LINEAR",
    "POOL_AVAILABLE",
    "POOL_COLLATERAL",
    "POOL_IM",
    "POOL_MB",
    "POOL_MM",
    "POOL_RATIO",
    "POOL_STATUS",
    "PORTFOLIO",
    "REC_AVAILABLE",
    "REC_COLL_FIXED",
    "REC_COLL_MOVING",
    "REC_EQUITY",
    "REC_GROSS",
    "REC_IM",
    "REC_MB",
    "REC_MB_CLOSE",
    "REC_MM",
    "REC_NET",
    "REC_RATIO",
    "REC_SESSION_FIXED",
    "REC_SESSION_MOVING",
    "REC_STATUS",
    "REC_UPNL",
    "REC_WALLET",
    "STATUS_CALL",
    "STATUS_LIQUIDATE",
    "STATUS_OK",
    "evaluate",
    "leg_margin",
    "leg_requirement",
    "order_margin",
    "rated_margin",
    "rated_rate",
    "ratio_of",
    "short_option_margin",
    "status_of",
    "tiered_maintenance",
]

# -- leg columns (float) ----------------------------------------------------------------------
# (the columns a book's values change first and adjacent: ``book.build_book`` writes them in
# one assignment per array)
LF_QTY, LF_ENTRY, LF_LEV, LF_ISO, LF_CS, LF_STRIKE = 0, 1, 2, 3, 4, 5
LF_IMB, LF_IMP, LF_MMB, LF_MMP, LF_DMMR, LF_OMM, LF_OLIQ, LF_EXPIRY = 6, 7, 8, 9, 10, 11, 12, 13
NLF = 14
# -- leg columns (int) --------------------------------------------------------------------------
LI_LIN, LI_OPT, LI_CALL, LI_MMK, LI_TOFF, LI_TN, LI_GROUP, LI_SETTLE, LI_POOL = range(9)
LI_OSTYLE, LI_ROW, LI_SML, LI_SMH, LI_SMC, LI_SUL, LI_SUH, LI_SUC, LI_SYM = range(9, 18)
NLI = 18
#: maintenance model of a leg (``LI_MMK``): a flat default rate, a tier table, size-dependent
#: rates (Deribit standard margin)
MMK_DEFAULT, MMK_TIERS, MMK_RATES = 0, 1, 2
#: short-option formula of a leg (``LI_OSTYLE``)
OSTYLE_DERIBIT, OSTYLE_LINEAR, OSTYLE_BYBIT = 0, 1, 2
# -- asset columns ----------------------------------------------------------------------------
AF_BAL, AF_SESSION, AF_HAIRCUT, AF_PRE = 0, 1, 2, 3
NAF = 4
AI_STABLE, AI_GROUP, AI_POOL, AI_ROW, AI_SL, AI_SH, AI_SC = range(7)
NAI = 7
# -- working-order columns --------------------------------------------------------------------
OF_QTY, OF_PRICE, OF_LEV, OF_CS, OF_IMB, OF_IMP = range(6)
NOF = 6
OI_LIN, OI_OPT, OI_BUY, OI_MMK, OI_SETTLE, OI_POOL, OI_ROW, OI_SC = range(8)
NOI = 8
# -- per-bar record columns (the engine's equity series) ----------------------------------------
#: (``REC_MB`` and the requirement, ratio and status are the margin check's: at the intrabar
#: worst scenario when the check is intrabar; ``REC_MB_CLOSE`` the margin balance at the close)
(REC_EQUITY, REC_WALLET, REC_UPNL, REC_MB, REC_IM, REC_MM, REC_RATIO, REC_AVAILABLE, REC_GROSS,
 REC_NET, REC_COLL_FIXED, REC_COLL_MOVING, REC_SESSION_FIXED, REC_SESSION_MOVING,
 REC_STATUS, REC_MB_CLOSE) = range(16)
NREC = 16
# -- per-pool columns -------------------------------------------------------------------------
POOL_COLLATERAL, POOL_MB, POOL_IM, POOL_MM, POOL_RATIO, POOL_AVAILABLE, POOL_STATUS = range(7)
NPOOL = 7
STATUS_OK, STATUS_CALL, STATUS_LIQUIDATE = 0, 1, 2

_INF = math.inf
# the base initial rate of a short option and its floor, fractions of the underlying
# (Deribit / Bit.com / Bybit IM form, margin-rules §5.4 §7.3)
_OPT_IM_BASE = 0.15
_OPT_IM_MIN = 0.10


# == scalar contract and margin arithmetic ======================================================
@njit(cache=True, inline="always")
def tiered_maintenance(value: float, floors: np.ndarray, mmr: np.ndarray, cum: np.ndarray,
                       off: int, n: int) -> float:
    """Tiered maintenance margin ``notional × MMR − maintenance amount`` of the tier whose floor
    is the highest at or below the notional (margin-rules §2.1 [B1]); never negative."""
    k = 0
    while k + 1 < n and floors[off + k + 1] <= value:
        k += 1
    mm = value * mmr[off + k] - cum[off + k]
    return mm if mm > 0.0 else 0.0


@njit(cache=True)
def rated_rate(qty: float, cs: float, index: float, linear: bool, base: float,
               per_coin: float) -> float:
    """Size-dependent margin rate (Deribit standard, margin-rules §7.2): ``base + per_coin ×
    size_coin``, ``size_coin`` = ``|qty|·cs`` (linear) or ``|qty|·cs / index`` (inverse)."""
    q = abs(qty) * cs
    return base + per_coin * (q if linear else q / index)


@njit(cache=True)
def rated_margin(qty: float, cs: float, index: float, linear: bool, base: float,
                 per_coin: float) -> float:
    """Size-dependent margin (Deribit standard, margin-rules §7.2): ``size_coin × rate`` in
    coin, times the index for linear contracts (settle currency); see :func:`rated_rate`."""
    q = abs(qty) * cs
    rate = rated_rate(qty, cs, index, linear, base, per_coin)
    if linear:
        return q * rate * index
    return q / index * rate


@njit(cache=True)
def short_option_margin(style: int, is_call: bool, strike: float, und: float, mark: float,
                        units: float, mm_rate: float, liq_rate: float) -> tuple[float, float]:
    """(initial, maintenance) margin of ``units`` short options, settle currency.

    ``deribit`` (coin per 1-coin option, §7.3): call IM ``max(0.15 − OTM/U, 0.10) + mark``, MM
    ``rate + mark``; put MM ``max(rate, rate·mark) + mark``, IM ``max(max(0.15 − OTM/U, 0.10) +
    mark, MM)``. ``linear`` (Bit.com form, ×U). ``bybit`` (§5.4): MM ``max(f·U, f·mark) + mark +
    liq·U``, IM ``max(max(0.15U − OTM, 0.10U) + mark, MM)``. ``OTM_call = max(0, K − U)``,
    ``OTM_put = max(0, U − K)``.
    """
    m = mark if mark > 0.0 else 0.0
    if is_call:
        otm = strike - und if strike > und else 0.0
    else:
        otm = und - strike if und > strike else 0.0
    scale = 1.0 / und if style == OSTYLE_DERIBIT else 1.0
    base = max(_OPT_IM_BASE * und - otm, _OPT_IM_MIN * und) * scale + m
    if style == OSTYLE_BYBIT:
        mm = max(mm_rate * und, mm_rate * m) + m + liq_rate * und
        im = max(base, mm)
    elif is_call:
        mm = mm_rate * und * scale + m + liq_rate * und * scale
        im = base
    else:
        mm = max(mm_rate * und * scale, mm_rate * m) + m + liq_rate * und * scale
        im = max(base, mm)
    return im * units, mm * units


@njit(cache=True, inline="always")
def leg_requirement(q: float, cs: float, lev: float, lin: bool, opt: bool, is_call: bool,
                    mmk: int, style: int, strike: float, omm: float, oliq: float, imb: float,
                    imp: float, mmb: float, mmp: float, dmmr: float, toff: int, tn: int,
                    floors: np.ndarray, mmr: np.ndarray, cum: np.ndarray, mark: float,
                    und: float) -> tuple[float, float, float]:
    """(notional, initial margin, maintenance margin) of ``q`` contracts at ``mark`` with the
    underlying at ``und``, settle currency: options long nothing, short the profile's formula
    (notional: of the underlying); futures size-dependent rates (``mmk`` rates), or
    ``notional / leverage`` and the tier table or a flat default rate."""
    if opt:
        n = abs(q) * cs * und
        if q >= 0.0:
            return n, 0.0, 0.0
        im, mm = short_option_margin(style, is_call, strike, und, mark, abs(q) * cs, omm, oliq)
        return n, im, mm
    n = notional(q, cs, mark, lin)
    if mmk == MMK_RATES:
        # size-dependent rates: leverage plays no part
        return (n, rated_margin(q, cs, und, lin, imb, imp),
                rated_margin(q, cs, und, lin, mmb, mmp))
    if mmk == MMK_TIERS:
        return n, n / lev, tiered_maintenance(n, floors, mmr, cum, toff, tn)
    return n, n / lev, n * dmmr


@njit(cache=True)
def leg_margin(lf: np.ndarray, li: np.ndarray, leg: int, mark: float, und: float,
               floors: np.ndarray, mmr: np.ndarray, cum: np.ndarray
               ) -> tuple[float, float, float]:
    """(notional, initial margin, maintenance margin) of a book's leg at ``mark`` with its
    underlying at ``und``, settle currency (see :func:`leg_requirement`)."""
    return leg_requirement(
        lf[leg, LF_QTY], lf[leg, LF_CS], lf[leg, LF_LEV], li[leg, LI_LIN] != 0,
        li[leg, LI_OPT] != 0, li[leg, LI_CALL] != 0, li[leg, LI_MMK], li[leg, LI_OSTYLE],
        lf[leg, LF_STRIKE], lf[leg, LF_OMM], lf[leg, LF_OLIQ], lf[leg, LF_IMB], lf[leg, LF_IMP],
        lf[leg, LF_MMB], lf[leg, LF_MMP], lf[leg, LF_DMMR], li[leg, LI_TOFF], li[leg, LI_TN],
        floors, mmr, cum, mark, und)


@njit(cache=True)
def order_margin(qty: float, cs: float, price: float, lev: float, lin: bool, opt: bool,
                 buy: bool, rated: bool, imb: float, imp: float) -> float:
    """Initial margin (settle currency) a working order of ``qty`` contracts reserves at
    ``price``: a bought option's premium (sold options: none), size-dependent IM of the order's
    own size, else ``notional / leverage``."""
    if opt:
        return qty * cs * price if buy else 0.0
    if rated:
        return rated_margin(qty, cs, price, lin, imb, imp)
    return notional(qty, cs, price, lin) / lev


@njit(cache=True)
def status_of(mb: float, mm: float, ratio: float, call_level: float, has_liability: bool) -> int:
    """``liquidate`` when the margin balance does not exceed maintenance and the pool carries
    risk (maintenance > 0, or a negative balance); ``call`` at the call level; else ``ok``."""
    if mb <= mm and (mm > 0.0 or has_liability):
        return STATUS_LIQUIDATE
    if ratio >= call_level:
        return STATUS_CALL
    return STATUS_OK


@njit(cache=True)
def ratio_of(mb: float, mm: float) -> float:
    """Maintenance / margin balance (inf when the margin balance is not positive and
    maintenance is, 0 when both are 0)."""
    if mb > 0.0:
        return mm / mb
    return _INF if mm > 0.0 else 0.0


@njit(cache=True, _nrt=False)  # type: ignore[call-overload]
def _at(store: np.ndarray, bars: np.ndarray, row: int, off: int, step: int, pre: float) -> float:
    # the value of a series (offset ``off`` into the flat store) at the bar its feed has at
    # clock ``step`` (row -1: the feed advances at every step); ``pre`` before the first bar.
    # Not inlined at numba's IR level but compiled without reference counting (left to LLVM
    # to inline): inlined into ``evaluate``, each of its up to 9 reads per leg and step
    # counted references on ``store`` and ``bars`` — a quarter of the block pass in W1
    if step < 0:
        return pre
    b = step if row < 0 else bars[row, step]
    if b < 0:
        return pre
    return store[off + b]


#: bits of ``evaluate``'s ``flags``: the intrabar check, isolated margin, several pools, a
#: forced scenario, portfolio margin (a group's excess leaves the legs' requirements out: the
#: scenario grid's comes off instead), options' value kept out of the margin balance
#: (Bybit's cross margin balance is wallet + futures PnL [BY3]; equity still counts it), and
#: the distance to liquidation searched on a grid (a book whose margin surplus need not be
#: concave in the move, see :func:`_distance`)
INTRABAR, ISOLATED, MULTI, FORCED, PORTFOLIO, OPTIONS_OFF_MB, DIST_GRID = 1, 2, 4, 8, 16, 32, 64
#: the moves the distance to liquidation searches: down to -99 %, up to +1000 %
DIST_DOWN, DIST_UP = 0.01, 11.0
_DIST_GRID_POINTS = 64

# _moved_surplus and _distance are left to LLVM to inline, not numba (``inline="always"``
# inlines at numba's IR level): IR inlining of these two large functions into ``evaluate`` more
# than tripled the first compile (a fresh install's first demo: 36 s CPU with it, 20.5 s
# without) for about 5 % of W1's step; the arithmetic and its order are the same either way.
# They are compiled without numba's reference counting (``_nrt=False``): they only read and
# write arrays their caller owns (no array is created, sliced or kept), so the counts' atomic
# increments and decrements on each of their array arguments at every call — 3 calls and
# ~28 atomic pairs per step in W1, half the distance pass's time — have nothing to protect
# (``_nrt`` is a numba target option its type stubs leave out: hence the ``type: ignore``)
@njit(cache=True, _nrt=False)  # type: ignore[call-overload]
def _moved_surplus(f: float, target: int, isolated: bool, multi: bool, opt_off_mb: bool,
                   no_mm: bool, pm_mm: float, lf: np.ndarray, li: np.ndarray, af: np.ndarray,
                   ai: np.ndarray, px: np.ndarray, mk: np.ndarray, ud: np.ndarray,
                   val: np.ndarray, mmv: np.ndarray, floors: np.ndarray, mmr: np.ndarray,
                   cum: np.ndarray, risk: np.ndarray, acc: np.ndarray) -> float:
    # the least margin surplus (margin balance - maintenance margin) of the pools at risk at
    # the close with underlying group ``target`` (every group: -1) moved by the factor ``f``:
    # its legs' marks and underlyings and its coin's price; options held at their value and
    # requirement (settle currency). Isolated: the least allocation + value - maintenance of
    # a position.
    for p in range(acc.shape[0]):  # (no slice: a view is an array created)
        acc[p, 0] = 0.0
        acc[p, 1] = 0.0
    for a in range(af.shape[0]):
        bal = af[a, AF_BAL]
        ses = af[a, AF_SESSION]
        if bal == 0.0 and ses == 0.0:
            continue
        g = ai[a, AI_GROUP]
        x = px[a, 2] * (f if g >= 0 and (target < 0 or g == target) else 1.0)
        p = ai[a, AI_POOL] if multi else 0
        if bal != 0.0:
            acc[p, 0] += bal * x * (af[a, AF_HAIRCUT] if bal > 0.0 else 1.0)
        acc[p, 0] += ses * x
    least = _INF
    for j in range(lf.shape[0]):
        g = li[j, LI_GROUP]
        opt = li[j, LI_OPT] != 0
        if isolated and opt:
            continue  # options are not isolated
        sa = li[j, LI_SETTLE]
        sg = ai[sa, AI_GROUP]
        pxs = px[sa, 2] * (f if sg >= 0 and (target < 0 or sg == target) else 1.0)
        if opt or not (target < 0 or g == target):
            v = val[j, 2]
            mm = mmv[j, 2]
        else:
            q = lf[j, LF_QTY]
            cs = lf[j, LF_CS]
            lin = li[j, LI_LIN] != 0
            m = mk[j, 2] * f
            v = pnl(q, cs, lf[j, LF_ENTRY], m, lin)
            mm = leg_requirement(
                q, cs, lf[j, LF_LEV], lin, False, False, li[j, LI_MMK], li[j, LI_OSTYLE],
                lf[j, LF_STRIKE], lf[j, LF_OMM], lf[j, LF_OLIQ], lf[j, LF_IMB], lf[j, LF_IMP],
                lf[j, LF_MMB], lf[j, LF_MMP], lf[j, LF_DMMR], li[j, LI_TOFF], li[j, LI_TN],
                floors, mmr, cum, m, ud[j, 2] * f)[2]
        if isolated:
            iso = lf[j, LF_ISO]
            s = (iso if iso == iso else 0.0) + v - mm
            if s < least:
                least = s
            continue
        p = li[j, LI_POOL] if multi else 0
        if not (opt_off_mb and opt):
            acc[p, 0] += v * pxs
        if not no_mm:
            acc[p, 1] += mm * pxs
    if isolated:
        return least
    if no_mm:
        acc[0, 1] = pm_mm  # portfolio margin: the netted requirement, held
    for p in range(risk.shape[0]):
        if risk[p]:
            s = acc[p, 0] - acc[p, 1]
            if s < least:
                least = s
    return least


@njit(cache=True, _nrt=False)  # type: ignore[call-overload]  # (see _moved_surplus)
def _distance(target: int, down: bool, grid: bool, base: float, isolated: bool, multi: bool,
              opt_off_mb: bool, no_mm: bool, pm_mm: float, lf: np.ndarray, li: np.ndarray,
              af: np.ndarray, ai: np.ndarray, px: np.ndarray, mk: np.ndarray, ud: np.ndarray,
              val: np.ndarray, mmv: np.ndarray, floors: np.ndarray, mmr: np.ndarray,
              cum: np.ndarray, risk: np.ndarray, acc: np.ndarray) -> float:
    """The signed move of group ``target`` (-1: every group) from the close, downwards or
    upwards, at which the account is first liquidated (inf: none down to -99 % / up to
    +1000 %); ``base`` the surplus at the close (> 0).

    The surplus of a futures book is concave in the move (PnL linear in the price, or in its
    inverse for coin-margined contracts; maintenance convex: tier rates rising with the
    notional, size-dependent rates rising with the size; options held), so the set of
    surviving moves is an interval around 0: when the surplus at the limit is positive nothing
    liquidates, else there is exactly one crossing, found by regula falsi (Illinois). With
    ``grid`` (a book for which concavity is not known) the first of 64 equal steps where the
    surplus is not positive brackets the first crossing instead.
    """
    lim = DIST_DOWN if down else DIST_UP
    a = 1.0
    fa = base
    if grid:
        b = 1.0
        fb = base
        for i in range(1, _DIST_GRID_POINTS + 1):
            x = 1.0 + (lim - 1.0) * i / _DIST_GRID_POINTS
            fx = _moved_surplus(x, target, isolated, multi, opt_off_mb, no_mm, pm_mm, lf, li,
                                af, ai, px, mk, ud, val, mmv, floors, mmr, cum, risk, acc)
            if fx <= 0.0:
                b = x
                fb = fx
                break
            a = x
            fa = fx
        if b == 1.0:
            return _INF
    else:
        b = lim
        fb = _moved_surplus(b, target, isolated, multi, opt_off_mb, no_mm, pm_mm, lf, li, af,
                            ai, px, mk, ud, val, mmv, floors, mmr, cum, risk, acc)
        if fb > 0.0:
            return _INF
    tol = 1e-13 * (abs(fa) + abs(fb))
    side = 0
    for _ in range(200):
        c = (a * fb - b * fa) / (fb - fa)
        if not (min(a, b) < c < max(a, b)):
            c = 0.5 * (a + b)
        fc = _moved_surplus(c, target, isolated, multi, opt_off_mb, no_mm, pm_mm, lf, li, af,
                            ai, px, mk, ud, val, mmv, floors, mmr, cum, risk, acc)
        if fc > 0.0:
            a = c
            fa = fc
            if side == 1:
                fb *= 0.5  # Illinois: the end kept twice counts for half
            side = 1
        else:
            b = c
            fb = fc
            if side == -1:
                fa *= 0.5
            side = -1
        if abs(fc) <= tol:
            return c - 1.0
        if abs(b - a) <= 1e-14 * b:
            break
    return b - 1.0


@njit(cache=True)
def evaluate(s0: int, nbars: int, flags: int, call_level: float, lf: np.ndarray,
             li: np.ndarray, af: np.ndarray, ai: np.ndarray, of: np.ndarray, oi: np.ndarray,
             n_groups: int, n_pools: int, floors: np.ndarray, mmr: np.ndarray, cum: np.ndarray,
             store: np.ndarray, bars: np.ndarray, optmark: np.ndarray, choice_in: np.ndarray,
             shift_sym: int, shift_asset: int, factor: float, pm: np.ndarray, rec: np.ndarray,
             rec_off: int, legs_out: np.ndarray, pools_out: np.ndarray,
             excess_out: np.ndarray, dist_out: np.ndarray, gmap: np.ndarray) -> int:
    """Evaluate a constant book at clock steps ``s0 .. s0 + nbars - 1``; the kernel's one
    entry point.

    Per step: the **close state** (every leg at its mark close, collateral at its index close)
    and, with ``INTRABAR`` in cross margin, each underlying group at the scenario (mark low,
    high or close) that leaves it the least margin excess — per pool with ``MULTI`` — whose
    margin balance, maintenance margin, ratio and status replace the close's (available: the
    lower of the two; per pool likewise, the account summing the pools' worst values and
    taking the worst ratio and status). ``ISOLATED`` keeps the close state, and a step is
    ``liquidate`` when a position's allocation plus value does not cover its maintenance
    margin at one of the scenarios. ``FORCED``: the scenario is ``choice_in[pool, group]``
    instead (0 low, 1 high, 2 close), and it replaces the close state (a liquidation's
    triggering prices).

    Writes ``rec[REC_*, step - rec_off]`` (``REC_STATUS`` included), ``legs_out[b, leg,
    (mark, value, notional, IM, MM)]`` at the close (at the forced scenario with ``FORCED``;
    ``b = step - s0``), with ``MULTI`` ``pools_out[b, pool, POOL_*]``, and each group's excess
    at each scenario into ``excess_out[pool, group, w]`` (the last step's); returns the offset
    of the first step whose status is not ``ok`` (``nbars`` when every step is).

    ``optmark[leg, b, w]`` (w = 0 low, 1 high): an option repriced at its underlying's low and
    high (NaN: the recorded mark low and high). ``shift_sym`` (a symbol's ``LI_SYM``) and
    ``shift_asset`` (>= 0) scale that symbol's legs' marks and underlying and that asset's USD
    price by ``factor`` at every scenario (a liquidation or bankruptcy price's move). ``pm``
    (initial, maintenance; NaN: none): portfolio margin's netted requirement, replacing the
    legs' sum in every state.

    ``dist_out[u, d, step]`` (when it has rows; by the run's step): the distance to liquidation at
    the close (:func:`_distance`) of each group ``g`` moved alone (row ``u = gmap[g]``) and of
    every group together (the last row, when there are several rows), downwards (``d = 0``,
    negative) and upwards (``d = 1``); 0 when the close already liquidates, inf where no move
    in range does (and for rows of groups the book does not hold).
    """
    intrabar = (flags & INTRABAR) != 0
    isolated = (flags & ISOLATED) != 0
    multi = (flags & MULTI) != 0
    forced = (flags & FORCED) != 0
    no_mm = (flags & PORTFOLIO) != 0
    opt_off_mb = (flags & OPTIONS_OFF_MB) != 0
    dist_grid = (flags & DIST_GRID) != 0
    n_dist = dist_out.shape[0]
    worst = intrabar and not isolated and not forced
    nl = lf.shape[0]
    na = af.shape[0]
    no = of.shape[0]
    npool = n_pools if multi else 1
    risk = np.zeros(npool, dtype=np.bool_)
    dacc = np.zeros((npool, 2))
    ng = max(n_groups, 1)
    w0 = 0 if (intrabar or forced) else 2
    mk = np.empty((nl, 3))
    ud = np.empty((nl, 3))
    val = np.empty((nl, 3))
    nt = np.empty((nl, 3))
    imv = np.empty((nl, 3))
    mmv = np.empty((nl, 3))
    px = np.empty((na, 3))
    choice = np.full((2, npool, ng), 2, dtype=np.int64)  # [0] the close, [1] the worst
    acc = np.empty((2, npool, 7))  # collateral, session, PnL, IM, MM, isolated, liability
    out = np.empty((2, NREC))
    pools = np.empty((2, npool, NPOOL))
    oim = np.empty(npool)
    liab = np.zeros(2, dtype=np.bool_)
    ex = excess_out if excess_out.shape[0] > 0 else np.zeros((npool, ng, 3))
    nstates = 2 if worst else 1
    if forced:
        for p in range(npool):
            for g in range(ng):
                choice[0, p, g] = choice_in[p, g]
    first_bad = nbars
    for b in range(nbars):
        step = s0 + b
        # -- the step's prices ------------------------------------------------------------
        for a in range(na):
            if ai[a, AI_STABLE]:
                for w in range(3):
                    px[a, w] = 1.0
            elif ai[a, AI_SC] < 0:
                for w in range(3):
                    px[a, w] = 0.0
            else:
                row = ai[a, AI_ROW]
                pre = af[a, AF_PRE]
                px[a, 2] = _at(store, bars, row, ai[a, AI_SC], step, pre)
                if w0 == 0:
                    px[a, 0] = _at(store, bars, row, ai[a, AI_SL], step, pre)
                    px[a, 1] = _at(store, bars, row, ai[a, AI_SH], step, pre)
                else:
                    px[a, 0] = px[a, 2]
                    px[a, 1] = px[a, 2]
            if a == shift_asset:
                for w in range(3):
                    px[a, w] *= factor
        for j in range(nl):
            row = li[j, LI_ROW]
            mk[j, 2] = _at(store, bars, row, li[j, LI_SMC], step, 0.0)
            ud[j, 2] = _at(store, bars, row, li[j, LI_SUC], step, 0.0)
            if w0 == 0:
                ud[j, 0] = _at(store, bars, row, li[j, LI_SUL], step, 0.0)
                ud[j, 1] = _at(store, bars, row, li[j, LI_SUH], step, 0.0)
                lo = optmark[j, b, 0]
                hi = optmark[j, b, 1]
                mk[j, 0] = lo if lo == lo else _at(store, bars, row, li[j, LI_SML], step, 0.0)
                mk[j, 1] = hi if hi == hi else _at(store, bars, row, li[j, LI_SMH], step, 0.0)
            if li[j, LI_SYM] == shift_sym:
                for w in range(w0, 3):
                    mk[j, w] *= factor
                    ud[j, w] *= factor
            # -- the leg's value and requirements at each scenario --------------------------
            q = lf[j, LF_QTY]
            cs = lf[j, LF_CS]
            lin = li[j, LI_LIN] != 0
            opt = li[j, LI_OPT] != 0
            for w in range(w0, 3):
                m = mk[j, w]
                val[j, w] = q * cs * m if opt else pnl(q, cs, lf[j, LF_ENTRY], m, lin)
                n, im, mm = leg_requirement(
                    q, cs, lf[j, LF_LEV], lin, opt, li[j, LI_CALL] != 0, li[j, LI_MMK],
                    li[j, LI_OSTYLE], lf[j, LF_STRIKE], lf[j, LF_OMM], lf[j, LF_OLIQ],
                    lf[j, LF_IMB], lf[j, LF_IMP], lf[j, LF_MMB], lf[j, LF_MMP], lf[j, LF_DMMR],
                    li[j, LI_TOFF], li[j, LI_TN], floors, mmr, cum, m, ud[j, w])
                nt[j, w] = n
                imv[j, w] = im
                mmv[j, w] = mm
        # -- working orders' initial margin (USD at the close), per pool ------------------
        oim[:] = 0.0
        oim_total = 0.0
        for o in range(no):
            price = of[o, OF_PRICE]
            if price != price:  # a market order: its instrument's last trade close
                price = _at(store, bars, oi[o, OI_ROW], oi[o, OI_SC], step, math.nan)
                if price != price:
                    continue  # no bar has closed yet
            x = order_margin(of[o, OF_QTY], of[o, OF_CS], price, of[o, OF_LEV],
                             oi[o, OI_LIN] != 0, oi[o, OI_OPT] != 0, oi[o, OI_BUY] != 0,
                             oi[o, OI_MMK] == MMK_RATES, of[o, OF_IMB], of[o, OF_IMP]
                             ) * px[oi[o, OI_SETTLE], 2]
            oim_total += x
            oim[oi[o, OI_POOL] if multi else 0] += x
        # -- each group's scenario: the one leaving it the least excess --------------------
        if worst or excess_out.shape[0] > 0:
            # collateral at its index, legs' value less maintenance in their settle currency
            # (at the group's scenario when they settle in the group's coin, else at the close)
            ex[:] = 0.0
            for a in range(na):
                g = ai[a, AI_GROUP]
                bal = af[a, AF_BAL]
                if g < 0 or bal == 0.0:
                    continue
                p = ai[a, AI_POOL] if multi else 0
                h = af[a, AF_HAIRCUT] if bal > 0.0 else 1.0
                for w in range(3):
                    ex[p, g, w] += bal * px[a, w] * h
            for j in range(nl):
                g = li[j, LI_GROUP]
                p = li[j, LI_POOL] if multi else 0
                sa = li[j, LI_SETTLE]
                own = ai[sa, AI_GROUP] == g
                for w in range(3):
                    x = 0.0 if opt_off_mb and li[j, LI_OPT] else val[j, w]
                    if not no_mm:
                        x -= mmv[j, w]
                    ex[p, g, w] += x * (px[sa, w] if own else px[sa, 2])
            if worst:
                for p in range(npool):
                    for g in range(ng):
                        best = _INF
                        bw = 2
                        for w in range(3):
                            if ex[p, g, w] < best:
                                best = ex[p, g, w]
                                bw = w
                        choice[1, p, g] = bw
        # -- the states: sums per pool at each state's scenario ----------------------------
        acc[:] = 0.0
        liab[:] = False
        for st in range(nstates):
            bal_usd = 0.0
            cfix = 0.0
            cmov = 0.0
            sfix = 0.0
            smov = 0.0
            for a in range(na):
                bal = af[a, AF_BAL]
                ses = af[a, AF_SESSION]
                p = ai[a, AI_POOL] if multi else 0
                g = ai[a, AI_GROUP]
                w = choice[st, p, g] if g >= 0 else 2
                if bal != 0.0:
                    x = bal * px[a, w]
                    v = x * (af[a, AF_HAIRCUT] if bal > 0.0 else 1.0)
                    bal_usd += x
                    acc[st, p, 0] += v
                    if ai[a, AI_STABLE]:
                        cfix += v
                    else:
                        cmov += v
                    if bal < 0.0:
                        acc[st, p, 6] = 1.0
                        liab[st] = True
                if ses != 0.0:
                    x = ses * px[a, w]
                    acc[st, p, 1] += x
                    if ai[a, AI_STABLE]:
                        sfix += x
                    else:
                        smov += x
            gross = 0.0
            net = 0.0
            value_all = 0.0  # every leg's value (equity); the margin balance may leave options'
            for j in range(nl):
                p = li[j, LI_POOL] if multi else 0
                sa = li[j, LI_SETTLE]
                w = choice[st, p, li[j, LI_GROUP]]
                sg = ai[sa, AI_GROUP]
                pxs = px[sa, choice[st, p, sg] if sg >= 0 else 2]
                value_all += val[j, w] * pxs
                if not (opt_off_mb and li[j, LI_OPT]):
                    acc[st, p, 2] += val[j, w] * pxs
                acc[st, p, 3] += imv[j, w] * pxs
                acc[st, p, 4] += mmv[j, w] * pxs
                iso = lf[j, LF_ISO]
                if isolated and iso == iso:
                    acc[st, p, 5] += iso * pxs
                q = lf[j, LF_QTY]
                if li[j, LI_OPT]:
                    usd = abs(q) * lf[j, LF_CS] * ud[j, w]
                elif li[j, LI_LIN]:
                    usd = abs(q) * lf[j, LF_CS] * mk[j, w]
                else:
                    usd = abs(q) * lf[j, LF_CS]
                gross += usd
                net += usd if q > 0.0 else -usd
                if st == 0:
                    legs_out[b, j, 0] = mk[j, w]
                    legs_out[b, j, 1] = val[j, w]
                    legs_out[b, j, 2] = nt[j, w]
                    legs_out[b, j, 3] = imv[j, w]
                    legs_out[b, j, 4] = mmv[j, w]
            # account totals
            mb_coll = 0.0
            session = 0.0
            upnl = 0.0
            im_t = 0.0
            mm_t = 0.0
            iso_t = 0.0
            for p in range(npool):
                mb_coll += acc[st, p, 0]
                session += acc[st, p, 1]
                upnl += acc[st, p, 2]
                im_t += acc[st, p, 3]
                mm_t += acc[st, p, 4]
                iso_t += acc[st, p, 5]
            if pm[0] == pm[0] and (im_t > 0.0 or mm_t > 0.0):
                im_t = pm[0]  # portfolio margin: requirements net
                mm_t = pm[1]
            mb = mb_coll + session + upnl
            ratio = ratio_of(mb, mm_t)
            out[st, REC_EQUITY] = bal_usd + session + value_all
            out[st, REC_WALLET] = bal_usd
            out[st, REC_UPNL] = value_all
            out[st, REC_MB] = mb
            out[st, REC_MB_CLOSE] = mb
            out[st, REC_IM] = im_t
            out[st, REC_MM] = mm_t
            out[st, REC_RATIO] = ratio
            out[st, REC_AVAILABLE] = ((mb_coll - iso_t - oim_total) if isolated
                                      else (mb - im_t - oim_total))
            out[st, REC_GROSS] = gross
            out[st, REC_NET] = net
            out[st, REC_COLL_FIXED] = cfix
            out[st, REC_COLL_MOVING] = cmov
            out[st, REC_SESSION_FIXED] = sfix
            out[st, REC_SESSION_MOVING] = smov
            out[st, REC_STATUS] = status_of(mb, mm_t, ratio, call_level, liab[st])
            if multi:
                # each pool's own fields; the account's ratio and status are the worst pool's
                worst_ratio = 0.0
                worst_st = STATUS_OK
                for p in range(npool):
                    coll = acc[st, p, 0] + acc[st, p, 1]
                    p_mb = coll + acc[st, p, 2]
                    p_mm = acc[st, p, 4]
                    p_ratio = ratio_of(p_mb, p_mm)
                    p_st = status_of(p_mb, p_mm, p_ratio, call_level, acc[st, p, 6] > 0.0)
                    pools[st, p, POOL_COLLATERAL] = coll
                    pools[st, p, POOL_MB] = p_mb
                    pools[st, p, POOL_IM] = acc[st, p, 3]
                    pools[st, p, POOL_MM] = p_mm
                    pools[st, p, POOL_RATIO] = p_ratio
                    pools[st, p, POOL_AVAILABLE] = ((acc[st, p, 0] - acc[st, p, 5] - oim[p])
                                                    if isolated
                                                    else (p_mb - acc[st, p, 3] - oim[p]))
                    pools[st, p, POOL_STATUS] = p_st
                    if p_ratio > worst_ratio:
                        worst_ratio = p_ratio
                    if p_st > worst_st:
                        worst_st = p_st
                out[st, REC_RATIO] = worst_ratio
                out[st, REC_STATUS] = worst_st
        # -- the check: the close's fields with the worst scenario's margin ----------------
        if worst:
            if multi:
                mb = 0.0
                mm = 0.0
                ratio = 0.0
                status = STATUS_OK
                shortfall = 0.0
                for p in range(npool):
                    avail = pools[0, p, POOL_AVAILABLE]
                    if pools[1, p, POOL_AVAILABLE] < avail:
                        shortfall += avail - pools[1, p, POOL_AVAILABLE]
                        avail = pools[1, p, POOL_AVAILABLE]
                    for c in (POOL_MB, POOL_MM, POOL_RATIO, POOL_STATUS):
                        pools[0, p, c] = pools[1, p, c]
                    pools[0, p, POOL_AVAILABLE] = avail
                    mb += pools[1, p, POOL_MB]
                    mm += pools[1, p, POOL_MM]
                    if pools[1, p, POOL_RATIO] > ratio:
                        ratio = pools[1, p, POOL_RATIO]
                    if pools[1, p, POOL_STATUS] > status:
                        status = pools[1, p, POOL_STATUS]
                out[0, REC_MB] = mb
                out[0, REC_MM] = mm
                out[0, REC_RATIO] = ratio
                out[0, REC_STATUS] = status
                out[0, REC_AVAILABLE] -= shortfall
            else:
                for c in (REC_MB, REC_MM, REC_RATIO, REC_STATUS):
                    out[0, c] = out[1, c]
                if out[1, REC_AVAILABLE] < out[0, REC_AVAILABLE]:
                    out[0, REC_AVAILABLE] = out[1, REC_AVAILABLE]
        if isolated:
            breach = False
            for j in range(nl):
                if li[j, LI_OPT]:
                    continue  # options are not isolated
                iso = lf[j, LF_ISO]
                alloc = iso if iso == iso else 0.0
                for w in range(w0, 3):
                    if alloc + val[j, w] - mmv[j, w] <= 0.0:
                        breach = True
            out[0, REC_STATUS] = STATUS_LIQUIDATE if breach else STATUS_OK
        r = step - rec_off
        if n_dist > 0:
            for u in range(n_dist):
                dist_out[u, 0, step] = _INF
                dist_out[u, 1, step] = _INF
            if nl > 0:
                pm_mm = pm[1] if no_mm else 0.0
                for p in range(risk.shape[0]):
                    risk[p] = acc[0, p, 4] > 0.0 or acc[0, p, 6] > 0.0 or (no_mm and pm_mm > 0.0)
                base = _moved_surplus(1.0, -1, isolated, multi, opt_off_mb, no_mm, pm_mm, lf,
                                      li, af, ai, px, mk, ud, val, mmv, floors, mmr, cum, risk,
                                      dacc)
                for t in range(-1, n_groups):
                    if t < 0 and n_dist == 1:
                        continue  # one row: the run has one underlying, moved alone
                    u = n_dist - 1 if t < 0 else gmap[t]
                    if u < 0:
                        continue
                    for d in range(2):
                        if base <= 0.0:
                            dist_out[u, d, step] = 0.0
                        else:
                            dist_out[u, d, step] = _distance(
                                t, d == 0, dist_grid, base, isolated, multi, opt_off_mb, no_mm,
                                pm_mm, lf, li, af, ai, px, mk, ud, val, mmv, floors, mmr, cum,
                                risk, dacc)
        for c in range(NREC):
            rec[c, r] = out[0, c]
        if multi:
            for p in range(npool):
                for c in range(NPOOL):
                    pools_out[b, p, c] = pools[0, p, c]
        if out[0, REC_STATUS] != STATUS_OK and first_bad == nbars:
            first_bad = b
    return first_bad
