"""Mark candles of another timeframe on the trade bars (issue 16 item 1), worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from backtester.data.marks import MarkRule, marks_on_trade_bars

M5, H = 300_000, 3_600_000


def _candles(rows: list[tuple[float, float, float, float]]) -> dict[str, np.ndarray]:
    o, h, lo, c = (np.asarray(x, dtype="float64") for x in zip(*rows, strict=True))
    return {"open": o, "high": h, "low": lo, "close": c}


def test_finer_marks_are_aggregated_into_the_trade_bar_16() -> None:
    # two 5m trade bars (00:00, 00:05); 1m marks 00:00..00:05 (00:02 missing) and one at
    # 00:09 that closes at 00:10 with the second bar; a 1m mark at 00:10 belongs to no bar
    ts = np.array([0, M5], dtype="int64")
    trade = _candles([(10, 11, 9, 10), (10, 11, 9, 10)])
    mts = np.array([0, 60_000, 180_000, 240_000, 300_000, 540_000, 600_000], dtype="int64")
    mark = _candles([(10.0, 10.2, 9.9, 10.1), (10.1, 10.6, 10.0, 10.5), (10.5, 10.5, 9.7, 9.8),
                     (9.8, 10.0, 9.8, 9.95), (9.95, 10.0, 9.9, 10.0), (10.0, 10.3, 10.0, 10.2),
                     (10.2, 12.0, 8.0, 10.0)])
    out = marks_on_trade_bars(ts, M5, trade, mts, 60_000, mark)
    assert out.rule is MarkRule.AGGREGATED
    # bar 00:00: first open 10.0, highest high 10.6, lowest low 9.7, last close (00:04) 9.95
    assert [out.open[0], out.high[0], out.low[0], out.close[0]] == [10.0, 10.6, 9.7, 9.95]
    # bar 00:05: the 00:05 and 00:09 minutes (not the 00:10 one, which closes after it)
    assert [out.open[1], out.high[1], out.low[1], out.close[1]] == [9.95, 10.3, 9.9, 10.2]
    assert not out.missing.any()


def test_coarser_marks_carry_the_trade_candle_by_the_last_closed_ratio_16() -> None:
    # 5m trade bars from 00:45 to 01:10; hourly marks 00:00 (close 99 at 01:00) and 01:00
    # (not closed by 01:15, the last trade close)
    ts = np.arange(9, 15, dtype="int64") * M5  # 00:45 .. 01:10
    trade = _candles([(100, 101, 99, 100)] * 2 + [(100, 102, 98, 100)]
                     + [(100, 104, 96, 102)] * 3)
    mark = _candles([(98, 99.5, 95, 99), (99, 200, 1, 150)])
    out = marks_on_trade_bars(ts, M5, trade, np.array([0, H], dtype="int64"), H, mark)
    assert out.rule is MarkRule.SCALED
    # 00:45 and 00:50 close before the 00:00 mark bar does (01:00): no usable mark
    assert out.missing.tolist() == [True, True, False, False, False, False]
    # 00:55 closes with it: the mark close 99; its low 95 and high 99.5 beyond the scaled
    # trade extremes 98 x 0.99 = 97.02 and 102 x 0.99 = 100.98 (ratio 99 / trade close 100)
    assert (out.close[2], out.low[2], out.high[2]) == (99.0, 95.0, 100.98)
    # 01:00 .. 01:10: ratio 0.99 carries the trade candle; the 01:00 mark bar's own values
    # (high 200, low 1) are not known before 02:00 and appear nowhere
    for k in (3, 4, 5):
        assert out.close[k] == pytest.approx(102 * 0.99, rel=1e-15)
        assert out.low[k] == pytest.approx(96 * 0.99, rel=1e-15)
        assert out.high[k] == pytest.approx(104 * 0.99, rel=1e-15)


def test_coarser_marks_stop_where_the_next_should_have_closed_16() -> None:
    # hourly marks at 00:00 only: usable from the 00:55 bar (closes 01:00) until the next
    # mark bar should have closed (02:00): the 01:55 bar closes at 02:00 and has none
    ts = np.arange(11, 25, dtype="int64") * M5  # 00:55 .. 02:00
    trade = _candles([(100, 101, 99, 100)] * len(ts))
    out = marks_on_trade_bars(ts, M5, trade, np.array([0], dtype="int64"), H,
                              _candles([(100, 100, 100, 100)]))
    usable = ~out.missing
    assert usable[:12].all()  # 00:55 .. 01:50 (closes 01:00 .. 01:55)
    assert not usable[12:].any()  # 01:55, 02:00
