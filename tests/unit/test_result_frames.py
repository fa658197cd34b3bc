"""The result frames built column by column equal the frames pandas builds from row dicts.

``backtester.runs.frames`` builds the fills, journal, orders and positions frames from the
engine's records without row dicts or Timestamp objects; every frame (values and dtypes) must be
the one the straightforward construction gives.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import backtester
import backtester.runs.runner as runner
from backtester.engine import Engine
from backtester.instruments import instrument_from_symbol
from backtester.orders import Fill
from backtester.runs import frames as result_frames
from tests.integration.books import SYMS, RandomTrader
from tests.integration.books import bars as _bars


@pytest.fixture(scope="module")
def engine() -> Engine:
    # a random book on three perps (linear and inverse), run to the end
    data = {sym: _bars(np.random.default_rng(10 + k), 300, 50_000.0 if "BTC" in sym else 2_500.0,
                       150, 0.8, mark=bool(k % 2)) for k, sym in enumerate(SYMS)}
    prep = runner.prepare(RandomTrader, data=data,
                          instruments={s: instrument_from_symbol(s) for s in SYMS},
                          funding="zero", collateral={"USDT": 20_000}, slippage_bps=2,
                          params={"seed": 1})
    eng = Engine(RandomTrader(seed=1), prep.feed, prep.config, profile=prep.profile)
    eng.run()
    return eng


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert list(a.dtypes.astype(str)) == list(b.dtypes.astype(str))


def test_utc_equals_to_datetime() -> None:
    ms = np.array([-86_400_123, 0, 1, 1_704_067_200_000, 4_102_444_800_999], dtype="int64")
    for values in (ms, ms[:1], ms[:0], ms.tolist()):
        out = result_frames.utc(values)
        ref = pd.to_datetime(np.asarray(values, dtype="int64"), unit="ms", utc=True)
        assert out.dtype == ref.dtype
        assert out.equals(ref)


def test_fills_frame_equals_row_dicts() -> None:
    fills = [Fill(ts_ms=1_704_067_200_000 + k * 60_000, order_id=k + 1, symbol="BTC/USDT:USDT",
                  qty=Decimal("-0.010") if k % 2 else Decimal("0.5"),
                  price=Decimal("42000.10"), fee=Decimal("0.0021"), fee_asset="USDT",
                  liquidity="taker", realized_pnl=Decimal(k), tag="entry" if k else "",
                  is_ambiguous=k == 2, step_ms=None if k == 3 else 1_704_070_800_000,
                  path_time=k * 0.75) for k in range(4)]
    ref = pd.DataFrame([{
        "ts": pd.Timestamp(f.ts_ms, unit="ms", tz="UTC"),
        "step_ts": pd.Timestamp(f.ts_ms if f.step_ms is None else f.step_ms, unit="ms",
                                tz="UTC"),
        "path_time": f.path_time, "order_id": f.order_id,
        "symbol": f.symbol, "qty": float(f.qty), "price": float(f.price), "fee": float(f.fee),
        "fee_asset": f.fee_asset, "liquidity": f.liquidity,
        "realized_pnl": float(f.realized_pnl), "tag": f.tag, "is_ambiguous": f.is_ambiguous,
        "qty_exact": str(f.qty), "price_exact": str(f.price), "fee_exact": str(f.fee)}
        for f in fills], columns=result_frames._FILL_COLUMNS)
    _same(result_frames.fills_frame(fills), ref)
    _same(result_frames.fills_frame([]), pd.DataFrame([], columns=result_frames._FILL_COLUMNS))


def test_journal_and_orders_frames_equal_row_dicts(engine: Engine) -> None:
    entries = engine.account.journal.entries
    assert len(entries) > 20
    ref = pd.DataFrame([{
        "seq": e.seq, "ts": pd.Timestamp(e.ts_ms, unit="ms", tz="UTC"), "kind": e.kind.value,
        "asset": e.asset, "amount": str(e.amount), "balance_after": str(e.balance_after),
        "symbol": e.symbol, "ref": e.ref, "ledger": e.ledger} for e in entries],
        columns=result_frames._JOURNAL_COLUMNS)
    assert (ref["symbol"] == "").any()  # deposits carry no symbol
    _same(result_frames.journal_frame(entries), ref)
    log = engine.order_log
    # the status column is readable text: the status, then ": reason" when there is one
    rows = [{**rec.order.as_dict(),
             "status": rec.status.value + ("" if rec.reason is None else f": {rec.reason.value}"),
             "closed_ms": rec.closed_ms} for rec in log]
    assert {r["status"].partition(":")[0] for r in rows} >= {"filled", "cancelled"}
    assert any(d["price"] is None for d in rows)  # market orders carry no price
    assert any(d["closed_ms"] is not None for d in rows)
    _same(result_frames.orders_frame(log), pd.DataFrame(rows))


def test_orders_frame_of_no_orders_has_a_status_column() -> None:
    ref = pd.DataFrame()
    ref["status"] = pd.Series(dtype="str")
    _same(result_frames.orders_frame([]), ref)


def test_string_columns_keep_the_dtype_pandas_infers() -> None:
    for values in (["a", "b"], ["a", None], [None, None], ["a", 1], ["", "x"]):
        got = pd.DataFrame({"c": result_frames._str_column(values)})["c"]
        ref = pd.DataFrame({"c": values})["c"]
        pd.testing.assert_series_equal(got, ref, check_exact=True)
        assert got.dtype == ref.dtype


def test_positions_frame_equals_the_frame_from_records(engine: Engine) -> None:
    pr = engine.pos_rec
    ids = result_frames.symbol_ids(engine)
    pos = result_frames.positions_frame(engine, ids)
    assert pos["symbol"].nunique() == 3
    ref = pd.DataFrame({k: np.asarray(v) if k != "symbol" else
                        [engine.symbols[c] for c in v] for k, v in pr.items()})
    ref["ts"] = pd.to_datetime(np.asarray(pr["ts"], dtype="int64"), unit="ms", utc=True)
    _same(pos[list(ref.columns)], ref)
    # futures only: delta is the size in coins, gamma, vega and theta are zero
    size = ref["qty"] * ref["symbol"].map({s: instrument_from_symbol(s).cs for s in SYMS})
    inverse = ref["symbol"] == "BTC/USD:BTC"
    np.testing.assert_array_equal(pos["delta"], size.where(~inverse, size / ref["mark"]))
    assert (pos[["gamma", "vega", "theta"]] == 0).all().all()


def test_a_position_held_at_every_step_shares_the_account_columns_copy_on_write() -> None:
    # one BTC perp, always long or short once the slow average exists: one position row per
    # step from the first entry on, whose unrealized PnL and notional are the account's
    from tests.integration.test_wake_on import Cross
    from tests.integration.test_wake_on import _data as cross_data

    sym = "BTC/USDT:USDT"
    res = backtester.run(Cross, data={sym: cross_data(2, 400)[sym]},
                     instruments={sym: instrument_from_symbol(sym)}, collateral={"USDT": 50_000})
    pos, eq = res.positions, res.equity
    k0 = int(eq.index.get_indexer([pos["ts"].iloc[0]])[0])
    assert k0 > 0
    assert len(pos) == len(eq) - k0
    np.testing.assert_array_equal(pos["ts"], eq.index[k0:])
    for row_key, acct_key in (("unrealized_pnl", "unrealized_pnl"), ("notional", "gross_exposure")):
        np.testing.assert_array_equal(pos[row_key], eq[acct_key].iloc[k0:])
        assert np.shares_memory(pos[row_key].to_numpy(), eq[acct_key].to_numpy())
    assert (pos["unrealized_pnl"] != 0).mean() > 0.9
    np.testing.assert_array_equal(pos["delta"], pos["qty"])  # contract size 1, linear
    # the frames are independent values: a write to one changes neither the other nor a column
    # that shared its memory
    before = eq["unrealized_pnl"].iloc[k0]
    qty0, delta0 = pos["qty"].iloc[0], pos["delta"].iloc[0]
    pos.loc[0, "unrealized_pnl"] = before + 1e6
    pos.loc[0, "qty"] = qty0 + 7.0
    assert eq["unrealized_pnl"].iloc[k0] == before
    assert pos["delta"].iloc[0] == delta0
    assert pos["qty"].iloc[0] == qty0 + 7.0
    eq.loc[eq.index[k0 + 1], "gross_exposure"] = -1.0
    assert pos["notional"].iloc[1] > 0
    # stablecoin collateral only: the fixed collateral is the wallet, stored once
    wallet, fixed = eq["wallet"].to_numpy(), eq["collateral_fixed"].to_numpy()
    assert np.shares_memory(wallet, fixed)
    eq.loc[eq.index[3], "wallet"] = -5.0
    assert eq["collateral_fixed"].iloc[3] == 50_000.0
    assert eq["wallet"].iloc[3] == -5.0


def test_compact_columns_stores_equal_columns_once_and_releases_their_records() -> None:
    zeros = np.zeros(6)
    a = np.arange(6.0)
    neg = -zeros  # -0.0 differs from 0.0 bit for bit: kept apart
    store = {"a": [1.0], "b": [2.0], "z1": [0.0], "z2": [0.0], "n": [-0.0]}
    cols: dict = {"a": a, "b": a.copy(), "z1": zeros, "z2": np.zeros(6), "n": neg,
                  "i": np.arange(6), "s": ["x"] * 6}
    result_frames.compact_columns(cols, store)
    frame = pd.DataFrame(cols, copy=False)
    assert np.shares_memory(frame["a"].to_numpy(), frame["b"].to_numpy())
    assert np.shares_memory(frame["z1"].to_numpy(), frame["z2"].to_numpy())
    assert not np.shares_memory(frame["n"].to_numpy(), frame["z1"].to_numpy())
    assert store == {"a": [1.0], "b": [], "z1": [0.0], "z2": [], "n": [-0.0]}
    frame.loc[2, "b"] = 99.0
    frame.loc[1, "z1"] = 7.0
    assert frame["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert frame["z2"].tolist() == [0.0] * 6
    assert frame["b"].iloc[2] == 99.0


def test_positions_frame_alone_keeps_delta_and_quantity_apart() -> None:
    # contract size 1, linear: delta equals the quantity; built without the equity frame (no
    # compaction) the two columns must still be separate values
    from tests.integration.test_wake_on import Cross
    from tests.integration.test_wake_on import _data as cross_data

    sym = "BTC/USDT:USDT"
    prep = runner.prepare(Cross, data={sym: cross_data(3, 200)[sym]},
                          instruments={sym: instrument_from_symbol(sym)},
                          collateral={"USDT": 50_000})
    eng = Engine(Cross(), prep.feed, prep.config, profile=prep.profile)
    eng.run()
    pos = result_frames.positions_frame(eng, result_frames.symbol_ids(eng))
    np.testing.assert_array_equal(pos["delta"], pos["qty"])
    delta0 = pos["delta"].iloc[0]
    pos.loc[0, "qty"] = delta0 + 5.0
    assert pos["delta"].iloc[0] == delta0
