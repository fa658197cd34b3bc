"""A run whose events hold non-finite numbers writes valid JSON, and its report renders.

A liquidation with no margin balance left has ``margin_ratio_before`` = inf (maintenance over a
non-positive margin balance). JSON has no infinity: ``events.json`` carries null there, and the
report, which reads the files back, draws that marker at the liquidation level.
"""

from __future__ import annotations

import json
import math

from backtester.report.page import write_report

from .books import random_book


def test_infinite_ratios_are_written_as_null_and_reported(tmp_path):
    res = None
    for seed in range(8):  # the golden random books; some end bankrupt
        coll = {"USDT": 3_000} if seed % 2 else {"USDT": 2_000, "BTC": 0.05}
        r = random_book(seed, margin_check="intrabar", collateral=coll)
        if any(isinstance(v, float) and math.isinf(v) for e in r.events for v in e.values()):
            res = r
            break
    assert res is not None, "no random book produced an infinite ratio"
    out = res.write(tmp_path / "run")
    text = (out / "events.json").read_text()
    events = json.loads(text)  # strict JSON: no Infinity / NaN tokens
    assert "Infinity" not in text
    assert "NaN" not in text
    infinite = [(i, k) for i, e in enumerate(res.events) for k, v in e.items()
                if isinstance(v, float) and math.isinf(v)]
    assert infinite
    assert all(events[i][k] is None for i, k in infinite)
    page = write_report(out)
    assert "liquidation" in page.read_text()
