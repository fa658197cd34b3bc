"""The run's records: account series, position rows, greeks, user series."""

from __future__ import annotations

import numpy as np

from backtester.engine.base import EngineParts
from backtester.margin import kernel

__all__ = ["POS_KEYS", "REC_COLUMNS", "RecorderMixin"]


#: the per-step account series and their columns in the margin kernel's records
REC_COLUMNS = {"equity": kernel.REC_EQUITY, "wallet": kernel.REC_WALLET,
               "unrealized_pnl": kernel.REC_UPNL, "margin_balance": kernel.REC_MB,
               "margin_balance_close": kernel.REC_MB_CLOSE,
               "initial_margin": kernel.REC_IM, "maintenance_margin": kernel.REC_MM,
               "margin_ratio": kernel.REC_RATIO, "available": kernel.REC_AVAILABLE,
               "gross_exposure": kernel.REC_GROSS, "net_exposure": kernel.REC_NET,
               "collateral_fixed": kernel.REC_COLL_FIXED,
               "collateral_moving": kernel.REC_COLL_MOVING}
#: the position rows' columns (``Engine.pos_rec``)
POS_KEYS = ("ts", "symbol", "qty", "entry_price", "mark", "unrealized_pnl", "notional",
            "isolated_margin")


class RecorderMixin(EngineParts):
    """What the run records each step (mixed into ``Engine``)."""

    def _finish_records(self, n_done: int) -> None:
        # the last block's records, then drop the steps a stopped run did not reach
        self.margin.finish(n_done)
        if n_done < len(self.rec["ts"]):
            self.rec["ts"] = self.rec["ts"][:n_done]  # a copy: the clock keeps its steps
            for k in REC_COLUMNS:
                self.rec[k] = self.rec[k][:n_done]
        self.step = n_done  # records from on_finish fall after the last step (dropped)

    def record_greeks(self, step: int, greeks: dict[str, float]) -> None:
        """Record the account greeks of ``step`` (the margin monitor calls this per step while
        options are held): in USD terms, summed over underlyings — delta (USD per 100 % move of
        every underlying), gamma (USD change of delta per 1 % move), vega (USD per vol point),
        theta (USD per day); the per-underlying detail is kept beside them."""
        totals = {"delta": 0.0, "gamma": 0.0, "vega": 0.0, "theta": 0.0,
                  "portfolio_initial_margin": greeks.pop("portfolio_initial_margin", float("nan"))}
        prices: dict[str, float] = {}  # per coin, looked up once
        for key, value in greeks.items():
            coin, _, name = key.partition(".")
            px = prices.get(coin)
            if px is None:
                px = prices[coin] = self._coin_usd(coin, step)
            if name == "delta":
                totals["delta"] += value * px
            elif name == "gamma":
                totals["gamma"] += value * px * px / 100.0
            elif name in ("vega", "theta"):
                totals[name] += value
        self.greek_rec.append((step, totals, dict(greeks)))

    def _coin_usd(self, coin: str, step: int) -> float:
        # a coin's USD price (index close) at ``step``: 1 for stablecoins
        if self.feed.is_stable(coin):
            return 1.0
        f = self.feed.index_feeds.get(coin)
        if f is None:
            return 0.0
        i = int(f.bar_at(np.asarray([self.feed.steps.times[step]]))[0])
        return f.ic[i] if i >= 0 else f.io[0]

    def record_user(self, values: dict[str, float]) -> None:
        """Store user series values for the current step."""
        n = max(self.step, 0)  # the current step is recorded after on_bar
        for k, v in values.items():
            series = self.user_records.setdefault(k, [])
            if len(series) < n:
                series.extend([float("nan")] * (n - len(series)))
            if len(series) == n:
                series.append(float(v))
            else:
                series[n] = float(v)
