"""Portfolio margin scenario engine: grid shape, worst scenario, hedging relations."""

from __future__ import annotations

import numpy as np
import pytest

from backtester.errors import ConfigError
from backtester.margin.portfolio import PortfolioParams, PortfolioPosition, portfolio_margin
from backtester.pricing import black76 as b

DAY_MS = 86_400_000
NOW = 0
EXPIRY = 30 * DAY_MS
F0 = 10_000.0


def _option(symbol: str, strike: float, option_type: str, qty: float, *,
            is_linear: bool = False, iv: float = 0.8) -> PortfolioPosition:
    return PortfolioPosition(symbol=symbol, underlying="BTC", kind="option", is_linear=is_linear,
                             qty=qty, strike=strike, option_type=option_type,  # type: ignore[arg-type]
                             expiry_ms=EXPIRY, iv=iv)


def _im(positions: list[PortfolioPosition], currency: str = "BTC",
        params: PortfolioParams | None = None) -> float:
    r = portfolio_margin(positions, underlying_prices={"BTC": F0}, time_ms=NOW, params=params)
    return r.initial_margin[currency]


def test_grid_has_configured_shape_and_labels() -> None:
    params = PortfolioParams.from_dict({"price_range": 0.1, "buckets_count": 2,
                                        "extended_moves": [-0.5, 1.0]})
    r = portfolio_margin([_option("C", 11_000.0, "call", -1.0)], underlying_prices={"BTC": F0},
                         time_ms=NOW, params=params)
    unit = r.units[0]
    assert unit.moves == (-0.1, -0.05, 0.0, 0.05, 0.1)
    assert np.asarray(unit.core_pnl).shape == (5, 3)
    assert len(unit.extended_pnl) == 2
    assert len(unit.scenarios) == 5 * 3 + 2
    assert unit.scenarios[0] == "-10% vol up"
    default = PortfolioParams()
    assert default.core_moves() == (-0.16, -0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12, 0.16)
    assert any("⚠" in a for a in r.assumptions)
    with pytest.raises(ConfigError, match="price_rang"):
        PortfolioParams.from_dict({"price_rang": 0.1})


def test_inverse_perpetual_risk_vector_and_worst_scenario() -> None:
    # §0: the risk vector of an inverse perp is q·x/(1+x) coin per coin of notional. Long 10,000
    # USD face at 10,000 = 1 BTC: worst is −16 %: 1·(−0.16/0.84) = −0.190476 BTC.
    perp = PortfolioPosition(symbol="BTC-PERPETUAL", underlying="BTC", kind="perpetual",
                             is_linear=False, qty=1_000.0, contract_size=10.0, mark_price=F0)
    r = portfolio_margin([perp], underlying_prices={"BTC": F0}, time_ms=NOW)
    unit = r.units[0]
    moves = np.asarray(unit.moves)
    assert np.allclose(np.asarray(unit.core_pnl)[:, 1], moves / (1 + moves))
    assert unit.initial_margin == pytest.approx(0.16 / 0.84)
    assert unit.worst_scenario == "-16% vol up"  # ties: the first listed
    assert unit.maintenance_margin == pytest.approx(0.8 * 0.16 / 0.84)
    # Futures-only units skip the extended table.
    assert unit.extended_pnl == ()
    assert len(unit.scenarios) == 27


def test_linear_future_in_usd_and_separate_units_per_currency() -> None:
    # Linear short 2 BTC at 10,000: worst +16 % → −2·1,600 = −3,200 USD.
    fut = PortfolioPosition(symbol="BTC/USDC", underlying="BTC", kind="future", is_linear=True,
                            qty=-2.0, mark_price=F0, expiry_ms=EXPIRY)
    perp = PortfolioPosition(symbol="BTC-PERPETUAL", underlying="BTC", kind="perpetual",
                             is_linear=False, qty=1_000.0, contract_size=10.0, mark_price=F0)
    r = portfolio_margin([fut, perp], underlying_prices={"BTC": F0}, time_ms=NOW)
    assert r.initial_margin["USD"] == pytest.approx(3_200.0)
    assert r.worst_scenarios["BTC:USD"] == "+16% vol up"
    assert set(r.initial_margin) == {"USD", "BTC"}


