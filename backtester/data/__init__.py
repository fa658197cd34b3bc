"""Market data: schema and validation, the Parquet store, feeds, the sample dataset, ccxt fetch."""

from __future__ import annotations
