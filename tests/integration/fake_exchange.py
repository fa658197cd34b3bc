"""A loopback HTTP server that answers the real ccxt client from real recorded exchange data.

Served in each exchange's wire format, with the real query semantics, at the paths the real hosts
use (the fetch's ``--base-url`` replaces scheme and host and keeps the paths):

* Binance USDⓈ-M ``/fapi/v1/exchangeInfo`` — the recorded exchangeInfo (nautilus_trader,
  2022-02-19: BTCUSDT, ETHUSDT, BTCUSDT_220325) plus the recorded raw XRPUSDT entry kept in
  ccxt's static market fixture;
* ``/fapi/v1/klines`` (5m, 1h) and ``/fapi/v1/markPriceKlines`` (1h) — freqtrade's recorded
  XRP/USDT:USDT candles (o/h/l/c/v recorded; close time derived as open + tf − 1; quote volume,
  trades and taker columns were not recorded and are sent as "0", as the exchange does for
  missing values); ``/fapi/v1/klines`` BTCUSDT 1m — nautilus_trader's recorded BTC perpetual 1m
  candles (45,031 bars 2021-12-31 23:01 → 2022-02-01 05:31, gap-free; naive stamps are UTC);
* ``/fapi/v1/fundingRate`` — freqtrade's recorded XRP 8h funding (rate from the ``open`` column,
  with the exchange's millisecond jitter in ``fundingTime``);
* Deribit ``/api/v2/public/get_instruments`` and ``get_tradingview_chart_data`` — nautilus_trader's
  recorded responses; ``get_volatility_index_data`` — the recorded BTC DVOL daily history
  (kalyar197/eth-dashboard; one value per day, sent as open = high = low = close).

Binance semantics: rows ascending, ``[startTime, endTime]`` inclusive, the first ``limit`` rows
from ``startTime`` (the last ``limit`` without it). Deribit: ``[start_timestamp, end_timestamp]``.

Faults are queued per path with :meth:`FakeExchange.inject`: each matching request consumes one
``(status, body, headers)`` instead of the real answer.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd

_TF_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "8h": 28_800_000}
_FT = "freqtrade-testdata/futures/"
_KLINE_FILES = {
    ("XRPUSDT", "klines", "5m"): _FT + "XRP_USDT_USDT-5m-futures.feather",
    ("XRPUSDT", "klines", "1h"): _FT + "XRP_USDT_USDT-1h-futures.feather",
    ("XRPUSDT", "markPriceKlines", "1h"): _FT + "XRP_USDT_USDT-1h-mark.feather",
    ("BTCUSDT", "klines", "1m"): "nautilus-trader/candles/btc-perp-20211231-20220201_1m.csv",
}
Fault = tuple[int, bytes, dict[str, str]]


def _ms(series: pd.Series) -> list[int]:
    return [int(x) for x in series.dt.as_unit("ms").astype("int64")]


@cache
def binance_exchange_info(data: Path) -> dict[str, Any]:
    info = json.loads((data / "nautilus-trader/binance-usdm/http_futures_market_exchange_info.json")
                      .read_text())
    markets = json.loads(
        (data / "ccxt-static/markets/binance.derivatives.extract.json").read_text())
    have = {s["symbol"] for s in info["symbols"]}
    for market in markets.values():
        raw = market.get("info") or {}
        if raw.get("symbol") not in have and "marginAsset" in raw:  # USDⓈ-M entries only
            info["symbols"].append(raw)
    return dict(info)


@cache
def binance_klines(data: Path, symbol: str, endpoint: str,
                   interval: str) -> tuple[list[Any], ...]:
    name = _KLINE_FILES[(symbol, endpoint, interval)]
    if name.endswith(".csv"):
        df = pd.read_csv(data / name)
        df["date"] = pd.to_datetime(df.pop("timestamp"), utc=True)
    else:
        df = pd.read_feather(data / name)
    tf = _TF_MS[interval]
    rows = []
    for ts, r in zip(_ms(df["date"]), df.itertuples(index=False)):
        vol = 0.0 if r.volume != r.volume else float(r.volume)  # mark candles: NaN volume
        rows.append([ts, repr(float(r.open)), repr(float(r.high)), repr(float(r.low)),
                     repr(float(r.close)), repr(vol), ts + tf - 1, "0", 0, "0", "0", "0"])
    return tuple(rows)


@cache
def binance_funding(data: Path) -> tuple[dict[str, Any], ...]:
    df = pd.read_feather(data / "freqtrade-testdata/futures/XRP_USDT_USDT-8h-funding_rate.feather")
    return tuple({"symbol": "XRPUSDT", "fundingTime": ts, "fundingRate": f"{rate:.8f}"}
                 for ts, rate in zip(_ms(df["date"]), df["open"]))


@cache
def deribit_dvol(data: Path) -> tuple[tuple[int, float], ...]:
    rows = json.loads((data / "kalyar197-eth-dashboard/dvol_btc.json").read_text())
    return tuple((int(ts), float(v)) for ts, v in rows)


def _int(q: dict[str, str], key: str) -> int | None:
    return int(q[key]) if key in q else None


def binance_window(rows: Any, q: dict[str, str], key: Any, default_limit: int,
                   max_limit: int) -> list[Any]:
    start, end = _int(q, "startTime"), _int(q, "endTime")
    limit = min(_int(q, "limit") or default_limit, max_limit)
    sel = [r for r in rows if (start is None or r[key] >= start) and (end is None or r[key] <= end)]
    return sel[:limit] if start is not None else sel[-limit:]


class FakeExchange:
    """The server; use as a context manager. ``base`` is its URL, ``log`` the requests seen."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.log: list[tuple[int, str, dict[str, str]]] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                u = urlparse(self.path)
                q = {k: v[-1] for k, v in parse_qs(u.query).items()}
                status, body, headers = outer.answer(u.path, q)
                with outer._lock:
                    outer.log.append((status, u.path, q))
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02},
                                       daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def inject(self, path: str, *faults: tuple[int, bytes] | Fault) -> None:
        """Answer the next requests to ``path`` with these ``(status, body[, headers])``."""
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            for f in faults:
                queue.append((f[0], f[1], dict(f[2]) if len(f) > 2 else {}))  # type: ignore[misc]

    def requests(self, path: str) -> list[dict[str, str]]:
        return [q for status, p, q in self.log if p == path and status == 200]

    def answer(self, path: str, q: dict[str, str]) -> Fault:
        with self._lock:
            queue = self._faults.get(path)
            if queue:
                return queue.popleft()
        status, payload = self.route(path, q)
        return status, json.dumps(payload).encode(), {}

    def route(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        data = self.data
        if path == "/fapi/v1/exchangeInfo":
            return 200, binance_exchange_info(data)
        if path in ("/fapi/v1/klines", "/fapi/v1/markPriceKlines"):
            endpoint = path.rsplit("/", 1)[1]
            key = (q.get("symbol", ""), endpoint, q.get("interval", ""))
            if key not in _KLINE_FILES:
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            return 200, binance_window(binance_klines(data, *key), q, 0, 500, 1500)
        if path == "/fapi/v1/fundingRate":
            if q.get("symbol") != "XRPUSDT":
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            return 200, binance_window(binance_funding(data), q, "fundingTime", 100, 1000)
        if path == "/api/v2/public/get_instruments":
            return 200, json.loads((data / "nautilus-trader/deribit/http_get_instruments.json")
                                   .read_text())
        if path == "/api/v2/public/get_tradingview_chart_data":
            return self._deribit_chart(q)
        if path == "/api/v2/public/get_volatility_index_data":
            return self._deribit_dvol(q)
        return 404, {"code": -1, "msg": f"no recording for {path}"}

    def _deribit_chart(self, q: dict[str, str]) -> tuple[int, Any]:
        chart = json.loads(
            (self.data / "nautilus-trader/deribit/http_get_tradingview_chart_data.json")
                           .read_text())
        if q.get("instrument_name") != "BTC-PERPETUAL":
            return 400, {"jsonrpc": "2.0", "error": {"code": 10020,
                                                     "message": "instrument_not_found"}}
        start, end = _int(q, "start_timestamp"), _int(q, "end_timestamp")
        res = chart["result"]
        keep = [i for i, ts in enumerate(res["ticks"])
                if (start is None or ts >= start) and (end is None or ts <= end)]
        out = {k: ([v[i] for i in keep] if isinstance(v, list) else v) for k, v in res.items()}
        if not keep:
            out["status"] = "no_data"
        return 200, {**chart, "result": out}

    def _deribit_dvol(self, q: dict[str, str]) -> tuple[int, Any]:
        if q.get("currency") != "BTC" or q.get("resolution") != "1D":
            return 400, {"jsonrpc": "2.0", "error": {"code": -32602,
                                                     "message": "Invalid params"}}
        start, end = _int(q, "start_timestamp") or 0, _int(q, "end_timestamp") or 2**62
        rows = [[ts, v, v, v, v] for ts, v in deribit_dvol(self.data) if start <= ts <= end]
        # the real endpoint returns at most 1000 points, the newest ones, with a continuation
        cont = rows[-1000][0] if len(rows) > 1000 else None
        return 200, {"jsonrpc": "2.0", "result": {"data": rows[-1000:], "continuation": cont},
                     "usIn": 0, "usOut": 0, "usDiff": 0, "testnet": False}

    def __enter__(self) -> FakeExchange:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