def test_short_option_worst_case_uses_vol_up() -> None:
    r = portfolio_margin([_option("P", 9_000.0, "put", -1.0)], underlying_prices={"BTC": F0},
                         time_ms=NOW)
    assert r.units[0].worst_scenario == "-16% vol up"
    # Vol shock at 30 days: (30/30)^0.13 = 1 → σ_up = max(0.8·1.5, 0.5) = 1.2; the loss equals the
    # coin value change of the put from (F0, 0.8) to (0.84·F0, 1.2).
    t = 30 / 365
    v0 = b.inverse_price(F0, 9_000.0, t, 0.8, False)
    v1 = b.inverse_price(0.84 * F0, 9_000.0, t, 1.2, False)
    assert r.units[0].initial_margin == pytest.approx(v1 - v0)
    # Long options: the worst case is vol down near the money.
    long = portfolio_margin([_option("P", 9_000.0, "put", 1.0)], underlying_prices={"BTC": F0},
                            time_ms=NOW)
    assert "vol down" in long.units[0].worst_scenario


def test_hedges_reduce_the_requirement() -> None:
    call = _option("C", 11_000.0, "call", -1.0)
    put = _option("P", 9_000.0, "put", -1.0)
    # A short strangle needs no more than its legs margined apart (max of a sum ≤ sum of maxes).
    assert _im([call, put]) <= _im([call]) + _im([put]) + 1e-12
    # Delta-hedge the short put with an inverse future: face N = −qty·F·(delta − V/F).
    t = 30 / 365
    pa = b.inverse_delta(F0, 9_000.0, t, 0.8, False)
    qty = -1.0
    face = -qty * F0 * pa
    hedge = PortfolioPosition(symbol="BTC-FUT", underlying="BTC", kind="future", is_linear=False,
                              qty=face / 10.0, contract_size=10.0, mark_price=F0,
                              expiry_ms=EXPIRY)
    assert face < 0  # short put = long delta: the hedge is short
    assert _im([put, hedge]) < _im([put])
    # Unhedged legs on a different underlying do not offset.
    eth = PortfolioPosition(symbol="ETH-FUT", underlying="ETH", kind="future", is_linear=False,
                            qty=face / 10.0, contract_size=10.0, mark_price=200.0,
                            expiry_ms=EXPIRY)
    r = portfolio_margin([put, eth], underlying_prices={"BTC": F0, "ETH": 200.0}, time_ms=NOW)
    assert r.initial_margin["BTC"] == pytest.approx(_im([put]))
    assert r.initial_margin["ETH"] > 0


def test_extended_table_counts_large_far_otm_shorts() -> None:
    # A far-OTM short call K 30,000 loses little on ±16 % but a lot on +200 %; with a small
    # dampener the extended table sets the requirement.
    call = _option("C", 30_000.0, "call", -100.0)
    core_only = PortfolioParams(extended_moves=())
    small_damp = PortfolioParams(extended_dampener_coin=1.0)
    assert _im([call], params=small_damp) > _im([call], params=core_only)
    r = portfolio_margin([call], underlying_prices={"BTC": F0}, time_ms=NOW, params=small_damp)
    assert r.units[0].worst_scenario.endswith("vol up")
    assert r.units[0].worst_scenario.startswith("+500%")


def test_missing_vol_and_price_are_errors() -> None:
    no_iv = PortfolioPosition(symbol="X", underlying="BTC", kind="option", is_linear=False,
                              qty=-1.0, strike=F0, option_type="call", expiry_ms=EXPIRY)
    with pytest.raises(ConfigError, match="X"):
        portfolio_margin([no_iv], underlying_prices={"BTC": F0}, time_ms=NOW)
    r = portfolio_margin([no_iv], underlying_prices={"BTC": F0}, vols={"BTC": 0.6}, time_ms=NOW)
    assert r.initial_margin["BTC"] > 0
    with pytest.raises(ConfigError, match="underlying_prices"):
        portfolio_margin([no_iv], underlying_prices={}, vols={"X": 0.6}, time_ms=NOW)
