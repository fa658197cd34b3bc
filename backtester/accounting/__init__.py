"""Accounting: positions, the multi-asset collateral pool and the journal of booked events."""

from __future__ import annotations

from backtester.accounting.account import Account, Position
from backtester.accounting.journal import Entry, EntryKind, Journal

__all__ = ["Account", "Entry", "EntryKind", "Journal", "Position"]
