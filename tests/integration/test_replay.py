"""Replay on one clock: mixed timeframes, missing bars, bar visibility, and no look-ahead."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import backtester as bt
from strategies.hedged_pair import HedgedPair
from tests.builders import BTC, ETH, Scripted, run

H = 3_600_000


def _ms(s: str) -> int:
    return int(pd.Timestamp(s, tz="UTC").value // 1_000_000)


def _frame(ts: list[str], opens: list[float]) -> pd.DataFrame:
    o = np.asarray(opens, dtype="float64")
    return pd.DataFrame({"ts": pd.to_datetime(ts, utc=True), "open": o, "high": o + 1,
                         "low": o - 1, "close": o + 0.5, "volume": 1_000.0})


# BTC hourly with the 02:00 bar missing; ETH on 4h bars
BTC_TS = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 03:00", "2024-01-01 04:00",
          "2024-01-01 05:00", "2024-01-01 06:00", "2024-01-01 07:00", "2024-01-01 08:00"]
ETH_TS = ["2024-01-01 00:00", "2024-01-01 04:00", "2024-01-01 08:00"]


class Watcher(bt.Strategy):
    def on_start(self, ctx: Any) -> None:
        self.seen: list[tuple[int, int | None, int | None]] = []

    def on_bar(self, ctx: Any) -> None:
        b, e = ctx.bar(BTC), ctx.bar(ETH)
        self.seen.append((ctx.now, None if b is None else b.ts_ms,
                          None if e is None else e.ts_ms))


def test_clock_is_the_union_of_bar_closes_and_bars_show_at_their_close() -> None:
    w = Watcher()
    result = run(w, {BTC: _frame(BTC_TS, [100.0] * 8), ETH: _frame(ETH_TS, [10.0, 20.0, 30.0])})
    # closes: BTC 01,02,04,05,06,07,08,09 (03:00 missing: bar 02:00 absent); ETH 04,08,12
    steps = [t for t, _, _ in w.seen]
    assert steps == [_ms(f"2024-01-01 {h:02d}:00") for h in (1, 2, 4, 5, 6, 7, 8, 9, 12)]
    by_step = {t: (b, e) for t, b, e in w.seen}
    # at 01:00 BTC's 00:00 bar is visible, ETH's 00:00-04:00 bar is not (it closes at 04:00)
    assert by_step[_ms("2024-01-01 01:00")] == (_ms("2024-01-01 00:00"), None)
    # at 03:00 there is no step at all (no bar closes then)
    assert _ms("2024-01-01 03:00") not in by_step
    # at 04:00 BTC shows its 03:00 bar and ETH its 00:00 bar
    assert by_step[_ms("2024-01-01 04:00")] == (_ms("2024-01-01 03:00"),
                                                 _ms("2024-01-01 00:00"))
    # at 07:00 ETH still shows its 00:00 bar: the 04:00 bar only closes at 08:00
    assert by_step[_ms("2024-01-01 07:00")][1] == _ms("2024-01-01 00:00")
    assert by_step[_ms("2024-01-01 08:00")][1] == _ms("2024-01-01 04:00")
    # after BTC's last bar, ETH's last step still runs and BTC keeps its last bar
    assert by_step[_ms("2024-01-01 12:00")] == (_ms("2024-01-01 08:00"),
                                                 _ms("2024-01-01 08:00"))
    assert result.meta["gaps"][BTC]["missing_bars"] == 1


def test_order_at_an_hourly_step_skips_the_4h_bar_that_opened_before_it() -> None:
    # an ETH buy placed at the 05:00 step (4th step) cannot fill on the 04:00-08:00 bar, which
    # opened before the order; it fills at the open of the 08:00 bar (30), stamped with that
    # open (08:00) and processed at that bar's close (12:00). Before ETH's first close (01:00
    # step) there is no market data.
    strat = Scripted({0: lambda ctx: ctx.buy(ETH, 1), 3: lambda ctx: ctx.buy(ETH, 1)})
    result = run(strat, {BTC: _frame(BTC_TS, [100.0] * 8),
                         ETH: _frame(ETH_TS, [10.0, 20.0, 30.0])})
    assert strat.out[0].rejection.reason == "no_market_data"
    assert len(result.fills) == 1
    f = result.fills.iloc[0]
    assert f["price"] == 30.0
    assert f["ts"] == pd.Timestamp("2024-01-01 08:00", tz="UTC")
    assert f["step_ts"] == pd.Timestamp("2024-01-01 12:00", tz="UTC")


def test_price_is_nan_before_a_symbols_first_close() -> None:
    strat = Scripted({0: lambda ctx: ctx.price(ETH), 2: lambda ctx: ctx.price(ETH)})
    run(strat, {BTC: _frame(BTC_TS, [100.0] * 8), ETH: _frame(ETH_TS, [10.0, 20.0, 30.0])})
    assert np.isnan(strat.out[0])
    assert strat.out[2] == 10.5  # ETH 00:00 bar close, visible at 04:00 (third step)


def test_history_ends_at_now() -> None:
    strat = Scripted({3: lambda ctx: ctx.history(BTC)})
    run(strat, {BTC: _frame(BTC_TS, [float(i) + 100 for i in range(8)]),
                ETH: _frame(ETH_TS, [10.0, 20.0, 30.0])})
    hist = strat.out[3]  # step 4 = 05:00: bars 00, 01, 03, 04
    assert list(hist["open"]) == [100.0, 101.0, 102.0, 103.0]
    assert hist.index[-1] == pd.Timestamp("2024-01-01 04:00", tz="UTC")


# -- the look-ahead proof -----------------------------------------------------------------
def _pair_data(n: int, seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.01, n)
    btc = 40_000 * np.exp(np.cumsum(common + rng.normal(0, 0.004, n)))
    eth = 2_000 * np.exp(np.cumsum(common + rng.normal(0, 0.004, n)))
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    out = {}
    for sym, c in ((BTC, btc), (ETH, eth)):
        o = np.concatenate([[c[0]], c[:-1]])
        out[sym] = pd.DataFrame({"ts": ts, "open": o, "high": np.maximum(o, c) * 1.002,
                                 "low": np.minimum(o, c) * 0.998, "close": c, "volume": 1e6})
    return out


class SmaCross(bt.Strategy):
    fast: int = 5
    slow: int = 20

    def on_start(self, ctx: Any) -> None:
        close = pd.Series(ctx.series(BTC))
        self.f = ctx.indicator(lambda: close.rolling(self.fast).mean().to_numpy(), symbol=BTC)
        self.s = ctx.indicator(lambda: close.rolling(self.slow).mean().to_numpy(), symbol=BTC)

    def on_bar(self, ctx: Any) -> None:
        if np.isnan(self.s.now):
            return
        side = 1 if self.f.now > self.s.now else -1
        ctx.target(BTC, side)
        ctx.record(signal=side, fast=self.f.now)


def _nan_free(d: dict[str, list[Any]]) -> dict[str, list[Any]]:
    # NaN != NaN: compare "no value yet" as None
    return {k: [None if isinstance(x, float) and np.isnan(x) else x for x in v]
            for k, v in d.items()}


def _decisions(result: bt.BacktestResult, upto_ms: int) -> tuple[Any, ...]:
    cut = pd.Timestamp(upto_ms, unit="ms", tz="UTC")
    rec = result.records[result.records.index <= cut]
    orders = result.orders[result.orders["created_ms"] <= upto_ms]
    # fills processed by the cut (a fill at the open of the bar after it happens at the cut's
    # time but only exists with that bar: step_ts, not ts)
    fills = result.fills[result.fills["step_ts"] <= cut]
    eq = result.equity[result.equity.index <= cut]["equity"]
    return (_nan_free(rec.to_dict("list")),
            orders[["order_id", "symbol", "side", "qty", "type"]].to_dict("list"),
            fills[["order_id", "qty_exact", "price_exact", "fee_exact"]].to_dict("list"),
            list(eq))


@pytest.mark.parametrize("k", [40, 120, 199])
def test_no_look_ahead_hedged_pair(k: int) -> None:
    n = 240
    data = _pair_data(n)
    params = {"lookback": 24, "entry_z": 1.5, "exit_z": 0.3, "notional_usd": 20_000.0}
    full = run(HedgedPair(**params), data)
    cut = run(HedgedPair(**params), {s: d.iloc[: k + 1] for s, d in data.items()})
    assert len(full.fills) >= 4  # the strategy trades: the proof is not vacuous
    t_k = int(data[BTC]["ts"].iloc[k].value // 1_000_000) + H  # close of bar k
    got, want = _decisions(cut, t_k), _decisions(full, t_k)
    assert len(got[0]["z"]) == k + 1
    assert got == want


@pytest.mark.parametrize("k", [25, 90, 170])
def test_no_look_ahead_sma_on_mixed_timeframes(k: int) -> None:
    # BTC hourly drives the SMA; ETH on 4h bars shares the clock (and is truncated at the
    # same time)
    n = 200
    data = _pair_data(n, seed=11)
    eth4 = data[ETH].iloc[::4].reset_index(drop=True)
    full = run(SmaCross(), {BTC: data[BTC], ETH: eth4})
    t_end = data[BTC]["ts"].iloc[k]
    cut = run(SmaCross(), {BTC: data[BTC][data[BTC]["ts"] <= t_end],
                           ETH: eth4[eth4["ts"] <= t_end]})
    t_k = int(t_end.value // 1_000_000) + H
    assert full.fills["qty"].abs().sum() > 5
    assert _decisions(cut, t_k) == _decisions(full, t_k)


# -- the look-ahead proof for the margin kernel's blocks (issue 17 item 2) -------------------
# The margin monitor evaluates a constant book over a block of coming steps in one call; a
# step's margin values must still depend on nothing after it. A run cut at bar k must record
# the same margin series up to k as the full run, on the books whose evaluation differs most
# from a plain perp: a portfolio-margin book (its scenario grid per step) and a coin-collateral
# book (the collateral moves with the position's underlying; a liquidation there is what the
# crash below is for).
_MARGIN_COLS = ["equity", "margin_balance", "initial_margin", "maintenance_margin",
                "margin_ratio", "available", "distance_to_liquidation"]


def _margin_upto(result: bt.BacktestResult, upto_ms: int) -> dict[str, list[float]]:
    cut = pd.Timestamp(upto_ms, unit="ms", tz="UTC")
    eq = result.equity[result.equity.index <= cut]
    return _nan_free(eq[[c for c in _MARGIN_COLS if c in eq]].to_dict("list"))


@pytest.mark.parametrize("k", [40, 120, 199])
def test_no_look_ahead_in_a_portfolio_margin_book_17(k: int) -> None:
    n = 240
    data = _pair_data(n)
    params = {"lookback": 24, "entry_z": 1.5, "exit_z": 0.3, "notional_usd": 20_000.0}
    keys = {"margin_mode": "portfolio", "profile": "deribit"}
    full = run(HedgedPair(**params), data, **keys)
    cut = run(HedgedPair(**params), {s: d.iloc[: k + 1] for s, d in data.items()}, **keys)
    assert len(full.fills) >= 4
    assert full.equity["maintenance_margin"].gt(0).any()  # a book is held: not vacuous
    t_k = int(data[BTC]["ts"].iloc[k].value // 1_000_000) + H
    assert _decisions(cut, t_k) == _decisions(full, t_k)
    assert _margin_upto(cut, t_k) == _margin_upto(full, t_k)


@pytest.mark.parametrize("k", [60, 150, 176, 199])
def test_no_look_ahead_in_a_coin_collateral_book_17(k: int) -> None:
    # 1 BTC collateral, always long the BTC perp (3 BTC above the slow SMA, 1 below): long
    # twice over on one coin; the last 60 bars fall 1 % a bar and the account is liquidated
    # at bar 175 — cuts before, just after and well after it
    n = 200
    data = _pair_data(n, seed=5)
    btc = data[BTC].copy()
    fall = np.r_[np.ones(n - 60), 0.99 ** np.arange(1, 61)]
    for col in ("open", "high", "low", "close"):
        btc[col] = btc[col] * fall
    data = {BTC: btc}

    class Levered(SmaCross):
        def on_bar(self, ctx: Any) -> None:
            if np.isnan(self.s.now):
                return
            ctx.target(BTC, 3 if self.f.now > self.s.now else 1)

    keys = {"collateral": {"BTC": 1.0}, "profile": "bybit", "leverage": 10}
    full = run(Levered(), data, **keys)
    t_end = btc["ts"].iloc[k]
    cut = run(Levered(), {BTC: btc[btc["ts"] <= t_end]}, **keys)
    assert full.fills["qty"].abs().sum() > 5
    assert full.metrics["liquidations"] == 1  # the crash reaches the liquidation machinery
    t_k = int(t_end.value // 1_000_000) + H
    assert _decisions(cut, t_k) == _decisions(full, t_k)
    assert _margin_upto(cut, t_k) == _margin_upto(full, t_k)


# -- the look-ahead proof for options priced from the vol index (issue 14 item 8) -----------
OPT = "BTC/USDT:USDT-240201-40000-C"  # a linear call with trade candles only: theoretical


def _vol_book(n: int, seed: int = 3) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    data = _pair_data(n, seed=seed)
    ts = data[BTC]["ts"]
    flat = np.full(n, 1_500.0)
    data[OPT] = pd.DataFrame({"ts": ts, "open": flat, "high": flat, "low": flat,
                              "close": flat, "volume": 1.0})
    # daily vol candles from the day before the bars (so every bar has a closed candle)
    days = pd.date_range(ts.iloc[0] - pd.Timedelta("1D"), ts.iloc[-1], freq="1D")
    level = 50.0 + 20.0 * np.sin(np.arange(len(days)) * 1.7)
    vol = pd.DataFrame({"ts": days, "open": level, "high": level + 3, "low": level - 3,
                        "close": level + np.where(np.arange(len(days)) % 2, 2.0, -2.0)})
    return data, vol


class VolTrader(bt.Strategy):
    """Holds the call while its IV (the vol index level) rose since the last bar."""

    def on_start(self, ctx: Any) -> None:
        self.prev: float | None = None

    def on_bar(self, ctx: Any) -> None:
        c = ctx.chain("BTC")
        row = c[c["symbol"] == OPT]
        if row.empty:
            return
        iv, mark = float(row["iv"].iloc[0]), float(row["mark"].iloc[0])
        ctx.record(iv=iv, mark=mark)
        if self.prev is not None and iv != self.prev:
            ctx.target(OPT, 1 if iv > self.prev else 0)
        self.prev = iv


@pytest.mark.parametrize("k", [30, 100, 170])
def test_no_look_ahead_options_priced_from_a_daily_vol_index(k: int) -> None:
    # hourly bars, a daily vol index: the truncated run sees the bars up to bar k and only the
    # vol candles closed by bar k's close (what a live run would have then)
    n = 200
    data, vol = _vol_book(n)
    full = run(VolTrader(), data, vol_indexes={"BTC": vol})
    t_end = data[BTC]["ts"].iloc[k]
    t_k = int(t_end.value // 1_000_000) + H
    closed = vol[vol["ts"] + pd.Timedelta("1D") <= pd.Timestamp(t_k, unit="ms", tz="UTC")]
    assert len(closed) < len(vol)
    cut = run(VolTrader(), {s: d[d["ts"] <= t_end] for s, d in data.items()},
              vol_indexes={"BTC": closed})
    assert full.meta["mark_source"][OPT] == "theoretical"
    assert len(full.fills) >= 4  # the strategy trades on the vol index: not vacuous
    assert _decisions(cut, t_k) == _decisions(full, t_k)


# -- the look-ahead proof on the mark path (issue 16 item 1) --------------------------------
M5 = 300_000


def _candles(ts: pd.DatetimeIndex, close: np.ndarray, wick: np.ndarray) -> pd.DataFrame:
    o = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame({"ts": ts, "open": o, "high": np.maximum(o, close) * (1 + wick),
                         "low": np.minimum(o, close) * (1 - wick), "close": close,
                         "volume": 1e6})


def _trades_and_marks(mark_tf: str, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    # 5m trade candles over three days and mark candles of another timeframe that follow the
    # trade price with a drifting basis (so that mark and trade candles differ everywhere)
    rng = np.random.default_rng(seed)
    n1 = 3 * 24 * 60  # one-minute path
    px = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.0012, n1)))
    basis = 1 + 0.002 * np.sin(np.arange(n1) / 97.0)
    minute = pd.date_range("2024-01-01", periods=n1, freq="1min", tz="UTC")
    trades = _candles(minute[::5], px[4::5], np.abs(rng.normal(0, 0.002, n1 // 5)))
    step = {"1m": 1, "1h": 60}[mark_tf]
    marks = _candles(minute[::step], (px * basis)[step - 1::step],
                     np.abs(rng.normal(0, 0.003, n1 // step)))
    return trades, marks


class MarkWatcher(bt.Strategy):
    """Longs 2 BTC at 20x and records what margin shows it (marks, ratio) at every step."""

    def on_start(self, ctx: Any) -> None:
        ctx.set_leverage(BTC, 20)

    def on_bar(self, ctx: Any) -> None:
        if ctx.position(BTC).is_flat and not ctx.open_orders(BTC):
            ctx.buy(BTC, 2)
        acct = ctx.account
        ctx.record(mark=ctx.mark(BTC), ratio=acct.margin_ratio, equity=acct.equity)


@pytest.mark.parametrize("mark_tf", ["1h", "1m"])
@pytest.mark.parametrize("k", [30, 101, 460])
def test_no_look_ahead_on_marks_of_another_timeframe_16(mark_tf: str, k: int) -> None:
    # the run cut at the close of 5m bar k, given only the candles closed by then (trade and
    # mark), decides and evaluates margin exactly as the full run does up to that close
    trades, marks = _trades_and_marks(mark_tf)
    mark_ms = {"1h": 60, "1m": 1}[mark_tf] * 60_000
    t_k = int(trades["ts"].iloc[k].value // 1_000_000) + M5
    closed = (marks["ts"].astype("int64") // 1_000 + mark_ms <= t_k).to_numpy()
    full = run(MarkWatcher(), {BTC: bt_frames(trades, marks)}, collateral={"USDT": 5_000})
    cut = run(MarkWatcher(), {BTC: bt_frames(trades.iloc[: k + 1], marks[closed])},
              collateral={"USDT": 5_000})
    assert full.meta["mark_source"][BTC] == "mark"
    assert not any(w.startswith("mark candles missing") for w in full.warnings)
    cols = ["equity", "maintenance_margin", "margin_ratio", "unrealized_pnl"]
    stop = pd.Timestamp(t_k, unit="ms", tz="UTC")
    got = cut.equity.loc[cut.equity.index <= stop, cols]
    want = full.equity.loc[full.equity.index <= stop, cols]
    assert len(got) == k + 1
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert _decisions(cut, t_k) == _decisions(full, t_k)


def bt_frames(trades: pd.DataFrame, marks: pd.DataFrame) -> Any:
    from backtester.data.feed import MarketFrames

    return MarketFrames(ohlcv=trades, mark=marks)
