"""The journal: every booked amount, in order, replayable to the balances.

Every change of a wallet balance is one :class:`Entry`. Replaying the entries from the
deposits reproduces the balances exactly (Decimal arithmetic, no rounding on replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from backtester.numeric import ZERO

__all__ = ["Entry", "EntryKind", "Journal"]


class EntryKind(StrEnum):
    """What a booked amount is. Sign: positive credits the wallet, negative debits it."""

    DEPOSIT = "deposit"
    TRADE_PNL = "trade_pnl"
    FEE = "fee"
    FUNDING = "funding"
    SETTLEMENT = "settlement"
    DELIVERY_FEE = "delivery_fee"
    OPTION_PREMIUM = "option_premium"
    LIQUIDATION_FEE = "liquidation_fee"
    INSURANCE_COVER = "insurance_cover"
    SESSION_TRANSFER = "session_transfer"
    #: collateral sold to repay a liability (a negative balance) in a liquidation: a debit of
    #: the asset sold and a credit of the asset repaid
    COLLATERAL_CONVERSION = "collateral_conversion"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One booked amount.

    ``amount`` is signed from the account's point of view (positive = credit) in ``asset``;
    ``balance_after`` is the balance of ``asset`` in ``ledger`` after the entry. ``ledger`` is
    ``wallet``, or ``session`` for profiles with a daily settlement (Deribit), whose session
    PnL and funding reach the wallet only at the settlement (a ``session_transfer`` pair).
    """

    seq: int
    ts_ms: int
    kind: EntryKind
    asset: str
    amount: Decimal
    balance_after: Decimal
    symbol: str = ""
    ref: str = ""
    ledger: str = "wallet"


class Journal:
    """An append-only list of entries with a replay check."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, entry: Entry) -> None:
        """Append one entry (the account calls this; nothing else should)."""
        self.entries.append(entry)

    def replay(self, ledger: str = "wallet") -> dict[str, Decimal]:
        """Return the balances of ``ledger`` obtained by summing its entries per asset."""
        out: dict[str, Decimal] = {}
        for e in self.entries:
            if e.ledger == ledger:
                out[e.asset] = out.get(e.asset, ZERO) + e.amount
        return out

    def total(self, kind: EntryKind, asset: str | None = None,
              symbol: str | None = None) -> Decimal:
        """Sum the amounts of one kind (optionally one asset / one symbol)."""
        return sum((e.amount for e in self.entries if e.kind is kind
                    and (asset is None or e.asset == asset)
                    and (symbol is None or e.symbol == symbol)), ZERO)
