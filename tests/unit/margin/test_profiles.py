"""Exchange profiles load as data (margin-rules sources in each file)."""

from __future__ import annotations

import pytest

from backtester.errors import ConfigError
from backtester.margin.profiles import PROFILE_NAMES, load_profile


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_profile_loads_and_names_its_assumptions(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert profile.call_level == 0.8
    assert any("call_level" in a for a in profile.assumptions)
    assert any("liquidation_slippage_rate" in a for a in profile.assumptions)


def test_published_numbers() -> None:
    binance = load_profile("binance-usdm")
    assert binance.default_leverage == 20                                  # [B3] §2.1
    assert binance.liquidation_fee_rate_for("ETH") == 0.005                # [B14] §2.4
    assert binance.liquidation_fee_rate_for("BTC") == 0.003
    deribit = load_profile("deribit")
    assert deribit.liquidation_fee_rate_for("ETH") == 0.009                # [DB13] §7.5
    assert deribit.liquidation_fee_rate_for("BTC", is_option=True) == 0.002
    assert (deribit.daily_settlement_hour_utc, deribit.delivery_twap_minutes) == (8, 30)
    assert deribit.funding_style == "continuous"
    assert load_profile("bybit").option_fee_cap == 0.125                  # [BY8] §5.4
    assert load_profile("okx").has_exchange_margin_ratio


def test_overrides_and_errors() -> None:
    assert load_profile("bybit", {"call_level": 0.9}).call_level == 0.9
    with pytest.raises(ConfigError, match=r"unknown profile 'bybt' \(did you mean 'bybit'\?\)"):
        load_profile("bybt")
    with pytest.raises(ConfigError, match=r"'cal_level': unknown field \(did you mean 'call_level"):
        load_profile("bybit", {"cal_level": 0.9})
