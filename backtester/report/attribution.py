"""PnL attribution from the journal: every booked amount goes to exactly one component.

The journal is the only source: each entry is classified by its kind (and, for trading fees,
by the liquidity of the fill that paid it), per settlement asset and per instrument. Deposits
are capital, not PnL. The open positions' unrealized PnL at the end of the run is the one
valuation component, converted to a booked-precision Decimal with :func:`~backtester.numeric.
to_money`. By construction the components sum exactly (Decimal) to the equity change
``final wallet - deposits + unrealized at the end``, per asset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

import pandas as pd

from backtester.accounting.journal import Entry, EntryKind
from backtester.errors import DataError
from backtester.numeric import ZERO, to_money

__all__ = [
    "ACCOUNT_LEVEL",
    "COMPONENTS",
    "AssetAttribution",
    "attribute",
    "attribution_from_frames",
    "component_of",
    "entries_from_frame",
    "liquidity_by_order",
    "settle_asset",
    "unrealized_at_end",
]

#: Components in display order. Sign: positive = the component added to equity.
COMPONENTS = ("trading", "option_premium", "fees_maker", "fees_taker", "delivery_fees",
              "funding", "settlement", "liquidation_fees", "insurance_cover",
              "collateral_conversion", "unrealized")

#: Instrument label of entries not tied to one instrument (for example a bankruptcy cover).
ACCOUNT_LEVEL = "(account)"

_BY_KIND = MappingProxyType({
    EntryKind.TRADE_PNL: "trading",
    EntryKind.OPTION_PREMIUM: "option_premium",
    EntryKind.DELIVERY_FEE: "delivery_fees",
    EntryKind.FUNDING: "funding",
    EntryKind.SETTLEMENT: "settlement",
    EntryKind.LIQUIDATION_FEE: "liquidation_fees",
    EntryKind.INSURANCE_COVER: "insurance_cover",
    # a liquidation sells collateral to repay a liability: in each asset the amount sold
    # (negative) or received (positive)
    EntryKind.COLLATERAL_CONVERSION: "collateral_conversion",
})


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetAttribution:
    """The attribution of one settlement asset, all amounts in that asset.

    ``by_symbol[symbol][component]`` and ``totals[component]`` are signed from the account's
    point of view (positive = gain). ``equity_change = final_wallet - deposits +
    unrealized_end`` equals ``sum(totals.values())`` exactly.
    """

    asset: str
    deposits: Decimal
    final_wallet: Decimal
    unrealized_end: Decimal
    by_symbol: Mapping[str, Mapping[str, Decimal]]
    totals: Mapping[str, Decimal]

    @property
    def equity_change(self) -> Decimal:
        """Final wallet minus deposits plus the open positions' unrealized PnL at the end."""
        return self.final_wallet - self.deposits + self.unrealized_end

    @property
    def parts_sum(self) -> Decimal:
        """Sum of every component (equals :attr:`equity_change` exactly)."""
        return sum(self.totals.values(), ZERO)


def component_of(entry: Entry, liquidity: Mapping[int, str]) -> str | None:
    """Return the component an entry belongs to, or None for a deposit (capital).

    A ``fee`` entry whose ``ref`` is ``"order N"`` is a maker fee when order N filled as maker;
    every other trading fee counts as taker.

    >>> from backtester.accounting.journal import Entry, EntryKind
    >>> e = Entry(seq=1, ts_ms=0, kind=EntryKind.FEE, asset="USDT", amount=Decimal("-1"),
    ...           balance_after=Decimal("9"), ref="order 7")
    >>> component_of(e, {7: "maker"})
    'fees_maker'
    """
    if entry.kind is EntryKind.DEPOSIT:
        return None
    if entry.kind is EntryKind.FEE:
        order_id = _order_id(entry.ref)
        is_maker = order_id is not None and liquidity.get(order_id) == "maker"
        return "fees_maker" if is_maker else "fees_taker"
    return _BY_KIND[entry.kind]


def _order_id(ref: str) -> int | None:
    head, _, tail = ref.partition(" ")
    if head != "order" or not tail.strip().isdigit():
        return None
    return int(tail)


