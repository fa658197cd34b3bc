"""The run report: one self-contained ``report.html`` per run folder (DESIGN §8).

quantstats is imported only inside :mod:`backtester.report.tearsheet`, lazily.
"""

from __future__ import annotations

from backtester.report.page import write_report

__all__ = ["write_report"]
