"""The engine books what the margin engine decides.

The margin layer (:mod:`backtester.margin`) never changes the account: a margin call, a
liquidation or an isolated allocation is a sequence of decisions
(:mod:`backtester.margin.decisions`) that this part carries out in order — through
:class:`~backtester.accounting.Account`'s public methods, the order book's cancels, the fill
records and the event lists — sending each decision's result back to the margin code, which
re-evaluates the account as booked before it decides the next step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, assert_never

from backtester.engine.base import EngineParts
from backtester.margin.decisions import (
    CancelOrders,
    Charge,
    EmitEvent,
    InsuranceFlow,
    LiquidationFill,
    PositionFee,
    RecordLiquidationFill,
    SetIsolatedMargin,
    StopTrading,
)
from backtester.numeric import ZERO

if TYPE_CHECKING:
    from decimal import Decimal

    from backtester.margin.decisions import Decision, Decisions

__all__ = ["LedgerMixin"]


class LedgerMixin(EngineParts):
    """Carry out the margin engine's decisions."""

    def carry_out(self, decisions: Decisions) -> None:
        """Carry out ``decisions`` to their end, in order, each one's result sent back."""
        result: Any = None
        while True:
            try:
                decision = decisions.send(result)
            except StopIteration:
                return
            result = self.book_decision(decision)

    def adjust_isolated_margin(self, symbol: str, amount: Decimal) -> None:
        """Add (positive) or remove (negative) ``amount`` (settle asset) of margin to the
        isolated position in ``symbol``, as the margin engine allows (``ConfigError`` if not)."""
        self.book_decision(self.margin.adjust_isolated_margin(symbol, amount))

    def book_decision(self, d: Decision) -> Any:
        """Carry out one decision; return its result (see each decision's type)."""
        acct = self.account
        if isinstance(d, LiquidationFill):
            inst = self.feed.symbols[d.symbol].instrument
            return acct.apply_fill(d.ts_ms, inst, d.qty, d.price, ZERO, ref="liquidation")
        if isinstance(d, PositionFee):
            acct.charge_position_fee(d.ts_ms, d.symbol, d.kind, d.fee, ref=d.ref)
            acct.fund_insurance(self.feed.symbols[d.symbol].instrument.settle, d.fee)
            return None
        if isinstance(d, RecordLiquidationFill):
            return self.record_liquidation_fill(d.ts_ms, d.symbol, d.qty, d.price, d.fee,
                                                d.realized_pnl)
        if isinstance(d, Charge):
            acct.book(d.ts_ms, d.kind, d.asset, d.amount, symbol=d.symbol, ref=d.ref)
            return None
        if isinstance(d, InsuranceFlow):
            acct.fund_insurance(d.asset, d.amount)
            return None
        if isinstance(d, CancelOrders):
            if d.symbols is None:
                return self.cancel(None, symbol=None, reason=d.reason)
            return sum(self.cancel(None, symbol=s, reason=d.reason) for s in d.symbols)
        if isinstance(d, SetIsolatedMargin):
            acct.set_isolated_margin(acct.positions[d.symbol], d.amount)
            return None
        if isinstance(d, EmitEvent):
            self.emit(d.event, d.hook)
            return None
        if isinstance(d, StopTrading):
            self.stop(d.reason)
            return None
        assert_never(d)
