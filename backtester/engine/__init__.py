"""The bar loop and the run's engine (DESIGN §2), one concept per module.

* :mod:`~backtester.engine.core` — :class:`Engine`: wiring (data, account, margin, strategy)
  and the loop over clock steps, hook delivery, the views the context reads;
* :mod:`~backtester.engine.orderbook` — submission, validation, working orders, cancels,
  OCO and attached exits;
* :mod:`~backtester.engine.fills` — execution along the bar's path, fees, fill records,
  liquidation fills;
* :mod:`~backtester.engine.settlement` — funding, daily sessions, expiry;
* :mod:`~backtester.engine.ledger` — books what the margin engine decides (liquidation fills,
  fees, insurance flows, collateral sales, isolated allocations, margin events);
* :mod:`~backtester.engine.recorder` — the per-step records (account series, positions,
  greeks, user series);
* :mod:`~backtester.engine.base` — the state the parts share, declared for the type checker.

The margin monitor is :class:`backtester.margin.state.MarginEngine`, which reads the run
through :class:`backtester.margin.protocols.MarginHost` and returns decisions
(:mod:`backtester.margin.decisions`) that the ledger books.
"""

from __future__ import annotations

from backtester.engine.core import Engine

__all__ = ["Engine"]
