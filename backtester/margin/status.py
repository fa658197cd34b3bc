"""The margin status of an account or a collateral pool: ok, call or liquidate."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MarginStatus"]


class MarginStatus(StrEnum):
    """Where the margin ratio (maintenance margin / margin balance) stands.

    A ``StrEnum``: members compare equal to their values (``ctx.account.status == "call"``)
    and are written to the result files as those strings. The order of the members is the
    order of the margin kernel's status codes (``kernel.STATUS_OK``, ``STATUS_CALL``,
    ``STATUS_LIQUIDATE``: 0, 1, 2), from best to worst.
    """

    #: below the call level
    OK = "ok"
    #: the ratio reached the profile's call level (``call_level``, 0.8 by default): a margin
    #: call (``on_margin_call``), no action by the exchange yet
    CALL = "call"
    #: maintenance margin reached the margin balance (ratio >= 1): the exchange liquidates
    LIQUIDATE = "liquidate"
