"""One run and its results: preparing and running a backtest, its frames, metrics and files.

* :mod:`backtester.runs.runner` — ``prepare`` → ``run_prepared``: data, feed, profile, engine,
  result collection (``backtester.run`` in :mod:`backtester.api` is the public entry point).
* :mod:`backtester.runs.modes` — re-runs: the margin-mode comparison and survival collateral.
* :mod:`backtester.runs.frames` — the result frames built from the engine's records.
* :mod:`backtester.runs.capital` — capital-efficiency metrics.
* :mod:`backtester.runs.results` — :class:`~backtester.runs.results.BacktestResult`: frames,
  headline metrics and the files of a run (public as ``backtester.BacktestResult``).
"""

from __future__ import annotations
