"""Grid parsing, expansion, random sampling and walk-forward windows (issue 9)."""

from __future__ import annotations

import itertools

import pytest

from backtester.errors import ConfigError
from backtester.sweep import SweepSpec, expand_grid, param_hash, parse_grid, sample_grid
from backtester.sweep.walk_forward import WalkForwardSpec, make_windows, parse_walk_forward
from backtester.timeutil import MS_PER_DAY
from strategies.hedged_pair import HedgedPair

PARAMS = HedgedPair.parameters


def test_list_values_are_typed_by_the_strategy_parameters() -> None:
    grid = parse_grid(["lookback=48,96", "entry_z=2,2.5", "btc=BTC/USDT:USDT"], PARAMS)
    assert grid == {"lookback": [48, 96], "entry_z": [2.0, 2.5], "btc": ["BTC/USDT:USDT"]}
    assert all(isinstance(v, int) for v in grid["lookback"])
    assert all(isinstance(v, float) for v in grid["entry_z"])


def test_ranges_include_stop_and_avoid_float_drift() -> None:
    grid = parse_grid(["lookback=24:96:24", "exit_z=0.1:0.5:0.1"], PARAMS)
    assert grid["lookback"] == [24, 48, 72, 96]
    assert grid["exit_z"] == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_duplicates_are_dropped_and_order_kept() -> None:
    assert parse_grid(["lookback=96,48,96"], PARAMS) == {"lookback": [96, 48]}


@pytest.mark.parametrize(("item", "fragment"), [
    ("lokback=1,2", "did you mean 'lookback'"),
    ("lookback=1.5", "not a valid int"),
    ("lookback", "expected name=v1"),
    ("lookback=10:1:1", "start <= stop"),
    ("lookback=1:10:0", "step > 0"),
    ("leverage=a:b:c", "not a valid float"),
    ("lookback=1:5", "start:stop:step"),
    ("is_x=1:2:1", "no parameter"),
])
def test_bad_grid_items_are_config_errors(item: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_grid([item], PARAMS, strategy="HedgedPair")


def test_expand_grid_varies_the_last_parameter_fastest() -> None:
    assert expand_grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_random_sampling_is_seeded_distinct_and_in_grid_order() -> None:
    combos = expand_grid({"a": list(range(10)), "b": list(range(10))})
    first = sample_grid(combos, 7, seed=42)
    assert first == sample_grid(combos, 7, seed=42)
    assert first == sorted(set(first))
    assert len(first) == 7
    assert sample_grid(combos, 7, seed=43) != first
    assert sample_grid(combos, 500, seed=1) == list(range(100))
    with pytest.raises(ConfigError, match="positive"):
        sample_grid(combos, 0, seed=1)


def test_param_hash_depends_on_params_and_window() -> None:
    spec = SweepSpec(strategy="s.py", dataset="sample", grid={"lookback": [1, 2]})
    a = param_hash(spec, {"lookback": 1})
    assert a == param_hash(spec, {"lookback": 1})
    assert a != param_hash(spec, {"lookback": 2})
    assert a != param_hash(spec, {"lookback": 1}, start="2025-02-01")


def test_walk_forward_spec_parsing() -> None:
    wf = parse_walk_forward("train=180d,test=30d")
    assert (wf.train_ms, wf.test_ms, wf.is_anchored) == (180 * MS_PER_DAY, 30 * MS_PER_DAY, False)
    assert parse_walk_forward("train=4w, test=12h, anchored").is_anchored
    with pytest.raises(ConfigError, match="train= and test="):
        parse_walk_forward("train=10d")
    with pytest.raises(ConfigError, match="span like"):
        parse_walk_forward("train=10x,test=1d")


@pytest.mark.parametrize("anchored", [False, True])
def test_walk_forward_test_windows_never_overlap_their_train_data(anchored: bool) -> None:
    wf = WalkForwardSpec(train_ms=180 * MS_PER_DAY, test_ms=30 * MS_PER_DAY, is_anchored=anchored)
    start, end = 0, 365 * MS_PER_DAY
    windows = make_windows(start, end, wf)
    # (365 - 180) // 30 = 6 full test windows
    assert len(windows) == 6
    for w in windows:
        assert w.train_start < w.train_end <= w.test_start < w.test_end <= end
        assert w.test_end - w.test_start == wf.test_ms
        assert w.train_start == (start if anchored else w.train_end - wf.train_ms)
    # test windows tile the out-of-sample span back to back
    assert all(a.test_end == b.test_start for a, b in itertools.pairwise(windows))


def test_walk_forward_range_too_short_is_an_error() -> None:
    wf = WalkForwardSpec(train_ms=10, test_ms=5)
    with pytest.raises(ConfigError, match="shorter than one train"):
        make_windows(0, 14, wf)


def test_a_range_too_fine_is_refused_before_it_is_built_15() -> None:
    # (1e9 - 0) / 1e-9 + 1 = 1e18 + 1 values: refused at once, nothing allocated
    with pytest.raises(ConfigError, match=r"--grid entry_z=0:1e9:1e-9: 1,000,000,000,000,000,001 "
                                          r"values, more runs than the limit of 100,000"):
        parse_grid(["entry_z=0:1e9:1e-9"], PARAMS)
    with pytest.raises(ConfigError, match=r"lookback=1:1000000000:1: 1,000,000,000 values"):
        parse_grid(["lookback=1:1000000000:1"], PARAMS)


def test_the_product_of_the_grid_is_limited_and_counted_15() -> None:
    # 101 x 1,000 = 101,000 sets: each range alone is under 100,000, the grid is not
    with pytest.raises(ConfigError, match=r"the grid makes 101 entry_z × 1,000 lookback = "
                                          r"101,000 runs, more than the limit of 100,000"):
        parse_grid(["entry_z=1:2:0.01", "lookback=1:1000:1"], PARAMS)
    grid = parse_grid(["entry_z=1:2:0.5", "lookback=1:3:1"], PARAMS, max_runs=9)
    assert len(expand_grid(grid)) == 9
    with pytest.raises(ConfigError, match=r"= 9 runs, more than the limit of 8 \(--max-runs\)"):
        parse_grid(["entry_z=1:2:0.5", "lookback=1:3:1"], PARAMS, max_runs=8)
