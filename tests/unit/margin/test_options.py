"""Standard option margin and fees: exchange examples (docs/margin-rules.md), hand-worked cases."""

from __future__ import annotations

import pytest

from backtester.errors import ConfigError
from backtester.margin.options import option_fee, option_requirements


def test_bybit_short_option_maintenance_example() -> None:
    # §5.4 [BY9]: f = 3 %, liq fee 0.2 %, index 30,000, mark 300:
    # max(0.03·30,000, 0.03·300) + 300 + 0.002·30,000 = 900 + 300 + 60 = 1,260 USDC;
    # account MM% on a 10,000 balance = 12.6 %.
    r = option_requirements(style="bybit", option_type="put", strike=28_000.0,
                            underlying=30_000.0, mark=300.0, qty=-1.0,
                            maintenance_rate=0.03, liquidation_fee_rate=0.002)
    assert r.maintenance_margin == pytest.approx(1_260.0)
    assert r.maintenance_margin / 10_000.0 == pytest.approx(0.126)
    # IM (older text, ⚠): put OTM 2,000 → max(max(4,500 − 2,000, 3,000) + 300, 1,260) = 3,300.
    assert r.initial_margin == pytest.approx(3_300.0)


def test_bybit_fee_example() -> None:
    # §5.4 [BY8]: 0.3 BTC call at 3,500, index 42,000, taker 0.03 %: premium 0.3·3,500 = 1,050;
    # fee min(0.0003·42,000, 0.125·3,500)·0.3 = 12.6·0.3 = 3.78; total 1,053.78 USDC.
    fee = option_fee(index=42_000.0, option_price=3_500.0, qty=0.3, taker_rate=0.0003)
    assert fee == pytest.approx(3.78)
    assert 0.3 * 3_500.0 + fee == pytest.approx(1_053.78)
    # The cap binds for a cheap option: min(12.6, 0.125·50) = 6.25 per unit.
    assert option_fee(index=42_000.0, option_price=50.0, qty=-2.0,
                      taker_rate=0.0003) == pytest.approx(12.5)


def test_deribit_short_call_and_put_worked_by_hand() -> None:
    # Short call K 12,000, U 10,000 (OTM 2,000 = 0.2 U), mark 0.02 BTC, 3 BTC:
    # IM = max(0.15 − 0.2, 0.10) + 0.02 = 0.12 → 0.36 BTC; MM = 0.075 + 0.02 = 0.095 → 0.285.
    c = option_requirements(style="deribit", option_type="call", strike=12_000.0,
                            underlying=10_000.0, mark=0.02, qty=-3.0)
    assert c.initial_margin == pytest.approx(0.36)
    assert c.maintenance_margin == pytest.approx(0.285)
    # Short put K 9,500, U 10,000 (OTM 500 = 0.05 U), mark 0.03: IM = max(0.15 − 0.05, 0.10)
    # + 0.03 = 0.13; MM = max(0.075, 0.00225) + 0.03 = 0.105.
    p = option_requirements(style="deribit", option_type="put", strike=9_500.0,
                            underlying=10_000.0, mark=0.03, qty=-1.0)
    assert p.initial_margin == pytest.approx(0.13)
    assert p.maintenance_margin == pytest.approx(0.105)
    # ITM call K 8,000: OTM 0, IM = 0.15 + mark.
    itm = option_requirements(style="deribit", option_type="call", strike=8_000.0,
                              underlying=10_000.0, mark=0.21, qty=-1.0)
    assert itm.initial_margin == pytest.approx(0.36)


def test_linear_form_is_deribit_times_underlying() -> None:
    # Bit.com linear analogue (§7.3 [X14]): amounts in quote = coin amounts × U when the mark is
    # converted the same way. Put K 1,800 on ETH U 2,000 (OTM 200), mark 30 USD:
    # MM = max(150, 2.25) + 30 = 180; IM = max(max(300 − 200, 200) + 30, 180) = 230.
    r = option_requirements(style="linear", option_type="put", strike=1_800.0,
                            underlying=2_000.0, mark=30.0, qty=-1.0)
    assert r.maintenance_margin == pytest.approx(180.0)
    assert r.initial_margin == pytest.approx(230.0)
    coin = option_requirements(style="deribit", option_type="put", strike=1_800.0,
                               underlying=2_000.0, mark=30.0 / 2_000.0, qty=-1.0)
    assert coin.initial_margin * 2_000.0 == pytest.approx(r.initial_margin)


def test_longs_need_no_margin_and_contract_size_scales() -> None:
    long = option_requirements(style="deribit", option_type="call", strike=12_000.0,
                               underlying=10_000.0, mark=0.02, qty=5.0)
    assert (long.initial_margin, long.maintenance_margin) == (0.0, 0.0)
    one = option_requirements(style="bybit", option_type="call", strike=32_000.0,
                              underlying=30_000.0, mark=300.0, qty=-1.0)
    tenth = option_requirements(style="bybit", option_type="call", strike=32_000.0,
                                underlying=30_000.0, mark=300.0, qty=-10.0, contract_size=0.01)
    assert tenth.maintenance_margin == pytest.approx(0.1 * one.maintenance_margin)


def test_btc_margin_of_short_puts_grows_as_btc_falls() -> None:
    # Short 1 BTC put K 10,000 on BTC collateral, marks at intrinsic (expiry-like), by hand:
    # U 10,000: mark 0            → MM = 0.075 + 0 = 0.075 BTC;   IM = 0.15 + 0 = 0.15 BTC
    # U  8,000: mark 2,000/8,000 = 0.25 → MM = 0.075 + 0.25 = 0.325; IM = max(0.15 + 0.25, 0.325)
    #           = 0.40 BTC
    # U  5,000: mark 1.0          → MM = max(0.075, 0.075) + 1.0 = 1.075; IM = 1.15 BTC
    # while the BTC collateral itself is worth less USD: margin in BTC rises on both counts.
    expected = {10_000.0: (0.15, 0.075), 8_000.0: (0.40, 0.325), 5_000.0: (1.15, 1.075)}
    previous = 0.0
    for u, (im, mm) in expected.items():
        mark = max(0.0, 10_000.0 - u) / u
        r = option_requirements(style="deribit", option_type="put", strike=10_000.0,
                                underlying=u, mark=mark, qty=-1.0)
        assert r.initial_margin == pytest.approx(im)
        assert r.maintenance_margin == pytest.approx(mm)
        assert r.maintenance_margin > previous
        previous = r.maintenance_margin


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"style": "okx"}, "style"), ({"option_type": "straddle"}, "option_type"),
     ({"strike": 0.0}, "strike"), ({"underlying": -1.0}, "underlying"),
     ({"mark": -0.1}, "mark"), ({"contract_size": 0.0}, "contract_size")],
)
def test_bad_inputs_name_the_field(kwargs: dict[str, object], name: str) -> None:
    args: dict[str, object] = {"style": "deribit", "option_type": "call", "strike": 1.0,
                               "underlying": 1.0, "mark": 0.1, "qty": -1.0} | kwargs
    with pytest.raises(ConfigError, match=name):
        option_requirements(**args)  # type: ignore[arg-type]
