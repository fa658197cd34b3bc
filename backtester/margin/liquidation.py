"""Liquidation and isolated margin: the steps an exchange takes when margin runs out.

Mixed into :class:`backtester.margin.state.MarginEngine`: cancel working orders, then reduce by
the profile's rule (Binance closes, Bybit/OKX step down risk tiers, Deribit closes slices) at the
triggering mark moved against the position by the liquidation slippage; beyond the bankruptcy
price the position is taken over there and the insurance fund (or ADL) bears the gap; fees are
capped at the margin left; a deficit is absorbed and recorded. Isolated positions hold their own
allocation and are liquidated one by one, their loss capped at it. With several collateral pools
(``backtester.margin.pools``) each liquidating pool is liquidated on its own: only its working
orders are cancelled and only its positions closed, its fees capped at its margin balance.

Nothing here changes the account: every step is a decision (``backtester.margin.decisions``)
yielded to the engine, which books it and sends back its result; the code then re-evaluates the
account as booked and decides the next step.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_UP, Decimal
from typing import TYPE_CHECKING, Any

from backtester.accounting import EntryKind, Position
from backtester.config import MarginMode
from backtester.events import EventScope, LiquidationStep, PositionLiquidated
from backtester.events import LiquidationAction as Action
from backtester.margin.decisions import (
    CancelOrders,
    Charge,
    Decisions,
    EmitEvent,
    InsuranceFlow,
    LiquidationFill,
    PositionFee,
    RecordLiquidationFill,
    SetIsolatedMargin,
    StopTrading,
)
from backtester.margin.prices import price_root
from backtester.numeric import MONEY_QUANTUM, ZERO, dec, to_money, to_price

if TYPE_CHECKING:
    from collections.abc import Generator

    from backtester.data.feed import SymbolFeed
    from backtester.margin.decisions import Decision
    from backtester.margin.pools import PoolState
    from backtester.margin.profile import ProfileData
    from backtester.margin.protocols import MarginHost
    from backtester.margin.state import MarginState

__all__ = ["LiquidationMixin"]

_SCENARIOS = (0, 1, 2)  # mark low, mark high, mark close


class LiquidationMixin:
    """Liquidation and isolated-margin methods of the margin engine."""

    if TYPE_CHECKING:  # provided by MarginEngine
        e: MarginHost
        profile: ProfileData
        mode: MarginMode
        intrabar: bool
        liquidations: int
        liq_slippage: float
        _taken_over: bool
        _liq_start_size: dict[str, Decimal]
        _pooled: bool

        @property
        def state(self) -> MarginState: ...
        def evaluate_now(self) -> MarginState: ...
        def _evaluate(self, scenario_of: dict[str, int] | None, *,
                      shift: tuple[str, float, str] | None = None) -> MarginState: ...
        def _choice(self, pool: str | None) -> dict[str, int]: ...
        def price_usd(self, asset: str, which: int = 2) -> float: ...
        def requirement(self, pos: Position, mark: float,
                        und: float) -> tuple[float, float, float]: ...
        def position_value(self, pos: Position, mark: float,
                           f: SymbolFeed | None = None) -> float: ...
        def _mark_at(self, f: SymbolFeed, w: int, i: int, s: int) -> float: ...
        def underlying_price(self, f: SymbolFeed, w: int = 2) -> float: ...
        def pool_of(self, asset: str) -> str: ...
        def pool_state(self, st: MarginState, pool: str) -> PoolState: ...
        def _position_in(self, pos: Position, pool: str | None) -> bool: ...
        def _available_for(self, settle: str) -> tuple[float, str]: ...
        def note_liability(self) -> None: ...

    # -- isolated margin ------------------------------------------------------------------
    def isolated_allocation(self, pos: Position, old_qty: Decimal,
                            price: Decimal) -> SetIsolatedMargin | None:
        """Isolated mode: the allocation of ``pos`` after a fill that took it from ``old_qty``
        to its quantity now at ``price`` — initial margin added for what it grew by, released
        pro rata when it shrank (the released margin returns to the pool); None outside
        isolated mode (the engine books the decision)."""
        if self.mode is not MarginMode.ISOLATED or pos.instrument.is_option:
            return None
        new = pos.qty
        inst = pos.instrument
        alloc = pos.isolated_margin or ZERO
        if new == 0:
            return SetIsolatedMargin(pos.symbol, None)
        if old_qty != 0 and (old_qty > 0) == (new > 0):
            if abs(new) < abs(old_qty):
                return SetIsolatedMargin(pos.symbol, to_money(alloc * abs(new) / abs(old_qty)))
            grown = abs(new) - abs(old_qty)
        else:
            alloc = ZERO  # opened or flipped: the old allocation went with the closed part
            grown = abs(new)
        add = to_money(inst.notional_exact(grown, price) / dec(pos.leverage)
                       * dec(self.e.config.margin_scale))
        return SetIsolatedMargin(pos.symbol, alloc + add)

    def adjust_isolated_margin(self, symbol: str, amount: Decimal) -> SetIsolatedMargin:
        """The allocation of the isolated position in ``symbol`` after adding (positive) or
        removing (negative) ``amount`` of its settle asset (the engine books the decision).

        Adding needs that much available margin; removing may not take the position's margin
        below its initial margin at the current mark (otherwise a ``ConfigError``).
        """
        from backtester.errors import ConfigError

        if self.mode is not MarginMode.ISOLATED:
            msg = f"margin of {symbol} can only be adjusted in isolated mode"
            raise ConfigError(msg)
        pos = self.e.account.positions.get(symbol)
        if pos is None or pos.qty == 0 or pos.isolated_margin is None:
            msg = f"no isolated position in {symbol} to adjust"
            raise ConfigError(msg)
        f = self.e.feed.symbols[symbol]
        px = self.price_usd(pos.instrument.settle)
        if amount > 0 and float(amount) * px > self._available_for(pos.instrument.settle)[0] + 1e-9:
            msg = f"cannot add {amount} to {symbol}: more than the available margin"
            raise ConfigError(msg)
        if amount < 0:
            _, im, _ = self.requirement(pos, f.mc[f.idx], f.ic[f.idx])
            if float(pos.isolated_margin + amount) < im:
                msg = (f"cannot remove {-amount} from {symbol}: its margin would fall below the "
                       f"initial margin {im:.2f}")
                raise ConfigError(msg)
        return SetIsolatedMargin(symbol, pos.isolated_margin + amount)

    def _position_margin(self, pos: Position, f: SymbolFeed, w: int) -> tuple[float, float]:
        # an isolated position's margin balance (its margin + its PnL) and maintenance margin
        # in scenario w (low, high, close)
        i = f.idx
        mark = self._mark_at(f, w, i, self.e.step)
        _, _, mm = self.requirement(pos, mark, self.underlying_price(f, w))
        return float(pos.isolated_margin or 0) + self.position_value(pos, mark, f), mm

    def _position_excess(self, pos: Position, f: SymbolFeed, w: int) -> float:
        balance, mm = self._position_margin(pos, f, w)
        return balance - mm

    def _check_isolated(self, t: int) -> Decisions:
        feeds = self.e.feed.symbols
        for sym, pos in sorted(self.e.account.positions.items()):
            if pos.qty == 0 or pos.instrument.is_option:
                continue
            f = feeds[sym]
            ws = _SCENARIOS if self.intrabar else (2,)
            w = min(ws, key=lambda w: self._position_excess(pos, f, w))
            if self._position_excess(pos, f, w) <= 0:
                yield from self._liquidate_isolated(t, pos, f, w)

    def _liquidate_isolated(self, t: int, pos: Position, f: SymbolFeed, w: int) -> Decisions:
        e = self.e
        before = self.evaluate_now()
        balance, mm = self._position_margin(pos, f, w)
        # the ratio that was breached is the position's own, not the account's
        ratio = mm / balance if balance > 0 else math.inf
        steps: list[LiquidationStep] = []
        n = yield CancelOrders((pos.symbol,), "liquidation")
        if n:
            steps.append(LiquidationStep(action=Action.CANCEL_ORDERS, symbol=pos.symbol,
                                         qty=Decimal(n), price=ZERO, fee=ZERO,
                                         realized_pnl=ZERO))
        mark = self._mark_at(f, w, f.idx, self.e.step)
        alloc = pos.isolated_margin or ZERO
        flow: dict[str, Decimal] = {}
        settle = pos.instrument.settle
        bal_before = e.account.balances.get(settle, ZERO)
        yield from self._close_slice(t, pos, f, abs(pos.qty), mark, steps, flow,
                                     bankruptcy=self._isolated_bankruptcy(pos, alloc))
        self._taken_over = False  # a position's margin, not the account, was exhausted
        lost = bal_before - e.account.balances.get(settle, ZERO)
        if lost > alloc:
            # losses are capped at the isolated margin: the fund covers the rest
            yield from self.absorb_deficit(t, settle, lost - alloc, steps, flow,
                                           symbol=pos.symbol, ref="isolated deficit")
        yield SetIsolatedMargin(pos.symbol, None)
        self.liquidations += 1
        ev = PositionLiquidated(ts_ms=t, scope=EventScope.POSITION,
                                reason="isolated margin + PnL <= maintenance margin",
                                trigger_price={pos.symbol: mark},
                                steps=tuple(steps), equity_before=before.equity,
                                equity_after=self.evaluate_now().equity,
                                margin_ratio_before=ratio, insurance_flow=flow,
                                is_bankrupt=False)
        yield EmitEvent(ev, "liquidation")

    def _isolated_bankruptcy(self, pos: Position, alloc: Decimal) -> float | None:
        # the price at which the isolated margin is exhausted: margin + PnL(P) = 0
        m = float(alloc)
        entry = pos.entry_f
        x = price_root(lambda x: m + self.position_value(pos, entry * x), long=pos.qty_f > 0)
        return None if x is None else entry * x

    # -- liquidation ----------------------------------------------------------------------
    def _liquidate(self, t: int, st: MarginState) -> Decisions:
        """Cancel orders, then reduce by the profile's rule until healthy; fees to the
        insurance fund; a deficit below zero is covered by the fund and recorded. With several
        pools, each liquidating pool on its own (one event each)."""
        if not st.pools:
            yield from self._liquidate_pool(t, st, None)
            return
        for pool in [p.asset for p in st.pools.values() if p.status == "liquidate"]:
            yield from self._liquidate_pool(t, st, pool)

    def _liquidate_pool(self, t: int, st: MarginState, pool: str | None) -> Decisions:
        # the liquidation of the account (pool None) or of one pool of several
        e = self.e
        before = st.equity
        steps: list[LiquidationStep] = []
        n_orders = yield CancelOrders(None if pool is None else tuple(dict.fromkeys(
            o.symbol for o in e.orders.values()
            if self.pool_of(e.feed.symbols[o.symbol].instrument.settle) == pool)), "liquidation")
        if n_orders:
            steps.append(LiquidationStep(action=Action.CANCEL_ORDERS, symbol="",
                                         qty=Decimal(n_orders), price=ZERO, fee=ZERO,
                                         realized_pnl=ZERO))
        scenario = self._choice(pool)
        self._liq_start_size = {}
        triggers: dict[str, float] = {}
        style = self.profile.liquidation_style
        flow: dict[str, Decimal] = {}
        for _ in range(10_000):
            cur = self._evaluate(scenario) if self.intrabar else self.evaluate_now()
            status = cur.status if pool is None else self.pool_state(cur, pool).status
            if status != "liquidate":
                break
            victim = self._pick_victim(scenario, pool)
            if victim is None:
                break
            pos, f, mark = victim
            triggers[pos.symbol] = mark
            qty = self._slice(pos, mark, style)
            yield from self._close_slice(t, pos, f, qty, mark, steps, flow, scenario=scenario)
        if not self._pooled:
            yield from self._repay_liabilities(t, steps, scenario)
        bankrupt, stop = yield from self._cover_deficit(t, steps, flow, pool)
        if stop:
            yield StopTrading("bankrupt")
        self.liquidations += 1
        scope = EventScope.POSITION if self.mode is MarginMode.ISOLATED else EventScope.ACCOUNT
        ev = PositionLiquidated(ts_ms=t, scope=scope if pool is None else EventScope.POOL,
                                reason="maintenance margin >= margin balance",
                                trigger_price=triggers, steps=tuple(steps),
                                equity_before=before, equity_after=self.evaluate_now().equity,
                                margin_ratio_before=st.margin_ratio if pool is None
                                else st.pools[pool].margin_ratio, insurance_flow=flow,
                                is_bankrupt=bankrupt, pool=pool)
        yield EmitEvent(ev, "liquidation")

    def _pick_victim(self, scenario: dict[str, int],
                     pool: str | None = None) -> tuple[Position, SymbolFeed, float] | None:
        # futures before options (Deribit), then the largest maintenance requirement (at the
        # scenario, USD at the close); with ``pool`` only that pool's positions
        st = self._evaluate(scenario)
        marks = {row[0]: row[3] for row in st.positions}
        mms = {row[0]: req[1] for row, req in zip(st.positions, st.requirements, strict=True)}
        best = None
        best_key: tuple[int, float] = (2, -1.0)
        for sym, pos in sorted(self.e.account.positions.items()):
            if pos.qty_f == 0.0 or not self._position_in(pos, pool):
                continue
            f = self.e.feed.symbols[sym]
            key = (1 if pos.instrument.is_option else 0, -mms[sym] * self.price_usd(
                pos.instrument.settle))
            if best is None or key < best_key:
                best, best_key = (pos, f, marks[sym]), key
        return best

    def _slice(self, pos: Position, mark: float, style: str) -> Decimal:
        inst = pos.instrument
        size = abs(pos.qty)
        if style == "incremental":
            # fixed slices of a tenth of the position held when the liquidation began
            start = self._liq_start_size.setdefault(inst.symbol, size)
            step = (start / 10).quantize(inst.lot_size) if inst.lot_size > 0 else start / 10
            return min(size, max(step, inst.lot_size))
        if style == "tiered":
            tiers = self.profile.tiers.get(inst.symbol)
            if tiers is not None:
                notional = inst.notional(pos.qty_f, mark)
                i = tiers.index(notional)
                if i > 0:
                    floor = tiers.floors[i]
                    keep = floor / max(notional, 1e-300) * float(size)
                    cut = size - dec(keep).quantize(inst.lot_size) if inst.lot_size > 0 else size
                    return max(min(size, cut), inst.lot_size if inst.lot_size > 0 else size)
        return size

    def _close_slice(self, t: int, pos: Position, f: SymbolFeed, qty: Decimal, mark: float,
                     steps: list[LiquidationStep], flow: dict[str, Decimal], *,
                     bankruptcy: float | None = None,
                     scenario: dict[str, int] | None = None) -> Decisions:
        inst = pos.instrument
        is_long = pos.qty > 0
        market = mark * (1.0 - self.liq_slippage) if is_long else mark * (1.0 + self.liq_slippage)
        bp = bankruptcy if bankruptcy is not None else self.bankruptcy_price(
            pos, mark, scenario=scenario)
        # a liquidation order fills at the triggering mark moved against the position; when
        # that is beyond the bankruptcy price the position is taken over at the bankruptcy
        # price and the insurance fund (or ADL) bears the difference (DESIGN §2)
        is_takeover = bp is not None and bp > 0 and (market < bp if is_long else market > bp)
        if is_takeover and bp is not None:
            # the bankruptcy price on the tick, rounded against the account (never leaves it
            # a fraction of a tick of margin the fund then pays for)
            price = to_price(max(bp, float(inst.tick_size)), inst.tick_size)
            if abs(float(price) - bp) > 1e-9 * bp:  # not a tick already, up to float error
                price = to_price(max(bp, float(inst.tick_size)), inst.tick_size,
                                 rounding=ROUND_FLOOR if is_long else ROUND_CEILING)
        else:
            price = to_price(max(market, float(inst.tick_size)), inst.tick_size)
        signed = -qty if is_long else qty
        realized = yield LiquidationFill(t, inst.symbol, signed, price)
        fee = ZERO
        rate: float | None = None
        if not is_takeover:
            rate = (self.profile.option_liquidation_fee_rate if inst.is_option
                    else self.profile.liquidation_fee_for(inst.base))
        elif self.profile.bankruptcy_includes_close_fee and bankruptcy is None:
            # the fee to close the bankruptcy price left room for
            rate = float(inst.fee_rate(is_maker=False))
        if rate:
            notional = inst.notional_exact(qty, price) if not inst.is_option else to_money(
                abs(qty) * inst.contract_size * price)
            # the fee takes at most what margin is left (in the position's pool): it never
            # bankrupts the account
            px = self.price_usd(inst.settle, (scenario or {}).get(inst.settle, 2))
            left = self._margin_left(inst.settle, scenario) / max(px, 1e-300)
            fee = min(to_money(notional * dec(rate)), max(ZERO, to_money(max(left, 0.0))))
            if fee > 0:
                yield PositionFee(t, inst.symbol, EntryKind.LIQUIDATION_FEE, fee,
                                  "fee to close at the bankruptcy price" if is_takeover
                                  else "liquidation")
                flow[inst.settle] = flow.get(inst.settle, ZERO) + fee
        steps.append(LiquidationStep(action=Action.TAKEOVER if is_takeover
                                     else Action.LIQUIDATION_ORDER,
                                     symbol=inst.symbol, qty=signed, price=price, fee=fee,
                                     realized_pnl=realized))
        if is_takeover:
            # what closing at the market would have cost beyond the bankruptcy price
            gap = abs(inst.pnl_exact(signed, dec(market), price)) if not inst.is_option \
                else to_money(abs(qty) * inst.contract_size * abs(dec(market) - price))
            if gap > 0:
                if self.e.config.adl:
                    steps.append(LiquidationStep(action=Action.ADL, symbol=inst.symbol, qty=ZERO,
                                                 price=price, fee=ZERO, realized_pnl=gap))
                else:
                    yield InsuranceFlow(inst.settle, -gap)
                    flow[inst.settle] = flow.get(inst.settle, ZERO) - gap
            self._taken_over = True
        yield RecordLiquidationFill(t, inst.symbol, signed, price, fee, realized)

    def _margin_left(self, settle: str, scenario: dict[str, int] | None = None) -> float:
        # margin balance (USD) of the pool a position settled in ``settle`` draws on (the
        # account's with one pool), at the liquidation's scenario (the closes when None)
        st = self.evaluate_now() if scenario is None else self._evaluate(scenario)
        if not self._pooled:
            return st.margin_balance
        return self.pool_state(st, self.pool_of(settle)).margin_balance

    def bankruptcy_price(self, pos: Position, mark: float, *,
                         scenario: dict[str, int] | None = None) -> float | None:
        """Price of ``pos`` at which the margin balance of its pool (the account's with one
        pool) is zero, or None when there is none.

        The position and its coin move as one: the mark of ``pos`` and the price of its
        underlying coin — the pool's collateral and session amounts in that coin, and the
        conversion of what settles in it — are scaled by one factor from their prices in
        ``scenario`` (the liquidation's triggering scenario; the closes when None); other
        positions, even on the same coin, are held there (margin-rules §1.6, as Binance's
        formula holds the other contracts at their marks). With
        ``bankruptcy_includes_close_fee`` the margin balance must also pay the taker fee to
        close ``pos`` at that price ([BY1]).
        """
        inst = pos.instrument
        if inst.is_option or mark <= 0:
            return None
        pool = self.pool_of(inst.settle) if self._pooled else None
        sc = scenario or {}
        fee_rate = (float(inst.fee_rate(is_maker=False))
                    if self.profile.bankruptcy_includes_close_fee else 0.0)

        settle_moves = inst.settle == inst.base

        def left(factor: float) -> float:
            st = self._evaluate(sc, shift=(inst.base, factor, inst.symbol))
            mb = st.margin_balance if pool is None else self.pool_state(st, pool).margin_balance
            if fee_rate:
                px = self.price_usd(inst.settle, sc.get(inst.settle, 2))
                mb -= fee_rate * inst.notional(pos.qty_f, mark * factor) * (
                    px * factor if settle_moves else px)
            return mb

        factor = price_root(left, long=pos.qty_f > 0)
        if factor is None or factor <= 0:
            return None
        return mark * factor

    def absorb_deficit(self, t: int, asset: str, amount: Decimal,
                       steps: list[LiquidationStep], flow: dict[str, Decimal], *, symbol: str,
                       ref: str) -> Decisions:
        """Credit ``amount`` (> 0) of a deficit back to the account and record who bore it:
        the insurance fund (``insurance_cover``), or — with the run key ``adl`` — the opposite
        side's profitable positions by auto-deleveraging (``adl``; the fund is untouched)."""
        is_adl = self.e.config.adl
        yield Charge(t, EntryKind.INSURANCE_COVER, asset, amount, symbol=symbol,
                     ref="auto-deleveraging" if is_adl else ref)
        if not is_adl:
            yield InsuranceFlow(asset, -amount)
            flow[asset] = flow.get(asset, ZERO) - amount
        steps.append(LiquidationStep(action=Action.ADL if is_adl else Action.INSURANCE_COVER,
                                     symbol=symbol, qty=ZERO, price=ZERO, fee=ZERO,
                                     realized_pnl=amount))

    def _repay_liabilities(self, t: int, steps: list[LiquidationStep],
                           scenario: dict[str, int]) -> Decisions:
        """Repay the negative balances of a one-pool account (liabilities against its other
        collateral) by selling that collateral: other stablecoins first at par, then coins by
        USD value, each at its index in the liquidation's scenario moved against the account by
        the liquidation slippage; only what the liability needs is sold (docs/margin.md)."""
        acct = self.e.account
        stable = self.e.feed.is_stable
        for liab in sorted(a for a, b in acct.balances.items() if b < 0):
            self.note_liability()
            px_liab = self.price_usd(liab, scenario.get(liab, 2))
            if px_liab <= 0:
                continue
            sellers = [a for a, b in acct.balances.items() if b > 0 and a != liab]

            def rank(a: str) -> tuple[int, float, str]:
                usd = float(acct.balances[a]) * self.price_usd(a, scenario.get(a, 2))
                return (0 if stable(a) else 1, -usd, a)

            for asset in sorted(sellers, key=rank):
                need = -acct.balances[liab]
                if need <= 0:
                    break
                px = self.price_usd(asset, scenario.get(asset, 2))
                if not (stable(asset) and stable(liab)):
                    px *= 1.0 - self.liq_slippage  # a market conversion, against the account
                rate = dec(px / px_liab)  # units of the liability per unit sold
                if rate <= 0:
                    continue
                qty = min(acct.balances[asset], (need / rate).quantize(
                    MONEY_QUANTUM, rounding=ROUND_UP))
                proceeds = to_money(qty * rate)
                yield Charge(t, EntryKind.COLLATERAL_CONVERSION, asset, -qty,
                             ref=f"sold to repay {liab}")
                yield Charge(t, EntryKind.COLLATERAL_CONVERSION, liab, proceeds,
                             ref=f"sale of {asset}")
                steps.append(LiquidationStep(action=Action.COLLATERAL_SALE, symbol=asset, qty=-qty,
                                             price=rate, fee=ZERO, realized_pnl=proceeds))

    def _cover_deficit(self, t: int, steps: list[LiquidationStep], flow: dict[str, Decimal],
                       pool: str | None = None) -> Generator[Decision, Any, tuple[bool, bool]]:
        # cover negative balances (of ``pool``'s assets only, if given); return (bankrupt,
        # stop the run): with one pool both are the account's bankruptcy; a pool of several is
        # bankrupt when a deficit was covered and its positions are closed or its margin
        # balance is gone, and the run stops only when the account's equity is gone too
        acct = self.e.account
        bankrupt = False
        for asset in sorted(acct.balances):
            if pool is not None and self.pool_of(asset) != pool:
                continue
            bal = acct.balances[asset]
            if bal < 0 and not any(p.qty != 0 and p.instrument.settle == asset
                                   for p in acct.positions.values()):
                # the deficit is absorbed (insurance fund, or auto-deleveraging when the run
                # says so) and recorded; the wallet never goes negative silently
                yield from self.absorb_deficit(t, asset, -bal, steps, flow, symbol="",
                                               ref="bankruptcy")
                bankrupt = True
        if self._taken_over:
            self._taken_over = False
            bankrupt = True
        if not bankrupt:
            return False, False
        now = self.evaluate_now()
        if pool is None:
            out = now.equity <= 0 or all(p.qty == 0 for p in acct.positions.values())
            return out, out
        gone = self.pool_state(now, pool).margin_balance <= 0 or not any(
            p.qty != 0 and self._position_in(p, pool) for p in acct.positions.values())
        return gone, gone and now.equity <= 0



