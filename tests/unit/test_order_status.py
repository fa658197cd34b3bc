"""Order outcomes are kept in the results: filled, cancelled (with the reason) or rejected."""

from __future__ import annotations

from tests.builders import BTC, Scripted, bars, perp, run


def test_orders_table_records_how_each_order_ended():
    # step 0: a buy with attached stop-loss 95 and take-profit 110 (fills at bar 1's open, 100);
    #         a reduce-only sell that is rejected (nothing to reduce yet).
    # bar 2 trades up to 111: the take-profit fills, its stop-loss sibling is cancelled (OCO).
    # step 3: a limit buy at 50 that never fills, cancelled by the strategy at step 4.
    rows = [(100, 100, 100, 100), (100, 101, 99, 100), (100, 111, 100, 108),
            (108, 108, 108, 108), (108, 108, 108, 108), (108, 108, 108, 108)]
    actions = {
        0: lambda ctx: (ctx.buy(BTC, 1, stop_loss=95, take_profit=110),
                        ctx.sell(BTC, 1, reduce_only=True)),
        3: lambda ctx: ctx.buy(BTC, 1, limit=50),
        4: lambda ctx: ctx.cancel(),
    }
    res = run(Scripted(actions), {BTC: bars(rows)}, instruments={BTC: perp()})
    status = dict(zip(res.orders["order_id"], res.orders["status"]))
    entry, rejected, stop, target, limit = sorted(status)
    assert status[entry] == "filled"
    assert status[rejected] == "rejected: reduce_only_would_increase"
    assert status[target] == "filled"
    assert status[stop] == "cancelled: oco"
    assert status[limit] == "cancelled: strategy"
