"""PnL attribution: every journal entry lands in one component; parts sum exactly."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd

from backtester.accounting.journal import Entry, EntryKind
from backtester.report.attribution import (
    ACCOUNT_LEVEL,
    COMPONENTS,
    attribute,
    attribution_from_frames,
    entries_from_frame,
    settle_asset,
    unrealized_at_end,
)

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
INV = "BTC/USD:BTC"


def _entries(rows: list[tuple[EntryKind, str, str, str, str]]) -> list[Entry]:
    out: list[Entry] = []
    balances: dict[str, Decimal] = {}
    for seq, (kind, asset, amount, symbol, ref) in enumerate(rows):
        balances[asset] = balances.get(asset, Decimal(0)) + Decimal(amount)
        out.append(Entry(seq=seq, ts_ms=seq * 3_600_000, kind=kind, asset=asset,
                         amount=Decimal(amount), balance_after=balances[asset], symbol=symbol,
                         ref=ref))
    return out


JOURNAL = [
    (EntryKind.DEPOSIT, "USDT", "10000", "", "initial"),
    (EntryKind.FEE, "USDT", "-1.500000000000", BTC, "order 1"),      # maker fill
    (EntryKind.FEE, "USDT", "-2.250000000000", ETH, "order 2"),      # taker fill
    (EntryKind.TRADE_PNL, "USDT", "120.5", BTC, "order 3"),
    (EntryKind.FEE, "USDT", "-2.41", BTC, "order 3"),                 # taker fill
    (EntryKind.FUNDING, "USDT", "-3.3", ETH, "rate 0.0001"),
    (EntryKind.FUNDING, "USDT", "0.7", BTC, "rate -0.0001"),
    (EntryKind.TRADE_PNL, "USDT", "-300", ETH, "liquidation"),
    (EntryKind.LIQUIDATION_FEE, "USDT", "-10", ETH, "liquidation"),
    (EntryKind.INSURANCE_COVER, "USDT", "4", "", "bankruptcy"),
    (EntryKind.DEPOSIT, "BTC", "1", "", "initial"),
    (EntryKind.TRADE_PNL, "BTC", "0.00012345", INV, "order 4"),
    (EntryKind.FEE, "BTC", "-0.00000100", INV, "order 4"),
]
LIQUIDITY = {1: "maker", 2: "taker", 3: "taker", 4: "maker"}


def test_components_by_hand_and_exact_sum() -> None:
    # USDT by hand: trading 120.5 - 300 = -179.5; maker fees -1.5; taker fees -2.25 - 2.41
    # = -4.66; funding -3.3 + 0.7 = -2.6; liquidation fees -10; insurance cover +4;
    # unrealized at the end +7.123456789012 (BTC perp still open).
    # Equity change = final wallet (10000 - 1.5 - 2.25 + 120.5 - 2.41 - 3.3 + 0.7 - 300 - 10
    # + 4 = 9805.74) - deposits 10000 + 7.123456789012 = -187.136543210988.
    unrealized = {("USDT", BTC): Decimal("7.123456789012")}
    out = attribute(_entries(JOURNAL), liquidity=LIQUIDITY, unrealized=unrealized)

    usdt = out["USDT"]
    assert usdt.totals["trading"] == Decimal("-179.5")
    assert usdt.totals["fees_maker"] == Decimal("-1.5")
    assert usdt.totals["fees_taker"] == Decimal("-4.66")
    assert usdt.totals["funding"] == Decimal("-2.6")
    assert usdt.totals["liquidation_fees"] == Decimal("-10")
    assert usdt.totals["insurance_cover"] == Decimal("4")
    assert usdt.totals["unrealized"] == Decimal("7.123456789012")
    assert usdt.final_wallet == Decimal("9805.74")
    assert usdt.equity_change == Decimal("-187.136543210988")
    assert usdt.parts_sum == usdt.equity_change  # exact, Decimal
    assert usdt.by_symbol[ETH]["trading"] == Decimal("-300")
    assert usdt.by_symbol[ACCOUNT_LEVEL]["insurance_cover"] == Decimal("4")
    # per-instrument rows add up to the totals, component by component
    for comp in COMPONENTS:
        assert sum((row[comp] for row in usdt.by_symbol.values()), Decimal(0)) \
            == usdt.totals[comp]

    btc = out["BTC"]  # coin-margined: attributed in BTC, never mixed with USDT
    assert btc.totals["trading"] == Decimal("0.00012345")
    assert btc.totals["fees_maker"] == Decimal("-0.00000100")
    assert btc.equity_change == Decimal("0.00012245") == btc.parts_sum


def test_fee_of_unknown_order_counts_as_taker() -> None:
    rows = [(EntryKind.DEPOSIT, "USDT", "100", "", "initial"),
            (EntryKind.FEE, "USDT", "-1", BTC, "manual")]
    out = attribute(_entries(rows))
    assert out["USDT"].totals["fees_taker"] == Decimal("-1")
    assert out["USDT"].equity_change == Decimal("-1") == out["USDT"].parts_sum


def test_no_entries_but_deposit_is_zero_change() -> None:
    out = attribute(_entries([(EntryKind.DEPOSIT, "USDT", "5000", "", "initial")]))
    assert out["USDT"].equity_change == 0
    assert out["USDT"].parts_sum == 0
    assert out["USDT"].by_symbol == {}


def test_random_journals_sum_exactly() -> None:
    # Seeded random journals with awkward amounts (12 decimals) of every kind.
    rng = np.random.default_rng(42)
    # (session transfers come in pairs that cancel; they are not drawn singly here)
    kinds = [k for k in EntryKind if k not in (EntryKind.DEPOSIT, EntryKind.SESSION_TRANSFER)]
    for _ in range(50):
        rows = [(EntryKind.DEPOSIT, "USDT", "1000", "", "initial")]
        for _ in range(int(rng.integers(0, 40))):
            kind = kinds[int(rng.integers(len(kinds)))]
            amount = f"{rng.normal(0, 50):.12f}"
            sym = [BTC, ETH, ""][int(rng.integers(3))]
            rows.append((kind, "USDT", amount, sym, f"order {int(rng.integers(1, 9))}"))
        liq = {i: ("maker" if i % 2 else "taker") for i in range(1, 9)}
        upnl = {("USDT", BTC): Decimal(f"{rng.normal(0, 10):.12f}")}
        a = attribute(_entries(rows), liquidity=liq, unrealized=upnl)["USDT"]
        assert a.parts_sum == a.equity_change


def test_frames_round_trip_and_unrealized_from_positions() -> None:
    entries = _entries(JOURNAL)
    journal = pd.DataFrame([{"seq": e.seq, "ts": pd.Timestamp(e.ts_ms, unit="ms", tz="UTC"),
                             "kind": e.kind.value, "asset": e.asset, "amount": str(e.amount),
                             "balance_after": str(e.balance_after), "symbol": e.symbol,
                             "ref": e.ref} for e in entries])
    assert entries_from_frame(journal) == entries
    fills = pd.DataFrame({"order_id": list(LIQUIDITY), "liquidity": list(LIQUIDITY.values())})
    end = pd.Timestamp("2025-01-02", tz="UTC")
    positions = pd.DataFrame({"ts": [end - pd.Timedelta(hours=1), end, end],
                              "symbol": [BTC, BTC, INV], "qty": [1.0, 1.0, 0.0],
                              "unrealized_pnl": [99.0, 7.123456789012, 5.0]})
    # only the last step's non-zero positions count
    assert unrealized_at_end(positions, end) == {("USDT", BTC): Decimal("7.123456789012")}
    out = attribution_from_frames(journal, fills, positions, end=end)
    assert out["USDT"].equity_change == Decimal("-187.136543210988") == out["USDT"].parts_sum


def test_settle_asset_of_unified_symbols() -> None:
    assert settle_asset(BTC) == "USDT"
    assert settle_asset("BTC/USD:BTC-250328") == "BTC"
    assert settle_asset("BTC/USDC:USDC-250131-105000-C") == "USDC"
