"""Account: netting positions, averaging, flips, realized PnL and the journal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backtester.accounting import Account, EntryKind
from backtester.errors import InvariantError
from backtester.instruments import instrument_from_symbol

LIN = instrument_from_symbol("BTC/USDT:USDT")
INV = instrument_from_symbol("BTC/USD:BTC")  # 100 USD per contract
D = Decimal


def _acct(asset: str = "USDT", amount: str = "10000") -> Account:
    return Account({asset: D(amount)}, start_ms=0)


def test_linear_entry_averages_arithmetically() -> None:
    # 1 @ 100 then 3 @ 200: (100 + 600) / 4 = 175
    a = _acct()
    a.apply_fill(1, LIN, D(1), D(100), D(0))
    a.apply_fill(2, LIN, D(3), D(200), D(0))
    pos = a.positions[LIN.symbol]
    assert pos.qty == D(4)
    assert pos.entry_price == D(175)


def test_inverse_entry_averages_harmonically() -> None:
    # 10 @ 40,000 and 10 @ 50,000 (1,000 USD face each): 20 / (10/40,000 + 10/50,000)
    # = 20 / 0.00045 = 44,444.444444444444... (quantized to 1e-12)
    a = _acct("BTC", "1")
    a.apply_fill(1, INV, D(10), D(40_000), D(0))
    a.apply_fill(2, INV, D(10), D(50_000), D(0))
    pos = a.positions[INV.symbol]
    assert pos.entry_price == D("44444.444444444444")
    # closing all at 44,444.44... realizes ~0: 2,000 x (1/e - 1/e)
    realized = a.apply_fill(3, INV, D(-20), D("44444.444444444444"), D(0))
    assert realized == D(0)


def test_partial_close_realizes_on_the_closed_part_only() -> None:
    # long 2 @ 100, sell 0.5 @ 120: realized 0.5 x 20 = 10; entry stays 100
    a = _acct()
    a.apply_fill(1, LIN, D(2), D(100), D(0))
    realized = a.apply_fill(2, LIN, D("-0.5"), D(120), D(0))
    assert realized == D(10)
    pos = a.positions[LIN.symbol]
    assert (pos.qty, pos.entry_price) == (D("1.5"), D(100))


def test_flip_through_zero() -> None:
    # long 2 @ 100, sell 3 @ 110: closes 2 (realized 2 x 10 = 20), opens short 1 @ 110
    a = _acct()
    a.apply_fill(1, LIN, D(2), D(100), D("0.1"))
    realized = a.apply_fill(2, LIN, D(-3), D(110), D("0.165"))
    assert realized == D(20)
    pos = a.positions[LIN.symbol]
    assert (pos.qty, pos.entry_price) == (D(-1), D(110))
    # 10,000 + 20 - 0.1 - 0.165
    assert a.balances["USDT"] == D("10019.735")
    assert pos.fees == D("0.265")


def test_inverse_short_realizes_in_coin() -> None:
    # short 10 (1,000 USD) @ 50,000, cover @ 40,000: -1000 x (1/50,000 - 1/40,000) = +0.005 BTC
    a = _acct("BTC", "1")
    a.apply_fill(1, INV, D(-10), D(50_000), D(0))
    assert a.apply_fill(2, INV, D(10), D(40_000), D(0)) == D("0.005")
    assert a.balances["BTC"] == D("1.005")


def test_journal_replays_to_balances_and_records_each_flow() -> None:
    a = _acct()
    a.apply_fill(1, LIN, D(1), D(100), D("0.05"))
    a.apply_fill(2, LIN, D(-1), D(90), D("0.045"))
    kinds = [e.kind for e in a.journal.entries]
    assert kinds == [EntryKind.DEPOSIT, EntryKind.FEE, EntryKind.TRADE_PNL, EntryKind.FEE]
    assert a.journal.replay() == a.balances
    assert a.balances["USDT"] == D("10000") - D("0.05") - D(10) - D("0.045")
    assert a.journal.entries[-1].balance_after == a.balances["USDT"]
    assert a.journal.total(EntryKind.FEE) == D("-0.095")
    a.check_replay()


def test_broken_replay_is_an_invariant_error() -> None:
    a = _acct()
    a.balances["USDT"] += D(1)  # simulate a bug: a balance changed outside book()
    with pytest.raises(InvariantError, match="journal replays wallet USDT"):
        a.check_replay()


def test_book_refuses_floats() -> None:
    a = _acct()
    with pytest.raises(InvariantError, match="must be Decimal"):
        a.book(0, EntryKind.FEE, "USDT", 0.1)  # type: ignore[arg-type]


def test_option_premium_is_cash() -> None:
    # buy 2 calls at 50 USDT premium: -100 USDT cash, no realized PnL
    call = instrument_from_symbol("ETH/USDT:USDT-231229-800-C")
    a = _acct()
    assert a.apply_fill(1, call, D(2), D(50), D(0)) == D(0)
    assert a.journal.entries[-1].kind is EntryKind.OPTION_PREMIUM
    assert a.balances["USDT"] == D(9900)
