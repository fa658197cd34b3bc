"""The account: wallet balances in several assets, one-way netting positions, the journal.

The account is the only owner of booked money. Every balance change goes through
:meth:`Account.book`, which appends a journal entry, so the journal replays to the balances.
Margin logic (requirements, states, liquidation) lives in ``backtester.margin`` and only reads
the account.
"""

from __future__ import annotations

from decimal import Decimal

from backtester.accounting.journal import Entry, EntryKind, Journal
from backtester.errors import InvariantError
from backtester.instruments import Instrument
from backtester.numeric import ZERO, to_money

__all__ = ["Account", "Position"]

_ENTRY_QUANTUM = Decimal("1e-12")


class Position:
    """A one-way netting position in one instrument.

    ``qty`` is signed contracts (positive long). ``entry_price`` is the average entry price
    (arithmetic for linear contracts and options, harmonic for inverse contracts, as exchanges
    average them). ``realized_pnl``, ``fees`` and ``funding`` accumulate booked amounts in the
    settle currency (fees and funding positive = paid). ``isolated_margin`` is the margin
    allocated to the position in isolated mode (None in cross).
    """

    __slots__ = ("entry_f", "entry_price", "fees", "funding", "instrument", "isolated_margin",
                 "leverage", "qty", "qty_f", "realized_pnl", "symbol")

    def __init__(self, instrument: Instrument, *, leverage: float) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.qty = ZERO
        self.entry_price = ZERO
        self.qty_f = 0.0
        self.entry_f = 0.0
        self.leverage = leverage
        self.isolated_margin: Decimal | None = None
        self.realized_pnl = ZERO
        self.fees = ZERO
        self.funding = ZERO

    @property
    def is_flat(self) -> bool:
        """True when no contracts are held."""
        return self.qty == 0

    @property
    def is_long(self) -> bool:
        """True for a long position."""
        return self.qty > 0

    @property
    def is_short(self) -> bool:
        """True for a short position."""
        return self.qty < 0

    def unrealized_pnl(self, mark: float) -> float:
        """Return the unrealized PnL at ``mark`` in the settle currency (float)."""
        if self.qty_f == 0.0:
            return 0.0
        return self.instrument.pnl(self.qty_f, self.entry_f, mark)

    def __repr__(self) -> str:
        return f"Position({self.symbol} qty={self.qty} entry={self.entry_price})"