def attribute(entries: Iterable[Entry], *, liquidity: Mapping[int, str] | None = None,
              unrealized: Mapping[tuple[str, str], Decimal] | None = None,
              ) -> dict[str, AssetAttribution]:
    """Attribute every journal entry to a component, per asset and per instrument.

    Parameters
    ----------
    entries
        Journal entries (any order; amounts signed, positive = credit).
    liquidity
        ``order_id -> "maker" | "taker" | "liquidation"`` of the fills, to split trading fees.
    unrealized
        ``(asset, symbol) -> unrealized PnL`` of the positions still open at the end, in the
        settlement asset.

    Returns
    -------
    dict
        ``asset -> AssetAttribution``, sorted by asset.
    """
    liq = liquidity or {}
    deposits: dict[str, Decimal] = {}
    wallet: dict[str, Decimal] = {}
    cells: dict[str, dict[str, dict[str, Decimal]]] = {}
    for e in entries:
        wallet[e.asset] = wallet.get(e.asset, ZERO) + e.amount
        if e.kind is EntryKind.SESSION_TRANSFER:
            continue  # session -> wallet pairs (daily settlement) move money, they earn none
        comp = component_of(e, liq)
        if comp is None:
            deposits[e.asset] = deposits.get(e.asset, ZERO) + e.amount
            continue
        row = cells.setdefault(e.asset, {}).setdefault(e.symbol or ACCOUNT_LEVEL, {})
        row[comp] = row.get(comp, ZERO) + e.amount
    upnl_end: dict[str, Decimal] = {}
    for (asset, symbol), amount in (unrealized or {}).items():
        wallet.setdefault(asset, ZERO)
        row = cells.setdefault(asset, {}).setdefault(symbol or ACCOUNT_LEVEL, {})
        row["unrealized"] = row.get("unrealized", ZERO) + amount
        upnl_end[asset] = upnl_end.get(asset, ZERO) + amount
    out: dict[str, AssetAttribution] = {}
    for asset in sorted(wallet):
        by_symbol = {sym: {c: parts.get(c, ZERO) for c in COMPONENTS}
                     for sym, parts in sorted(cells.get(asset, {}).items())}
        totals = {c: sum((row[c] for row in by_symbol.values()), ZERO) for c in COMPONENTS}
        out[asset] = AssetAttribution(asset=asset, deposits=deposits.get(asset, ZERO),
                                      final_wallet=wallet[asset],
                                      unrealized_end=upnl_end.get(asset, ZERO),
                                      by_symbol=by_symbol, totals=totals)
    return out


def entries_from_frame(journal: pd.DataFrame) -> list[Entry]:
    """Rebuild journal entries from ``journal.parquet`` (amounts are exact Decimal strings)."""
    out: list[Entry] = []
    for row in journal.itertuples(index=False):
        try:
            kind = EntryKind(str(row.kind))
            amount = Decimal(str(row.amount))
            balance = Decimal(str(row.balance_after))
        except (ValueError, ArithmeticError) as exc:
            msg = f"journal.parquet row seq={row.seq}: unreadable entry ({exc})"
            raise DataError(msg) from exc
        ts = pd.Timestamp(row.ts)
        out.append(Entry(seq=int(row.seq), ts_ms=int(ts.value // 1_000_000), kind=kind,
                         asset=str(row.asset), amount=amount, balance_after=balance,
                         symbol="" if pd.isna(row.symbol) else str(row.symbol),
                         ref="" if pd.isna(row.ref) else str(row.ref),
                         ledger=str(getattr(row, "ledger", "wallet") or "wallet")))
    return out


def liquidity_by_order(fills: pd.DataFrame) -> dict[int, str]:
    """Map each order id to the liquidity of its fills (``maker``/``taker``/``liquidation``)."""
    if fills.empty:
        return {}
    return {int(o): str(liq) for o, liq in zip(fills["order_id"], fills["liquidity"],
                                                 strict=True)}


def settle_asset(symbol: str) -> str:
    """Return the settlement asset in a unified symbol (``BTC/USDT:USDT`` → ``USDT``).

    >>> settle_asset("BTC/USD:BTC-250328")
    'BTC'
    """
    _, _, tail = symbol.partition(":")
    return tail.split("-")[0] if tail else symbol.split("/")[-1]


def unrealized_at_end(positions: pd.DataFrame, end: pd.Timestamp | None
                      ) -> dict[tuple[str, str], Decimal]:
    """Unrealized PnL of the positions recorded at the last step ``end``, per (asset, symbol).

    Valuations are float in ``positions.parquet``; each is converted once with
    :func:`~backtester.numeric.to_money` (half-even to 1e-12).
    """
    if end is None or positions.empty:
        return {}
    last = positions[(positions["ts"] == end) & (positions["qty"] != 0)]
    out: dict[tuple[str, str], Decimal] = {}
    for sym, upnl in zip(last["symbol"], last["unrealized_pnl"], strict=True):
        value = float(upnl)
        if value != value:  # NaN: no mark; nothing to value
            continue
        key = (settle_asset(str(sym)), str(sym))
        out[key] = out.get(key, ZERO) + to_money(value)
    return out


def attribution_from_frames(journal: pd.DataFrame, fills: pd.DataFrame,
                            positions: pd.DataFrame, *, end: pd.Timestamp | None
                            ) -> dict[str, AssetAttribution]:
    """Run :func:`attribute` on the frames of a run folder (``end`` = last equity step)."""
    return attribute(entries_from_frame(journal), liquidity=liquidity_by_order(fills),
                     unrealized=unrealized_at_end(positions, end))
