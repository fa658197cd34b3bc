"""Assets priced by convention rather than by data: the USD stablecoins.

One set for the whole project: the bar loop (:meth:`backtester.data.feed.Feed.is_stable`), the
margin calculator's snapshots (:mod:`backtester.margin.snapshot`), portfolio margin and the
stress tests value these assets at 1 USD when no index price is given for them.
"""

from __future__ import annotations

__all__ = ["STABLECOINS", "is_stablecoin"]

#: USD stablecoins, valued at 1 USD (the pegs' issuers redeem at par; a depeg is not modelled).
STABLECOINS = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "DAI", "TUSD"})


def is_stablecoin(asset: str) -> bool:
    """Return True for a USD stablecoin valued at 1 USD.

    >>> is_stablecoin("TUSD"), is_stablecoin("BTC")
    (True, False)
    """
    return asset in STABLECOINS
