"""Market data: schema and validation, the Parquet store, feeds, the sample dataset, ccxt fetch.

``backtester.data.fetch`` (the only module importing ccxt) is not imported here: import it
explicitly when downloading.
"""

from __future__ import annotations

from backtester.data.catalog import Dataset, list_datasets, load_dataset
from backtester.data.schema import GapReport, Kind
from backtester.data.store import Store

__all__ = ["Dataset", "GapReport", "Kind", "Store", "list_datasets", "load_dataset"]
