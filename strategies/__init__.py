"""Example strategies, written against the public ``backtester`` API only."""
