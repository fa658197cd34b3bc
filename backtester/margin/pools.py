"""Collateral pools: which balances a position draws on, per exchange profile.

The profile's ``pool`` rule (``ProfileData.pool``, from ``Profile.pool``; margin-rules §1.2)
says how the account's balances back its positions, as in the margin calculator
(:mod:`backtester.margin.calculator`):

* ``usd`` (bybit, okx; and every profile in ``portfolio`` mode, whose scenario grid spans the
  account): **one pool**. Every balance counts at ``amount × index × haircut``; positions of
  every settle asset draw on it.
* ``per_settle_asset`` (binance-usdm, single-asset mode), ``per_coin`` (binance-coinm),
  ``per_currency`` (deribit standard): **one pool per asset**. A position draws only on the
  pool of its settle asset — a USDC-settled perp on the USDC balance, an inverse BTC contract
  on the BTC balance; a USDT balance does not back it. Each pool has its own margin balance
  (its balance × haircut + its positions' PnL), requirements, ratio and status: a pool is
  called and liquidated on its own, and its liquidation closes only its own positions.

Amounts stay in USD (each pool valued at its asset's index). The account's fields, recorded
every bar, are then the calculator's account fields of a multi-pool snapshot: margin balance,
initial and maintenance margin and available are **totals over the pools (USD)**; the margin
ratio and the status are those of the **worst pool** (the highest ratio; liquidate > call >
ok). Per-pool values are in ``MarginState.pools`` (empty while the account holds one pool:
then the account fields are that pool's). A pool exists while it holds a non-zero balance or
an open position; order admission checks the available margin of the order's pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from backtester.config import MarginMode
from backtester.events import MarginCalled

if TYPE_CHECKING:
    from backtester.accounting import Position
    from backtester.data.feed import SymbolFeed
    from backtester.engine import Engine
    from backtester.margin.profile_data import ProfileData
    from backtester.margin.state import MarginState

__all__ = ["PoolState", "PoolsMixin", "liquidation_status", "pool_ratio_status", "pool_sums"]

_INF = float("inf")
_SCENARIOS = (0, 1, 2)  # mark low, mark high, mark close
_RANK = {"ok": 0, "call": 1, "liquidate": 2}


@dataclass(slots=True, kw_only=True)
class PoolState:
    """One collateral pool at an evaluation, USD.

    ``asset`` names the pool (its settle asset). ``margin_balance`` = balance × haircut at
    the index + session PnL + the pool's positions' PnL; ``margin_ratio`` = maintenance /
    margin balance (inf when the margin balance is not positive and maintenance is);
    ``available`` = margin balance − initial margin − working orders' initial margin
    (isolated mode: balance − allocated margins − orders); ``status`` ``ok``/``call``/
    ``liquidate`` as the account's. ``collateral`` = balance × haircut at the index + session
    PnL at the mark close (the margin balance without the positions' PnL; what the distance to
    liquidation moves with the pool's asset).
    """

    asset: str
    collateral: float = 0.0
    margin_balance: float = 0.0
    initial_margin: float = 0.0
    maintenance_margin: float = 0.0
    margin_ratio: float = 0.0
    available: float = 0.0
    status: str = "ok"


def liquidation_status(mb: float, mm: float, ratio: float, call_level: float, *,
                       has_liability: bool) -> str:
    """Status of a pool: ``liquidate`` when its margin balance does not exceed its maintenance
    margin and it carries risk (maintenance > 0, or a negative balance: a liability against the
    pool's other collateral); ``call`` at the call level; else ``ok``."""
    if mb <= mm and (mm > 0 or has_liability):
        return "liquidate"
    return "call" if ratio >= call_level else "ok"


def pool_ratio_status(mb: float, mm: float, call_level: float, *,
                      has_liability: bool = False) -> tuple[float, str]:
    """Margin ratio and status of a margin balance ``mb`` against maintenance ``mm`` (USD);
    ``has_liability``: the pool holds a negative balance (see :func:`liquidation_status`)."""
    ratio = mm / mb if mb > 0 else (_INF if mm > 0 else 0.0)
    return ratio, liquidation_status(mb, mm, ratio, call_level, has_liability=has_liability)


def pool_sums(acc: dict[str, list[float]], pool: str) -> list[float]:
    """The running sums of ``pool`` in ``acc`` (created as zeros on first use): collateral,
    session, PnL, initial and maintenance margin and isolated allocations, USD."""
    a = acc.get(pool)
    if a is None:
        a = acc[pool] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    return a


class PoolsMixin:
    """Per-pool evaluation of the margin engine (mixed into ``MarginEngine``)."""

    if TYPE_CHECKING:  # provided by MarginEngine
        e: Engine
        profile: ProfileData
        mode: MarginMode
        call_level: float
        margin_calls: int
        _in_call: bool
        _pooled: bool

        def _evaluate(self, scenario_of: dict[str, int] | None, *,
                      multi: bool | None = None) -> MarginState: ...
        def evaluate_now(self) -> MarginState: ...
        def _order_im(self, pool: str | None = None) -> float: ...
        def _group_excess(self, group: str, w: int, pool: str | None = None) -> float: ...
        def _mark(self, f: SymbolFeed, w: int) -> float: ...

    _pools_in_call: frozenset[str] = frozenset()

    def pool_of(self, asset: str) -> str:
        """The pool an asset's balance (or a position settled in it) belongs to: the asset
        itself on per-asset profiles, ``USD`` on one-pool profiles and in portfolio mode."""
        return asset if self._pooled else "USD"

    def _pool_keys(self) -> list[str]:
        # the pools the account holds, in _evaluate's order: non-zero balances, session
        # amounts, open positions' settle assets
        acct = self.e.account
        keys = [a for a, b in acct.balances.items() if b != 0]
        keys += [a for a, b in acct.session.items() if b != 0]
        keys += [p.instrument.settle for p in acct.positions.values() if p.qty_f != 0.0]
        return list(dict.fromkeys(self.pool_of(k) for k in keys))

    def _multi_pool(self) -> bool:
        # True when the account holds several pools (_pool_keys has more than one), cheaply
        if not self._pooled:
            return False
        acct = self.e.account
        first = None
        for a, b in acct.balances.items():
            if b:
                if first is None:
                    first = a
                elif a != first:
                    return True
        if acct.session:
            for a, b in acct.session.items():
                if b and a != first:
                    if first is not None:
                        return True
                    first = a
        for p in acct.positions.values():
            if p.qty_f != 0.0 and p.instrument.settle != first:
                if first is not None:
                    return True
                first = p.instrument.settle
        return False

    def _position_in(self, pos: Position, pool: str | None) -> bool:
        # True when pos draws on ``pool`` (None: the whole account)
        return pool is None or self.pool_of(pos.instrument.settle) == pool

    def _split_pools(self, st: MarginState, acc: dict[str, list[float]], *,
                     isolated: bool) -> None:
        # several pools: acc maps pool -> [collateral, session, upnl, im, mm, isolated
        # allocations] (USD); fill st.pools and take the account's ratio and status from the
        # worst pool (the totals stay the account's)
        order_im = self._order_im_by_pool() if self.e.orders else {}
        worst_ratio, worst = 0.0, "ok"
        for asset, (coll, session, upnl, im, mm, iso) in acc.items():
            mb = coll + session + upnl
            ratio, status = pool_ratio_status(mb, mm, self.call_level, has_liability=coll < 0)
            oim = order_im.get(asset, 0.0)
            st.pools[asset] = PoolState(
                asset=asset, collateral=coll + session, margin_balance=mb, initial_margin=im,
                maintenance_margin=mm, margin_ratio=ratio, status=status,
                available=(coll - iso - oim) if isolated else (mb - im - oim))
            worst_ratio = max(worst_ratio, ratio)
            if _RANK[status] > _RANK[worst]:
                worst = status
        st.margin_ratio = worst_ratio
        st.status = worst

    def _order_im_by_pool(self) -> dict[str, float]:
        # working orders' initial margin (USD) per pool of their settle asset
        out: dict[str, float] = {}
        for pool in dict.fromkeys(self.pool_of(self.e.feed.symbols[o.symbol].instrument.settle)
                                  for o in self.e.orders.values()):
            out[pool] = self._order_im(pool)
        return out

    def pool_state(self, st: MarginState, pool: str) -> PoolState:
        """Pool ``pool`` of the evaluation ``st`` (an empty pool when the account has none)."""
        p = st.pools.get(pool)
        if p is not None:
            return p
        if not st.pools and (not self._pooled or pool in self._pool_keys()):
            # the account's only pool: its fields are the account's
            return PoolState(asset=pool, margin_balance=st.margin_balance,
                             initial_margin=st.initial_margin,
                             maintenance_margin=st.maintenance_margin,
                             margin_ratio=st.margin_ratio, available=st.available,
                             status=st.status)
        return PoolState(asset=pool, available=-self._order_im(pool))

    def _available_for(self, settle: str) -> tuple[float, str]:
        # available margin (USD) at the closes for what settles in ``settle``: its pool's
        # (the account's with one pool), and " in the <pool> pool" when that is not the account
        now = self.evaluate_now()
        if not self._pooled:
            return now.available, ""
        pool = self.pool_of(settle)
        where = f" in the {pool} pool" if now.pools or self._pool_keys() != [pool] else ""
        return self.pool_state(now, pool).available, where

    def _worst_pools(self, keys: list[str]) -> MarginState:
        # the intrabar check of several pools: each pool at its own worst scenario (its
        # underlying groups at the mark low/high/close that leave it the least excess), as
        # _worst_general does for the one pool; the account sums the pools' worst values
        acct = self.e.account
        stable = self.e.feed.is_stable
        close = self._evaluate(None, multi=True)
        shortfall = 0.0
        for pool in keys:
            c = close.pools[pool]
            groups = {p.instrument.base for p in acct.positions.values()
                      if p.qty_f != 0.0 and self._position_in(p, pool)}
            groups |= {a for a, b in acct.balances.items()
                       if b != 0 and not stable(a) and self.pool_of(a) == pool}
            if not groups:
                continue
            scenario = {g: min(_SCENARIOS, key=partial(self._group_excess, g, pool=pool))
                        for g in sorted(groups)}
            w = self._evaluate(scenario, multi=True).pools[pool]
            avail = min(c.available, w.available)
            shortfall += c.available - avail
            close.pools[pool] = PoolState(
                asset=pool, collateral=c.collateral, margin_balance=w.margin_balance,
                initial_margin=c.initial_margin, maintenance_margin=w.maintenance_margin,
                margin_ratio=w.margin_ratio,
                available=avail, status=w.status)
        close.margin_balance = sum(p.margin_balance for p in close.pools.values())
        close.maintenance_margin = sum(p.maintenance_margin for p in close.pools.values())
        close.margin_ratio = max(p.margin_ratio for p in close.pools.values())
        close.status = max((p.status for p in close.pools.values()), key=_RANK.__getitem__)
        close.available -= shortfall
        return close

    def _margin_call(self, t: int, st: MarginState) -> None:
        # a margin call (status "call"): one event when the account (one pool) or a pool
        # (several) reaches the call level, none again while it stays there
        if not st.pools:
            if not self._in_call:
                self._emit_call(t, st.margin_ratio, st.margin_balance, st.maintenance_margin,
                                st.initial_margin, pool=None)
            self._in_call = True
            return
        was = self._pools_in_call if self._in_call else frozenset()
        calling = [p for p in st.pools.values() if p.status == "call"]
        for p in calling:
            if p.asset not in was:
                self._emit_call(t, p.margin_ratio, p.margin_balance, p.maintenance_margin,
                                p.initial_margin, pool=p.asset)
        self._pools_in_call = frozenset(p.asset for p in calling)
        self._in_call = True

    def _emit_call(self, t: int, ratio: float, mb: float, mm: float, im: float, *,
                   pool: str | None) -> None:
        self.margin_calls += 1
        ev = MarginCalled(ts_ms=t, margin_ratio=ratio, margin_balance=mb,
                          maintenance_margin=mm, initial_margin=im, call_level=self.call_level,
                          **({} if pool is None else {"scope": "pool", "pool": pool}))
        self.e.events.append(ev)
        self.e.pending.append(("margin_call", ev))
