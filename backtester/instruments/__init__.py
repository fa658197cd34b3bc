"""Instruments: frozen contract specifications and all contract math."""

from __future__ import annotations

from backtester.instruments.instrument import (
    Instrument,
    InstrumentKind,
    OptionType,
    instrument_from_ccxt,
    instrument_from_symbol,
    is_option_symbol,
    symbol_underlying,
)

__all__ = [
    "Instrument",
    "InstrumentKind",
    "OptionType",
    "instrument_from_ccxt",
    "instrument_from_symbol",
    "is_option_symbol",
    "symbol_underlying",
]
