"""What the margin engine decides and the engine books.

The margin layer never changes the account. When margin runs out (a margin call, a
liquidation, an isolated position's allocation), its code *yields* decisions — values of the
types below — and the engine (``backtester.engine.ledger``) carries each one out through
:class:`~backtester.accounting.Account`'s public methods and its own order book, sending the
result back where the decision has one (a liquidation fill's realized PnL, the number of orders
cancelled, the fill recorded). The margin code then re-evaluates the account as booked and
decides the next step. A liquidation is therefore a generator of decisions (:data:`Decisions`)
that the engine drives to its end; nothing is booked that the engine did not book.

Amounts are ``Decimal`` in the named asset (exact money); quantities are signed contracts
(positive buys); prices are in the instrument's quote currency; times are ms UTC.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from backtester.accounting import EntryKind

__all__ = ["CancelOrders", "Charge", "Decision", "Decisions", "EmitEvent", "InsuranceFlow",
           "LiquidationFill", "PositionFee", "RecordLiquidationFill", "SetIsolatedMargin",
           "StopTrading"]


@dataclass(frozen=True, slots=True)
class CancelOrders:
    """Cancel the working orders of ``symbols`` (all orders when None) with ``reason``.

    Result: the number of orders cancelled (``int``).
    """

    symbols: tuple[str, ...] | None
    reason: str


@dataclass(frozen=True, slots=True)
class LiquidationFill:
    """Close (part of) the position in ``symbol``: signed ``qty`` contracts at ``price``, no
    fee (the liquidation fee is a separate :class:`PositionFee`), journal reference
    ``liquidation``.

    Result: the realized PnL booked (``Decimal``, settle asset; 0 for options).
    """

    ts_ms: int
    symbol: str
    qty: Decimal
    price: Decimal


@dataclass(frozen=True, slots=True)
class PositionFee:
    """Charge ``fee`` (> 0, the settle asset of ``symbol``) to the account as ``kind`` and to
    the position's fee tally; the insurance fund receives it. Result: None."""

    ts_ms: int
    symbol: str
    kind: EntryKind
    fee: Decimal
    ref: str


@dataclass(frozen=True, slots=True)
class Charge:
    """Book ``amount`` (positive = credit to the account) in ``asset`` as ``kind``, with
    ``symbol`` and ``ref`` in the journal. Result: None."""

    ts_ms: int
    kind: EntryKind
    asset: str
    amount: Decimal
    symbol: str = ""
    ref: str = ""


@dataclass(frozen=True, slots=True)
class InsuranceFlow:
    """An insurance-fund flow in ``asset``: positive, the fund receives; negative, it pays.
    Result: None."""

    asset: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class SetIsolatedMargin:
    """Set the isolated margin allocated to the position in ``symbol`` (settle asset; None:
    none). Result: None."""

    symbol: str
    amount: Decimal | None


@dataclass(frozen=True, slots=True)
class RecordLiquidationFill:
    """Record a liquidation's fill (already booked by :class:`LiquidationFill` and
    :class:`PositionFee`) under an order of its own in the order log. Result: the ``Fill``."""

    ts_ms: int
    symbol: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class EmitEvent:
    """Record a market event (``MarginCalled``, ``PositionLiquidated``) in the results and
    queue the strategy's ``on_<hook>``. Result: None."""

    event: Any
    hook: str


@dataclass(frozen=True, slots=True)
class StopTrading:
    """Stop trading (``reason``: why, e.g. ``bankrupt``). Result: None."""

    reason: str


Decision = (CancelOrders | LiquidationFill | PositionFee | Charge | InsuranceFlow
            | SetIsolatedMargin | RecordLiquidationFill | EmitEvent | StopTrading)
"""Any one decision of the margin engine."""

Decisions = Generator[Decision, Any, None]
"""A sequence of decisions the engine carries out in order, sending each one's result back."""