class Account:
    """Wallet balances per asset, positions and the journal.

    Parameters
    ----------
    collateral
        Starting balances, asset → amount (booked as deposits at ``start_ms``).
    default_leverage
        Leverage setting of a new position unless :meth:`set_leverage` said otherwise.
    """

    def __init__(self, collateral: dict[str, Decimal], *, start_ms: int,
                 default_leverage: float = 20.0) -> None:
        self.balances: dict[str, Decimal] = {}
        self.positions: dict[str, Position] = {}
        self.journal = Journal()
        self.insurance_fund: dict[str, Decimal] = {}
        #: unsettled session PnL and funding per asset (daily-settlement profiles only)
        self.session: dict[str, Decimal] = {}
        self.session_kinds: frozenset[EntryKind] = frozenset()
        self.leverage: dict[str, float] = {}
        self.default_leverage = default_leverage
        #: bumped by every change of balances, positions, leverage or isolated allocations
        #: (the margin monitor's block of evaluated steps holds while it stands still)
        self.version = 0
        for asset in sorted(collateral):
            self.book(start_ms, EntryKind.DEPOSIT, asset, collateral[asset], ref="initial")

    # -- booking --------------------------------------------------------------------------
    def book(self, ts_ms: int, kind: EntryKind, asset: str, amount: Decimal, *,
             symbol: str = "", ref: str = "", ledger: str | None = None) -> Entry:
        """Book ``amount`` (positive = credit) in ``asset`` and journal it.

        Kinds in :attr:`session_kinds` (a daily-settlement profile's trade PnL and funding) go
        to the session ledger unless ``ledger`` says otherwise.
        """
        if not isinstance(amount, Decimal):
            msg = f"booked amounts must be Decimal, got {type(amount).__name__} for {kind}"
            raise InvariantError(msg)
        if ledger is None:
            ledger = "session" if kind in self.session_kinds else "wallet"
        book = self.balances if ledger == "wallet" else self.session
        self.version += 1
        balance = book.get(asset, ZERO) + amount
        book[asset] = balance
        entries = self.journal.entries  # Journal.append, without its call
        entry = Entry(seq=len(entries), ts_ms=ts_ms, kind=kind, asset=asset,
                      amount=amount, balance_after=balance, symbol=symbol, ref=ref,
                      ledger=ledger)
        entries.append(entry)
        return entry

    def settle_session(self, ts_ms: int) -> dict[str, Decimal]:
        """Move every session balance into the wallet (the daily settlement); return them."""
        moved = {a: v for a, v in sorted(self.session.items()) if v != 0}
        for asset, amount in moved.items():
            self.book(ts_ms, EntryKind.SESSION_TRANSFER, asset, -amount, ref="daily settlement",
                      ledger="session")
            self.book(ts_ms, EntryKind.SESSION_TRANSFER, asset, amount, ref="daily settlement",
                      ledger="wallet")
        return moved

    def fund_insurance(self, asset: str, amount: Decimal) -> None:
        """Record an insurance-fund flow (positive: the fund receives; negative: it pays)."""
        self.insurance_fund[asset] = self.insurance_fund.get(asset, ZERO) + amount

    # -- positions ------------------------------------------------------------------------
    def position(self, instrument: Instrument) -> Position:
        """Return the position of an instrument, creating a flat one on first use."""
        pos = self.positions.get(instrument.symbol)
        if pos is None:
            pos = Position(instrument, leverage=self.leverage.get(instrument.symbol,
                                                                   self.default_leverage))
            self.positions[instrument.symbol] = pos
        return pos

    def set_leverage(self, symbol: str, leverage: float) -> None:
        """Set the leverage used for the initial margin of ``symbol`` (> 0)."""
        if not leverage > 0:
            msg = f"leverage for {symbol} must be positive, got {leverage}"
            raise InvariantError(msg)
        self.leverage[symbol] = leverage
        self.version += 1
        pos = self.positions.get(symbol)
        if pos is not None:
            pos.leverage = leverage

    def set_isolated_margin(self, pos: Position, amount: Decimal | None) -> None:
        """Set the isolated margin allocated to ``pos`` (None: none; cross margin)."""
        pos.isolated_margin = amount
        self.version += 1

    def apply_fill(self, ts_ms: int, instrument: Instrument, qty: Decimal, price: Decimal,
                   fee: Decimal, *, ref: str = "", fee_kind: EntryKind = EntryKind.FEE) -> Decimal:
        """Apply a fill of signed ``qty`` contracts at ``price``; book realized PnL and fee.

        Options book their premium as cash (``-qty * cs * price``: a buy debits, a sell credits)
        and carry no realized PnL. Returns the realized PnL booked (0 for options).
        """
        pos = self.position(instrument)
        settle = instrument.settle
        realized = ZERO
        if instrument.is_option:
            premium = to_money(-qty * instrument.contract_size * price)
            if premium != 0:
                self.book(ts_ms, EntryKind.OPTION_PREMIUM, settle, premium,
                          symbol=instrument.symbol, ref=ref)
            self._net(pos, qty, price)
        else:
            old = pos.qty
            if old != 0 and (old > 0) != (qty > 0):
                # the part of the old position this fill closes (signed like the old position)
                closed = -qty if abs(qty) <= abs(old) else old
                realized = instrument.pnl_exact(closed, pos.entry_price, price)
                if realized != 0:
                    self.book(ts_ms, EntryKind.TRADE_PNL, settle, realized,
                              symbol=instrument.symbol, ref=ref)
                pos.realized_pnl += realized
            self._net(pos, qty, price)
        if fee != 0:
            self.book(ts_ms, fee_kind, settle, -fee, symbol=instrument.symbol, ref=ref)
            pos.fees += fee
        return realized

    def charge_position_fee(self, ts_ms: int, symbol: str, kind: EntryKind, fee: Decimal, *,
                            ref: str = "") -> Entry:
        """Charge ``fee`` (settle asset of ``symbol``; positive = paid by the account) as
        ``kind`` — e.g. a liquidation fee booked apart from its fill — and add it to the
        position's fee tally."""
        pos = self.positions[symbol]
        entry = self.book(ts_ms, kind, pos.instrument.settle, -fee, symbol=symbol, ref=ref)
        pos.fees += fee
        return entry

    def close_settled(self, pos: Position) -> None:
        """Close ``pos`` without booking anything: its value was settled by separate entries
        (an option's expiry payoff, booked as ``SETTLEMENT`` by the caller)."""
        if pos.qty != 0:
            self._net(pos, -pos.qty, pos.entry_price)

    def _net(self, pos: Position, qty: Decimal, price: Decimal) -> None:
        self.version += 1
        old = pos.qty
        new = old + qty
        inst = pos.instrument
        if old == 0 or (old > 0) == (qty > 0):
            # increasing (or opening): average the entry price
            if old == 0:
                entry = price
            elif inst.is_linear or inst.is_option:
                entry = (abs(old) * pos.entry_price + abs(qty) * price) / abs(new)
            else:
                entry = abs(new) / (abs(old) / pos.entry_price + abs(qty) / price)
            pos.entry_price = entry.quantize(_ENTRY_QUANTUM) if old != 0 else entry
        elif new == 0:
            pos.entry_price = ZERO
        elif (new > 0) != (old > 0):
            pos.entry_price = price  # flipped: the remainder opens at the fill price
        pos.qty = new
        pos.qty_f = float(new)
        pos.entry_f = float(pos.entry_price)

    def open_positions(self) -> list[Position]:
        """Return the non-flat positions, sorted by symbol."""
        return [p for _, p in sorted(self.positions.items()) if p.qty != 0]

    def check_replay(self) -> None:
        """Raise InvariantError unless the journal replays exactly to the balances."""
        for ledger, balances in (("wallet", self.balances), ("session", self.session)):
            replayed = self.journal.replay(ledger)
            for asset, bal in balances.items():
                if replayed.get(asset, ZERO) != bal:
                    msg = (f"journal replays {ledger} {asset} to {replayed.get(asset)} but "
                           f"the balance is {bal}")
                    raise InvariantError(msg)
