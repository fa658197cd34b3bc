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
from typing import TYPE_CHECKING

from backtester.config import MarginMode
from backtester.events import EventScope, MarginCalled
from backtester.margin.decisions import EmitEvent
from backtester.margin.status import MarginStatus

if TYPE_CHECKING:
    from backtester.accounting import Position
    from backtester.margin.book import Book
    from backtester.margin.decisions import Decisions
    from backtester.margin.profile import ProfileData
    from backtester.margin.protocols import MarginHost
    from backtester.margin.state import MarginState

__all__ = ["PoolState", "PoolsMixin"]



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
    status: MarginStatus = MarginStatus.OK


class PoolsMixin:
    """Per-pool helpers and margin calls of the margin engine (mixed into ``MarginEngine``)."""

    if TYPE_CHECKING:  # provided by MarginEngine
        e: MarginHost
        profile: ProfileData
        mode: MarginMode
        call_level: float
        margin_calls: int
        _in_call: bool
        _pooled: bool

        def evaluate_now(self) -> MarginState: ...
        def book(self) -> Book: ...
        def price_usd(self, asset: str, which: int = 2) -> float: ...

    _pools_in_call: frozenset[str] = frozenset()

    def pool_of(self, asset: str) -> str:
        """The pool an asset's balance (or a position settled in it) belongs to: the asset
        itself on per-asset profiles, ``USD`` on one-pool profiles and in portfolio mode."""
        return asset if self._pooled else "USD"

    def _pool_keys(self) -> list[str]:
        # the pools the account holds: non-zero balances, session amounts, open positions'
        # settle assets
        book = self.book()
        return book.pool_names[:book.n_held_pools]

    def _position_in(self, pos: Position, pool: str | None) -> bool:
        # True when pos draws on ``pool`` (None: the whole account)
        return pool is None or self.pool_of(pos.instrument.settle) == pool

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

    def _order_im(self, pool: str) -> float:
        # the initial margin (USD) the working orders drawing on ``pool`` reserve, at their
        # price (market orders at their instrument's last close)
        from backtester.margin import kernel as k

        book = self.book()
        if pool not in book.pool_names:
            return 0.0
        p = book.pool_names.index(pool)
        total = 0.0
        for j in range(book.of.shape[0]):
            if book.oi[j, k.OI_POOL] != p:
                continue
            price = float(book.of[j, k.OF_PRICE])
            if price != price:
                f = self.e.feed.symbols[book.order_symbols[j]]
                if f.idx < 0:
                    continue
                price = f.c[f.idx]
            settle = book.asset_names[int(book.oi[j, k.OI_SETTLE])]
            of, oi = book.of[j], book.oi[j]
            total += k.order_margin(
                float(of[k.OF_QTY]), float(of[k.OF_CS]), price, float(of[k.OF_LEV]),
                bool(oi[k.OI_LIN]), bool(oi[k.OI_OPT]), bool(oi[k.OI_BUY]),
                int(oi[k.OI_MMK]) == k.MMK_RATES, float(of[k.OF_IMB]), float(of[k.OF_IMP])
            ) * self.price_usd(settle)
        return total

    def _available_for(self, settle: str) -> tuple[float, str]:
        # available margin (USD) at the closes for what settles in ``settle``: its pool's
        # (the account's with one pool), and " in the <pool> pool" when that is not the account
        now = self.evaluate_now()
        if not self._pooled:
            return now.available, ""
        pool = self.pool_of(settle)
        keys = self._pool_keys()
        where = f" in the {pool} pool" if now.pools or keys != [pool] else ""
        return self.pool_state(now, pool).available, where

    def _margin_call(self, t: int, st: MarginState) -> Decisions:
        # a margin call (status "call"): one event when the account (one pool) or a pool
        # (several) reaches the call level, none again while it stays there
        if not st.pools:
            if not self._in_call:
                yield self._call_event(t, st.margin_ratio, st.margin_balance,
                                       st.maintenance_margin, st.initial_margin, pool=None)
            self._in_call = True
            return
        was = self._pools_in_call if self._in_call else frozenset()
        calling = [p for p in st.pools.values() if p.status == "call"]
        for p in calling:
            if p.asset not in was:
                yield self._call_event(t, p.margin_ratio, p.margin_balance,
                                       p.maintenance_margin, p.initial_margin, pool=p.asset)
        self._pools_in_call = frozenset(p.asset for p in calling)
        self._in_call = True

    def _call_event(self, t: int, ratio: float, mb: float, mm: float, im: float, *,
                    pool: str | None) -> EmitEvent:
        self.margin_calls += 1
        ev = MarginCalled(ts_ms=t, margin_ratio=ratio, margin_balance=mb,
                          maintenance_margin=mm, initial_margin=im, call_level=self.call_level,
                          scope=EventScope.ACCOUNT if pool is None else EventScope.POOL, pool=pool)
        return EmitEvent(ev, "margin_call")
