"""The sections of the run report, each a function of the loaded run returning HTML."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from backtester import display
from backtester.display import COST_SIGNS
from backtester.report._html import cards, esc, fmt, note, table
from backtester.report._load import RunData
from backtester.report.attribution import COMPONENTS, AssetAttribution
from backtester.report.charts import figure_html, line_figure

__all__ = ["OPTIONAL_SECTION_IDS", "SECTION_IDS"]

#: ``(id, heading)`` of every section, in page order; each is always present.
SECTION_IDS = (
    ("summary", "Summary"),
    ("tearsheet", "Performance tearsheet (quantstats)"),
    ("margin", "Margin dashboard"),
    ("capital", "Capital efficiency"),
    ("liquidations", "Liquidation timeline"),
    ("attribution", "PnL attribution"),
    ("exposure", "Exposure and leverage"),
    ("greeks", "Greeks"),
    ("trades", "Trades (fills)"),
    ("orders", "Orders"),
    ("rejections", "Rejections"),
    ("comparison", "Cross vs isolated"),
    ("warnings", "Warnings"),
)

#: ``(id, heading, file)`` of sections shown only when the run folder holds ``file``; they
#: come before ``warnings`` in page order.
OPTIONAL_SECTION_IDS = (
    ("stress", "Stress tests", "stress.json"),
)

_PERCENT_METRICS = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate",
                    "min_distance_to_liquidation", "max_margin_ratio"}
_HEADLINE = ("total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown",
             "volatility", "trades", "win_rate", "fees_paid", "funding_paid", "liquidations",
             "margin_calls", "min_distance_to_liquidation", "max_margin_ratio")


def _events(run: RunData, name: str) -> list[dict[str, Any]]:
    return [e for e in run.events if e.get("event") == name]


def _ts(event: dict[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(int(event.get("ts_ms", 0)), unit="ms", tz="UTC")


def _col(run: RunData, name: str) -> pd.Series:
    if name in run.equity.columns:
        return run.equity[name].astype("float64")
    return pd.Series(np.nan, index=run.equity.index, dtype="float64")


def summary(run: RunData, attribution: dict[str, AssetAttribution]) -> str:
    cfg, m = run.config, run.metrics
    eq = _col(run, "equity")
    start = float(eq.iloc[0]) if len(eq) else float("nan")
    end = float(eq.iloc[-1]) if len(eq) else float("nan")
    ret = m.get("total_return")
    items = [
        ("total return", fmt(ret, percent=True), "bad" if (ret or 0) < 0 else "good"),
        ("max drawdown", fmt(m.get("max_drawdown"), percent=True), "bad"),
        ("Sharpe (365-day year)", fmt(m.get("sharpe")), ""),
        ("liquidations", fmt(m.get("liquidations", 0)),
         "bad" if m.get("liquidations") else ""),
        ("margin calls", fmt(m.get("margin_calls", 0)), "bad" if m.get("margin_calls") else ""),
        ("min distance to liquidation", fmt(m.get("min_distance_to_liquidation"),
                                            percent=True)
         + (f" ({m['min_distance_move']})" if m.get("min_distance_move") else ""), ""),
    ]
    capital = []
    for asset, a in attribution.items():
        capital.append({"asset": asset, "deposited": a.deposits, "final wallet": a.final_wallet,
                        "unrealized at end": a.unrealized_end,
                        "equity change": a.equity_change})
    cap = pd.DataFrame(capital)
    metrics = pd.DataFrame([{"metric": k, "value": fmt(m.get(k), percent=k in _PERCENT_METRICS)}
                            for k in _HEADLINE if k in m])
    parts = [cards(items),
             f"<p>Equity (USD valuation): start {esc(fmt(start))}, end {esc(fmt(end))}. "
             f"{len(run.equity):,} steps from {esc(cfg.get('start'))} to {esc(cfg.get('end'))}."
             + (f" Stopped: {esc(cfg.get('stopped_reason'))}." if cfg.get("stopped_reason")
                else "") + "</p>",
             "<h3>Capital (per settlement asset, exact booked amounts)</h3>",
             table(cap, sortable=False), "<h3>Headline metrics</h3>",
             table(metrics, sortable=False), note(COST_SIGNS)]
    if len(eq):
        peak = eq.cummax()
        dd = (eq / peak - 1.0).where(peak > 0, 0.0)
        parts.append(figure_html(line_figure({"equity": eq}, title="Equity", yaxis="USD"),
                                 "fig-equity"))
        parts.append(figure_html(line_figure({"drawdown": dd}, title="Drawdown", yaxis="",
                                             how="min", percent=True), "fig-drawdown"))
    return "".join(parts)


def tearsheet_section(html_doc: str | None, text: str) -> str:
    if html_doc is None:
        return note(text)
    return (note(text) + '<iframe title="quantstats tearsheet" sandbox="allow-same-origin" '
            f'onload="btFitFrame(this)" srcdoc="{esc(html_doc)}"></iframe>')


def _marker_y(ratio: object, default: float) -> float:
    # a ratio written to events.json as null (not finite: no margin balance left) or missing
    # is drawn at the default level
    if ratio is None:
        return default
    x = float(ratio)  # type: ignore[arg-type]
    return x if np.isfinite(x) else default


def margin(run: RunData) -> str:
    if run.equity.empty:
        return note("no steps were recorded")
    call_level = float(run.config.get("call_level") or 0.8)
    calls = _events(run, "MarginCalled")
    liqs = _events(run, "PositionLiquidated")
    ratio = _col(run, "margin_ratio").replace([np.inf, -np.inf], np.nan)
    # each liquidation is drawn at the ratio it breached: the account's (cross), the pool's,
    # or, in isolated mode, the position's own (its maintenance margin over its margin + PnL)
    own = [e for e in liqs if e.get("scope") == "position"]
    shared = [e for e in liqs if e.get("scope") != "position"]
    markers = [
        ("margin call", [_ts(e) for e in calls],
         [_marker_y(e.get("margin_ratio"), call_level) for e in calls], "triangle-up",
         "orange"),
        ("liquidation", [_ts(e) for e in shared],
         [_marker_y(e.get("margin_ratio_before"), 1.0) for e in shared], "x", "red"),
        ("isolated liquidation (the position's own margin ratio)", [_ts(e) for e in own],
         [_marker_y(e.get("margin_ratio_before"), 1.0) for e in own], "x", "darkred"),
    ]
    dist = _col(run, "distance_to_liquidation").replace([np.inf, -np.inf], np.nan)
    parts = [
        figure_html(line_figure(
            {"margin balance": _col(run, "margin_balance"),
             "initial margin": _col(run, "initial_margin"),
             "maintenance margin": _col(run, "maintenance_margin")},
            title="Margin balance vs initial and maintenance margin", yaxis="USD"),
            "fig-margin-balance"),
        figure_html(line_figure(
            {"account margin ratio (MM / margin balance)": ratio},
            title="Margin ratio (liquidations at the ratio they breached)", yaxis="", how="max",
            percent=True,
            hlines=[(call_level, f"margin call {call_level:.0%}", "orange"),
                    (1.0, "liquidation 100%", "red")], markers=markers), "fig-margin-ratio"),
        figure_html(line_figure(
            {"distance to liquidation": dist},
            title="Distance to liquidation: signed move of the underlying that triggers it "
                  "(blank = no liquidation price)", yaxis="", how="min", percent=True),
            "fig-distance"),
        figure_html(line_figure(
            {"stablecoins (fixed value)": _col(run, "collateral_fixed"),
             "coins (moving value, after haircut)": _col(run, "collateral_moving")},
            title="Collateral composition", yaxis="USD", stacked=True), "fig-collateral"),
    ]
    rows = [{"time": _ts(e), "event": e.get("event"), "scope": e.get("scope"),
             "margin ratio": e.get("margin_ratio", e.get("margin_ratio_before")),
             "margin balance (equity before a liquidation)": e.get("margin_balance",
                                                                   e.get("equity_before")),
             "maintenance margin": e.get("maintenance_margin")} for e in calls + liqs]
    frame = pd.DataFrame(rows).sort_values("time", kind="stable") if rows else pd.DataFrame()
    parts += ["<h3>Margin calls and liquidations</h3>",
              table(frame, percent=("margin ratio",))]
    return "".join(parts)


def liquidations(run: RunData) -> str:
    events = _events(run, "PositionLiquidated")
    if not events:
        return note("no liquidation happened in this run")
    out = []
    pos = run.positions
    for n, e in enumerate(events, start=1):
        t = _ts(e)
        flow = e.get("insurance_flow") or {}
        flow_txt = ", ".join(f"{Decimal(str(v)):,.2f} {k}" for k, v in sorted(flow.items())) \
            or "none"
        before = pd.DataFrame()
        if not pos.empty:
            earlier = pos[pos["ts"] < t]
            if not earlier.empty:
                last_ts = earlier["ts"].max()
                before = earlier[(earlier["ts"] == last_ts) & (earlier["qty"] != 0)][
                    ["symbol", "qty", "entry_price", "mark", "unrealized_pnl", "notional"]]
                trig = e.get("trigger_price") or {}
                before = before.assign(trigger_price=[trig.get(s) for s in before["symbol"]])
        steps = pd.DataFrame([{"action": s.get("action"), "symbol": s.get("symbol") or "—",
                               "qty closed": s.get("qty"), "price": s.get("price"),
                               "fee": s.get("fee"), "realized / cover": s.get("realized_pnl")}
                              for s in e.get("steps", [])])
        bankrupt = " — bankrupt (insurance fund covered the deficit)" \
            if e.get("is_bankrupt") else ""
        out.append(
            f'<div class="liq"><h3>#{n} at {esc(fmt(t))} UTC, {esc(e.get("scope", ""))}'
            f"{esc(bankrupt)}</h3><p>Reason: {esc(e.get('reason', ''))}. Margin ratio before: "
            f"{esc(fmt(e.get('margin_ratio_before'), percent=True))}. Equity before "
            f"{esc(fmt(e.get('equity_before')))} → after {esc(fmt(e.get('equity_after')))} "
            f"USD. Insurance fund flow: {esc(flow_txt)} (net flow into the fund: liquidation "
            "fees in, bankruptcy cover out; negative = the fund paid out).</p>"
            "<p class=note>Positions at the last step before the event, with the mark price "
            "that triggered the liquidation:</p>" + table(before, sortable=False)
            + "<p class=note>Steps (sizes closed, prices, fees, realized PnL):</p>"
            + table(steps, sortable=False) + "</div>")
    return "".join(out)


def attribution_section(run: RunData, attribution: dict[str, AssetAttribution]) -> str:
    if not attribution:
        return note("the journal is empty")
    out = [note("From the journal (exact Decimal): every booked amount goes to one component; "
                "'unrealized' values the positions still open at the end. This table is PnL: "
                "positive = gain, so funding received is positive here (funding_paid elsewhere "
                "is the same amount with the opposite sign). The parts sum exactly to the "
                "equity change.")]
    eq = _col(run, "equity")
    for asset, a in attribution.items():
        rows = [{"instrument": sym, **{c: parts[c] for c in COMPONENTS},
                 "total": sum(parts.values(), Decimal(0))} for sym, parts in a.by_symbol.items()]
        rows.append({"instrument": "TOTAL", **dict(a.totals), "total": a.parts_sum})
        frame = pd.DataFrame(rows)
        frame = frame.loc[:, [c for c in frame.columns
                              if c in ("instrument", "total") or (frame[c] != 0).any()]]
        ok = "good" if a.parts_sum == a.equity_change else "bad"
        out.append(f"<h3>{esc(asset)}</h3>" + table(frame, sortable=False)
                   + f'<p class="{ok}">sum of parts {a.parts_sum:,.12f} {esc(asset)} = equity '
                   f"change {a.equity_change:,.12f} (final wallet {a.final_wallet:,.12f} − "
                   f"deposits {a.deposits:,.12f} + unrealized {a.unrealized_end:,.12f}).</p>")
    if len(attribution) == 1 and len(eq):
        a = next(iter(attribution.values()))
        curve = float(eq.iloc[-1]) - float(a.deposits)
        out.append(note(f"Equity curve (float valuation) change from the deposits: "
                        f"{curve:,.6f}; difference to the booked attribution: "
                        f"{curve - float(a.equity_change):.3g}."))
    j = run.journal
    if not j.empty:
        fund = j[j["kind"] == "funding"]
        if not fund.empty:
            amounts = fund["amount"].map(lambda s: float(Decimal(str(s))))
            series = {f"{sym} ({asset})": grp.set_axis(pd.DatetimeIndex(fund.loc[grp.index,
                                                                                  "ts"])).cumsum()
                      for (sym, asset), grp in amounts.groupby([fund["symbol"], fund["asset"]])}
            out.append(figure_html(line_figure(
                {k: -v for k, v in series.items()},
                title=f"Cumulative funding paid ({COST_SIGNS.partition(': ')[2]})",
                yaxis="settlement asset"), "fig-funding"))
    return "".join(out)


def exposure(run: RunData) -> str:
    if run.equity.empty:
        return note("no steps were recorded")
    eq = _col(run, "equity").where(lambda s: s > 0)
    gross, net = _col(run, "gross_exposure"), _col(run, "net_exposure")
    parts = [figure_html(line_figure({"gross exposure": gross, "net exposure": net},
                                     title="Exposure (notional at mark)", yaxis="USD"),
                         "fig-exposure"),
             figure_html(line_figure({"gross leverage": gross / eq, "net leverage": net / eq},
                                     title="Leverage (exposure / equity)", yaxis="×"),
                         "fig-leverage")]
    pos = run.positions
    if not pos.empty:
        signed = np.sign(pos["qty"].astype("float64")) * pos["notional"].astype("float64")
        wide = pd.DataFrame({"ts": pos["ts"], "symbol": pos["symbol"], "v": signed}).pivot_table(
            index="ts", columns="symbol", values="v", aggfunc="sum")
        wide = wide.reindex(run.equity.index).fillna(0.0)
        top = wide.abs().max().sort_values(ascending=False, kind="stable").index[:10]
        parts.append(figure_html(line_figure({str(s): wide[s] for s in top},
                                             title="Signed notional per instrument (top 10)",
                                             yaxis="USD"), "fig-notional"))
    return "".join(parts)


#: Units of the account greeks the engine records (``Engine._record_greeks``): (axis, meaning).
_GREEK_UNITS = {
    "delta": ("USD", "USD value change per +100 % move of every underlying "
                     "(coins × price, summed over underlyings)"),
    "gamma": ("USD per 1 %", "change of the USD delta per +1 % move of the underlyings"),
    "vega": ("USD per vol point", "value change per +1 point (0.01) of implied volatility"),
    "theta": ("USD per day", "value change per calendar day, all else equal"),
}


def greeks(run: RunData) -> str:
    cols: dict[str, tuple[pd.Series, bool]] = {}
    for frame, is_engine in ((run.equity, True), (run.records, False)):
        for c in frame.columns:
            name = str(c).lower().removeprefix("greek_").removeprefix("greeks_")
            if name in _GREEK_UNITS and name not in cols:
                cols[name] = (frame[c].astype("float64"), is_engine)
    if cols:
        parts = []
        for k, (v, is_engine) in cols.items():
            axis, meaning = _GREEK_UNITS[k] if is_engine else (
                "as recorded", "recorded by the strategy (ctx.record), in its own units")
            parts.append(figure_html(line_figure({k: v}, title=f"Portfolio {k}: {meaning}",
                                                 yaxis=f"{k} ({axis})"), f"fig-greek-{k}"))
        return "".join(parts)
    held = run.positions["symbol"].astype(str).str.count("-").ge(2).any() \
        if not run.positions.empty else False
    if held:
        return note("options were held, but this run recorded no per-step greeks "
                    "(columns delta/gamma/vega/theta in equity or records).")
    return note("no options were held in this run; no greeks to show")


def trades(run: RunData) -> str:
    f = run.fills
    if f.empty:
        return note("no fills: the strategy placed no order that executed")
    cols = [c for c in ("ts", "step_ts", "order_id", "symbol", "qty", "price", "fee",
                        "fee_asset", "liquidity", "realized_pnl", "tag", "is_ambiguous")
            if c in f.columns]
    return note(f"{len(f):,} fills; click a column heading to sort.") \
        + table(f[cols], table_id="trades-table")


def orders(run: RunData) -> str:
    o = run.orders
    if o.empty:
        return note("no orders were submitted")
    o = o.copy()
    if "created_ms" in o.columns:
        o.insert(0, "created", pd.to_datetime(o.pop("created_ms"), unit="ms", utc=True))
    if "closed_ms" in o.columns:
        closed = pd.to_numeric(o.pop("closed_ms"), errors="coerce")
        o["closed"] = pd.to_datetime(closed.where(closed > 0), unit="ms", utc=True)
    empty = [c for c in o.columns if o[c].isna().all()]  # e.g. no stop orders: no stop price
    o = o.drop(columns=empty)
    return note(f"{len(o):,} orders; click a column heading to sort"
                + (f"; columns empty for every order left out: {', '.join(empty)}."
                   if empty else ".")) \
        + table(o, table_id="orders-table")


def rejections(run: RunData) -> str:
    r = run.rejections
    if r.empty:
        return note("no order was rejected")
    counts = r.groupby("reason").size().rename("count").reset_index() \
        .sort_values("count", ascending=False, kind="stable")
    return table(counts, sortable=False) + table(r, table_id="rejections-table")


def comparison(run: RunData) -> str:
    if run.comparison is None:
        return note("this run was not compared across margin modes "
                    "(run with --compare-margin-modes to add it)")
    # one column per margin mode, one row per measure (narrow enough for the page), each
    # value in its unit (backtester.display)
    cmp = run.comparison.set_index("margin_mode")
    rows = [{"measure": str(col).replace("_", " "),
             **{str(m): display.metric(str(col), cmp.loc[m, col]) for m in cmp.index}}
            for col in cmp.columns]
    out = [table(pd.DataFrame(rows), sortable=False, table_id="comparison-table"),
           note(COST_SIGNS)]
    this = str(run.config.get("margin_mode", "this run"))
    curves = {this: _col(run, "equity")}
    for mode, path in run.alternatives.items():
        try:
            alt = pd.read_parquet(path / "equity.parquet", columns=["ts", "equity"])
        except (OSError, ValueError, KeyError):
            continue
        curves[mode] = alt.set_index("ts")["equity"].astype("float64")
        out.append(note(f"{mode} run files: {path.name}/"))
    same = _identical_curves(curves)
    if same:
        out.append(note("Identical equity curves (drawn on top of each other; told apart by "
                        "their dash patterns): " + "; ".join(" = ".join(g) for g in same)))
    styles = {name: _MODE_LINES[k % len(_MODE_LINES)] for k, name in enumerate(curves)}
    out.append(figure_html(line_figure(curves, title="Equity by margin mode", yaxis="USD",
                                       styles=styles), "fig-compare"))
    return "".join(out)


#: Line styles of the equity curves by margin mode: wide solid, then dashed and dotted on top,
#: so that curves that coincide stay visible.
_MODE_LINES: tuple[dict[str, object], ...] = (
    {"width": 5, "color": "#2b59c3"},
    {"width": 2.5, "dash": "dash", "color": "#d1495b"},
    {"width": 2, "dash": "dot", "color": "#1e7b34"},
)


def _identical_curves(curves: dict[str, pd.Series]) -> list[list[str]]:
    # groups of curves with the same values at the same times (floats within 1e-9 relative)
    groups: list[list[str]] = []
    for name, s in curves.items():
        for g in groups:
            ref = curves[g[0]]
            if len(ref) == len(s) and ref.index.equals(s.index) and np.allclose(
                    ref.to_numpy(), s.to_numpy(), rtol=1e-9, atol=0.0, equal_nan=True):
                g.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def warnings_panel(run: RunData) -> list[str]:
    cfg = run.config
    items = list(dict.fromkeys(run.warnings))
    if cfg.get("is_synthetic") and not any("synthetic" in w for w in items):
        items.insert(0, "synthetic data: the dataset is generated, not market history")
    for sym, g in sorted((cfg.get("gaps") or {}).items()):
        if isinstance(g, dict) and g.get("missing_bars"):
            items.append(f"data gaps in {sym}: {g.get('count')} gap(s), {g.get('missing_bars')} "
                         f"missing bars ({fmt(g.get('pct_missing'), digits=3)}%), longest "
                         f"{int(g.get('longest_ms') or 0) / 3_600_000:.1f} h")
    for sym, n in sorted((cfg.get("mark_fallback_bars") or {}).items()):
        if n:
            items.append(f"mark fallback: {sym} used the last price for {n} bar(s) without a "
                         "mark price")
    f = run.fills
    if not f.empty and "is_ambiguous" in f.columns and f["is_ambiguous"].any():
        n = int(f["is_ambiguous"].sum())
        items.append(f"ambiguous fills: {n} fill(s) where the bar's path could not tell "
                     "whether the stop or the limit was touched first")
    if not run.positions.empty:
        opts = sorted({s for s in run.positions["symbol"].astype(str) if s.count("-") >= 2})
        if opts and cfg.get("is_synthetic"):
            items.append(f"theoretical option marks: {len(opts)} option(s) were held and the "
                         "synthetic dataset's option marks are model prices, not exchange marks")
        elif opts:
            items.append(f"option marks: {len(opts)} option(s) were held; their marks come from "
                         "the dataset's option_marks (see mark fallback for bars without one)")
    return items


def _nearest_move(nearest: object) -> str:
    # the headline of stress.json's nearest_liquidation (absent in files written before it)
    if not isinstance(nearest, dict):
        return "n/a"
    c = nearest.get("nearest")
    if not isinstance(c, dict):
        return "none to {} / {}".format(*_limits(nearest))
    if c.get("move") == 0.0:
        return "already liquidating"
    who = "all together" if c.get("underlying") == "all" else f"{c.get('underlying')} alone"
    return f"{display.percent(c.get('move'), signed=True)} ({who}, {c.get('direction')})"


def _limits(nearest: dict[str, Any]) -> tuple[str, str]:
    # the searched range as stress.json records it
    limits = nearest.get("limits")
    limits = limits if isinstance(limits, dict) else {}
    return (display.percent(limits.get("down"), signed=True),
            display.percent(limits.get("up"), signed=True))


def _nearest_rows(nearest: object) -> list[dict[str, str]]:
    if not isinstance(nearest, dict):
        return []
    down, up_to = _limits(nearest)
    found: dict[str, dict[str, str]] = {}
    for c in nearest.get("moves") or []:
        if not isinstance(c, dict):
            continue
        label = str(c.get("underlying"))
        row = found.setdefault(label, {"moved": "all together" if label == "all"
                                       else f"{label} alone", "fall": "", "rise": ""})
        up = c.get("direction") == "up"
        move = c.get("move")
        row["rise" if up else "fall"] = (display.percent(move, signed=True) if move is not None
                                         else f"none to {up_to}" if up else f"none to {down}")
    return list(found.values())


def stress(data: dict[str, Any]) -> str:
    """Render ``stress.json`` (``backtester stress RUN_DIR``): scenarios, smallest crash, MC."""
    ccy = str(data.get("valuation_currency") or "")
    rows = [{"scenario": s.get("name"), f"equity ({ccy})": s.get("equity"),
             "change": s.get("equity_change"), "margin ratio": s.get("margin_ratio"),
             "status": s.get("status"),
             "liquidated positions": ", ".join(s.get("liquidated") or []) or "none"}
            for s in data.get("scenarios") or [] if isinstance(s, dict)]

    def crash(key: str) -> str:
        c = data.get(key)
        if not isinstance(c, dict):
            return "n/a"
        return "none down to -99%" if c.get("move") is None else fmt(c["move"], percent=True)

    items = [("nearest liquidating move", _nearest_move(data.get("nearest_liquidation")), "bad"),
             ("smallest uniform crash that liquidates", crash("smallest_crash"), "bad"),
             ("smallest BTC-only crash", crash("smallest_btc_crash"), "")]
    dist = data.get("distance_to_liquidation")
    if isinstance(dist, dict):
        items.append(("closest distance during the run", fmt(dist.get("minimum"), percent=True),
                      ""))
    mc = data.get("monte_carlo")
    if isinstance(mc, dict):
        items.append(("liquidation probability (Monte Carlo)",
                      f"{fmt(mc.get('probability'), percent=True)} "
                      f"[{fmt(mc.get('ci_low'), percent=True)}, "
                      f"{fmt(mc.get('ci_high'), percent=True)}]", "bad"))
    parts = [cards(items),
             table(pd.DataFrame(rows), percent=("margin ratio",), table_id="stress-table")]
    moves = _nearest_rows(data.get("nearest_liquidation"))
    if moves:
        parts.append(table(pd.DataFrame(moves), sortable=False, table_id="stress-moves"))
        parts.append(note("fall / rise of the underlying alone (every other price held at its "
                          "mark) or of all together that liquidates the account; searched to "
                          "{} and {}".format(*_limits(data["nearest_liquidation"]))))
    if isinstance(mc, dict):
        parts.append(note(f"{mc.get('n_paths')} paths over {mc.get('horizon_bars')} bars, "
                          f"blocks of {mc.get('block_bars')} bars, seed {mc.get('seed')}, "
                          f"{fmt(mc.get('confidence'), percent=True)} Wilson interval"))
    parts.extend(note(str(n)) for n in data.get("notes") or [])
    return "".join(parts)
