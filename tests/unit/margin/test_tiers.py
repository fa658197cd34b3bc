"""Tier tables: lookup, maintenance margin, cum recursion (margin-rules §2.1, §3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backtester.errors import ConfigError
from backtester.margin.tiers import TierTable, load_binance_tiers

OLD_BTCUSDT = [  # older Binance page table, margin-rules §2.1 [B1]
    {"min_notional": 0, "max_notional": 50_000, "mmr": 0.004, "max_leverage": 125},
    {"min_notional": 50_000, "max_notional": 250_000, "mmr": 0.005, "max_leverage": 100},
    {"min_notional": 250_000, "max_notional": 1_000_000, "mmr": 0.01, "max_leverage": 50},
]


def test_cum_recursion_level3_is_1300_on_older_table_b1() -> None:
    # §2.1: level 3 = 250,000·(1% − 0.5%) + 50 = 1,300
    table = TierTable.from_rows(OLD_BTCUSDT)
    assert [t.maintenance_amount for t in table.tiers] == pytest.approx([0.0, 50.0, 1300.0])


def test_cum_recursion_coinm_level5_b2b() -> None:
    # §3 [B2b] (coin notional): level 5 = 50 BTC·(5 % − 2.5 %) + 0.56 = 1.81 BTC
    table = TierTable.from_rows([
        {"min_notional": 25, "mmr": 0.025, "maintenance_amount": 0.56, "max_leverage": 20},
        {"min_notional": 50, "mmr": 0.05, "max_leverage": 10},
    ])
    assert table.tiers[1].maintenance_amount == pytest.approx(1.81)


def test_floor_belongs_to_upper_tier_f1() -> None:
    table = TierTable.from_rows(OLD_BTCUSDT)
    assert table.tier_for(49_999.99).tier == 1
    assert table.tier_for(50_000.0).tier == 2
    assert table.tier_for(0.0).tier == 1
    assert table.tier_for(5e9).tier == 3          # beyond the last cap stays in the last tier
    assert table.max_leverage(60_000.0) == 100


def test_maintenance_margin_tiered_b1() -> None:
    table = TierTable.from_rows(OLD_BTCUSDT)
    # 300,000 × 1% − 1,300 = 1,700
    assert table.maintenance_margin(300_000.0) == pytest.approx(1_700.0)
    # continuous at the floor: 250,000 × 0.5% − 50 = 1,200 = 250,000 × 1% − 1,300
    assert table.maintenance_margin(250_000.0) == pytest.approx(1_200.0)
    assert table.maintenance_margin(249_999.999) == pytest.approx(1_200.0, rel=1e-8)


def test_binance_file_btcusdt_2024_rows(shared_data: Path) -> None:
    # margin-rules §2.1 table, BTC/USDT:USDT 2024-10-24 from data/exchange
    tables = load_binance_tiers(shared_data / "exchange" / "binance_leverage_tiers.json",
                                "BTC/USDT:USDT")
    table = tables["BTC/USDT:USDT"]
    rows = [(t.tier, t.min_notional, t.mmr, t.maintenance_amount, t.max_leverage)
            for t in table.tiers]
    assert rows[:5] == [(1, 0.0, 0.004, 0.0, 125.0), (2, 50_000.0, 0.005, 50.0, 100.0),
                        (3, 600_000.0, 0.0065, 950.0, 75.0),
                        (4, 3_000_000.0, 0.01, 11_450.0, 50.0),
                        (5, 12_000_000.0, 0.02, 131_450.0, 25.0)]
    assert rows[-1] == (12, 1_200_000_000.0, 0.5, 421_481_450.0, 1.0)
    # MM at 1,000,000: 1,000,000 × 0.65 % − 950 = 5,550
    assert table.maintenance_margin(1_000_000.0) == pytest.approx(5_550.0)


def test_derived_cum_matches_every_published_cum(shared_data: Path) -> None:
    # the recursion of §2.1 reproduces Binance's own cum for all 349 symbols of the file
    data = json.loads((shared_data / "exchange" / "binance_leverage_tiers.json").read_text())
    for symbol, rows in data.items():
        published = TierTable.from_ccxt(rows)
        stripped = [{k: v for k, v in r.items() if k != "info"} for r in rows]
        derived = TierTable.from_ccxt(stripped)
        for a, b in zip(published.tiers, derived.tiers):
            assert b.maintenance_amount == pytest.approx(a.maintenance_amount, rel=1e-9,
                                                         abs=1e-6), symbol


def test_ccxt_rows_without_info_derive_cum() -> None:
    rows = [{"tier": 1, "minNotional": 0, "maxNotional": 50_000, "maintenanceMarginRate": 0.004,
             "maxLeverage": 125, "info": {}},
            {"tier": 2, "minNotional": 50_000, "maxNotional": 250_000,
             "maintenanceMarginRate": 0.005, "maxLeverage": 100}]
    table = TierTable.from_ccxt(rows)
    assert table.tiers[1].maintenance_amount == pytest.approx(50.0)


def test_coin_notional_table_coinm() -> None:
    # COIN-M tables are in coin notional; same rule: 0.4 BTC × 0.4 % − 0 = 0.0016 BTC (§3 [B2])
    table = TierTable.from_rows([{"min_notional": 0, "max_notional": 5, "mmr": 0.004,
                                  "max_leverage": 125}])
    assert table.maintenance_margin(0.4) == pytest.approx(0.0016)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "tiers: expected a non-empty list"),
        ([{"min_notional": 0, "mmr": 1.5, "max_leverage": 10}],
         "tiers[0].mmr: expected a number <= 1"),
        ([{"min_notional": 0, "mmr": "x", "max_leverage": 10}], "tiers[0].mmr: expected a number"),
        ([{"min_notional": 0, "mmr": 0.01, "max_leverage": 0}], "tiers[0].max_leverage"),
        ([{"min_notional": 0, "mmr": 0.01, "max_leverage": 10, "rate": 1}], "tiers[0].rate"),
        ([{"min_notional": 0, "mmr": 0.01, "max_leverage": 10},
          {"min_notional": 0, "mmr": 0.02, "max_leverage": 5}], "two tiers start at 0"),
    ],
)
def test_invalid_rows_name_the_field(rows: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TierTable.from_rows(rows)
