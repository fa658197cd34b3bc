"""Margin state every bar, order admission, expiry settlement and the liquidation process.

Valuation currency is USD: a collateral asset is worth ``balance x index price`` (stablecoins
1 USD) in equity and ``x haircut`` in the margin balance. Requirements add up in cross margin:
each position's initial and maintenance margin is computed on its own and summed; the pool
offsets PnL, not requirements (DESIGN §4).

Collateral pools (:mod:`backtester.margin.pools`): one USD pool (bybit, okx, portfolio mode),
or one pool per asset (binance-usdm per settle asset, binance-coinm per coin, deribit per
currency) where a position draws only on its settle asset's pool. Each pool has its own
margin balance, requirements and status; with several pools the account's fields are the
totals and the worst pool's ratio and status (see :class:`MarginState`).

Intrabar check (default): positions and collateral are grouped by underlying; each group is
evaluated with all its legs at the bar's mark low, mark high and mark close (collateral at the
index low/high/close) and the worst of the three is taken per group (per group and pool when
there are several pools). A pool is liquidated when its summed maintenance margin reaches its
margin balance; its liquidation closes only its own positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from backtester.accounting import EntryKind, Position
from backtester.config import MarginCheck, MarginMode
from backtester.events import InstrumentExpired
from backtester.instruments import OptionType
from backtester.margin.fused import LegConstants, fused_state
from backtester.margin.liquidation import LiquidationMixin
from backtester.margin.options import option_requirements
from backtester.margin.pools import PoolsMixin, PoolState, liquidation_status, pool_sums
from backtester.margin.portfolio import PortfolioPosition, portfolio_margin
from backtester.margin.quiet import QuietStretch
from backtester.margin.requirements import rated_requirement
from backtester.numeric import ZERO, dec, to_money
from backtester.orders import OrderRejected, RejectReason, Side
from backtester.pricing import black76

if TYPE_CHECKING:
    from backtester.data.feed import SymbolFeed
    from backtester.engine import Engine
    from backtester.margin.profile_data import ProfileData
    from backtester.orders import Order

__all__ = ["MarginEngine", "MarginState"]

_SCENARIOS = (0, 1, 2)  # mark low, mark high, mark close
_INF = float("inf")
_MS_PER_YEAR = 365.0 * 86_400_000


@dataclass(slots=True, kw_only=True)
class MarginState:
    """The account's margin at one evaluation, USD. ``margin_ratio`` = MM / margin balance.

    With one collateral pool the fields are that pool's and ``pools`` is empty. With several
    (:mod:`backtester.margin.pools`), as in the calculator: ``pools`` holds each pool's
    :class:`PoolState`; ``margin_balance``, ``initial_margin``, ``maintenance_margin`` and
    ``available`` are totals over the pools (an order needs its own pool's available);
    ``margin_ratio`` and ``status`` are the worst pool's (liquidate > call > ok); equity,
    wallet, PnL, exposures and the collateral split are account totals.
    """

    equity: float = 0.0
    wallet_balance: float = 0.0
    unrealized_pnl: float = 0.0
    margin_balance: float = 0.0
    initial_margin: float = 0.0
    maintenance_margin: float = 0.0
    margin_ratio: float = 0.0
    available: float = 0.0
    status: str = "ok"
    gross_exposure: float = 0.0
    net_exposure: float = 0.0
    distance_to_liquidation: float = _INF
    collateral_fixed: float = 0.0
    collateral_moving: float = 0.0
    #: unsettled session PnL and funding (daily-settlement profiles), USD: in stablecoins, in
    #: coins (part of the margin balance, not of the wallet's collateral split above)
    session_fixed: float = 0.0
    session_moving: float = 0.0
    positions: list[tuple[str, float, float, float, float, float, float]] = field(
        default_factory=list)
    greeks: dict[str, float] = field(default_factory=dict)
    pools: dict[str, PoolState] = field(default_factory=dict)


class MarginEngine(PoolsMixin, LiquidationMixin):
    """Evaluates the account each bar and runs the profile's liquidation process."""

    #: private switch: evaluate cross books without options in one fused pass (bit-identical
    #: to the general evaluation; tests compare both)
    _fast_path = True
    #: private switch: skip the evaluation of bars that provably stay healthy and rebuild
    #: their states after the run (``backtester.margin.quiet``; bit-identical, tested)
    _quiet_path = True

    def __init__(self, engine: Engine, *, profile: ProfileData) -> None:
        self.e = engine
        self.profile = profile
        cfg = engine.config
        self.mode = cfg.margin_mode
        self.intrabar = cfg.margin_check is MarginCheck.INTRABAR
        self.call_level = cfg.call_level
        self.liq_slippage = (cfg.liquidation_slippage_bps * 1e-4
                             if cfg.liquidation_slippage_bps is not None
                             else profile.liquidation_slippage_rate)
        self.state = MarginState()
        self.margin_calls = 0
        self.liquidations = 0
        self._in_call = False
        self._liq_start_size: dict[str, Decimal] = {}
        self._taken_over = False
        self._legs: dict[str, LegConstants | None] = {}
        self._option_free = False
        # one pool per asset (per-asset profiles, except portfolio mode whose grid spans the
        # account); False: one USD pool
        self._pooled = profile.pool != "usd" and self.mode is not MarginMode.PORTFOLIO
        # the fused pass knows neither session ledgers (daily settlement) nor options
        self._fuse = self._fast_path and self.mode is MarginMode.CROSS \
            and profile.daily_settlement_hour_utc is None and not profile.rates
        self.quiet: QuietStretch | None = None  # set by the engine when its loop starts
        # (coin, factor, symbol) while a bankruptcy price is solved (liquidation.py): the
        # symbol's marks and underlying price and the coin's own price (collateral, session,
        # conversion of what settles in it) are scaled by the factor; the rest stays put
        self._shift: tuple[str, float, str] | None = None
        self._liability_noted = False  # the liability assumption is in the run's warnings
        self.state = self.evaluate_now()

    # -- prices ---------------------------------------------------------------------------
    def price_usd(self, asset: str, which: int = 2) -> float:
        """USD price of ``asset``: 1 for stablecoins, else its index low/high/close (0/1/2)."""
        if self.e.feed.is_stable(asset):
            return 1.0
        f = self.e.feed.index_feeds.get(asset)
        if f is None or f.idx < 0:
            px = 0.0 if f is None else f.io[0]
        else:
            i = f.idx
            px = f.il[i] if which == 0 else f.ih[i] if which == 1 else f.ic[i]
        shift = self._shift
        return px * shift[1] if shift is not None and shift[0] == asset else px

    def _und(self, f: SymbolFeed, w: int, *, forward: bool = False) -> float:
        # the underlying price of a leg at scenario w — its index, or with ``forward`` an
        # option's own forward (SymbolFeed.fc; the index for other instruments) — scaled
        # while a shift is on
        i = f.idx
        if forward:
            und = f.fl[i] if w == 0 else f.fh[i] if w == 1 else f.fc[i]
        else:
            und = f.il[i] if w == 0 else f.ih[i] if w == 1 else f.ic[i]
        shift = self._shift
        return und * shift[1] if shift is not None and shift[2] == f.symbol else und

    def _mark(self, f: SymbolFeed, w: int) -> float:
        # the leg's mark at scenario w (0 low, 1 high, 2 close of its underlying); options are
        # repriced with Black-76 at their forward's low/high at the bar's implied vol
        i = f.idx
        shift = self._shift
        factor = shift[1] if shift is not None and shift[2] == f.symbol else None
        if w == 2 and factor is None:
            return f.mc[i]
        if f.option_iv is not None:
            iv = f.option_iv[i]
            if iv == iv and iv >= 0:  # IV 0: an option marked at intrinsic (or worthless)
                inst = f.instrument
                und = self._und(f, w, forward=True)
                t = max((inst.expiry_ms or 0) - self.e.now_ms, 0) / _MS_PER_YEAR
                is_call = inst.option_type is OptionType.CALL
                pricer = black76.price if inst.is_linear else black76.inverse_price
                return float(pricer(und, inst.strike or 0.0, t, iv, is_call))
        mark = f.ml[i] if w == 0 else f.mh[i] if w == 1 else f.mc[i]
        if factor is None or f.instrument.is_option:
            return mark  # an option without an implied vol is held at its mark
        return mark * factor

    def greeks(self) -> dict[str, float]:
        """Account greeks per underlying at the current closes (only when options are held).

        Keys ``<COIN>.delta`` (coins: options N(d1) x size plus futures/perps in coin terms),
        ``<COIN>.gamma`` (per USD), ``<COIN>.vega`` (USD per vol point), ``<COIN>.theta`` (USD
        per day) and, for coin-settled books, ``<COIN>.coin_delta`` — the premium-adjusted coin
        exposure a hedge must offset.
        """
        out: dict[str, float] = {}
        feeds = self.e.feed.symbols
        for sym, pos in self.e.account.positions.items():
            if pos.qty_f == 0.0:
                continue
            inst = pos.instrument
            f = feeds[sym]
            i = f.idx
            b = inst.base
            size = pos.qty_f * inst.cs
            if inst.is_option:
                iv = f.option_iv[i] if f.option_iv is not None else float("nan")
                if not (iv == iv and iv >= 0):
                    continue
                fwd = f.fc[i]
                t = max((inst.expiry_ms or 0) - self.e.now_ms, 0) / _MS_PER_YEAR
                k = inst.strike or 0.0
                call = inst.option_type is OptionType.CALL
                d = float(black76.delta(fwd, k, t, iv, call))
                out[f"{b}.delta"] = out.get(f"{b}.delta", 0.0) + size * d
                out[f"{b}.gamma"] = out.get(f"{b}.gamma", 0.0) + size * float(
                    black76.gamma(fwd, k, t, iv, call))
                out[f"{b}.vega"] = out.get(f"{b}.vega", 0.0) + size * float(
                    black76.vega(fwd, k, t, iv, call))
                out[f"{b}.theta"] = out.get(f"{b}.theta", 0.0) + size * float(
                    black76.theta(fwd, k, t, iv, call))
                if not inst.is_linear:
                    out[f"{b}.coin_delta"] = out.get(f"{b}.coin_delta", 0.0) + size * float(
                        black76.inverse_delta(fwd, k, t, iv, call))
            else:
                mark = f.mc[i]
                coins = size if inst.is_linear else size / mark
                out[f"{b}.delta"] = out.get(f"{b}.delta", 0.0) + coins
                if not inst.is_linear:
                    # an inverse contract's coin PnL: d/dP of N (1/E - 1/P) = N / P^2, in
                    # coins per USD; times P it is the coin exposure N / P
                    out[f"{b}.coin_delta"] = out.get(f"{b}.coin_delta", 0.0) + coins
        return out

    # -- per position ---------------------------------------------------------------------
    def underlying_price(self, f: SymbolFeed, w: int = 2) -> float:
        """Underlying price (USD) a leg's requirement reads at scenario ``w`` (0 low, 1 high,
        2 close): the index, except for options under Deribit's (and Bit.com's) standard
        margin, whose formulas read the underlying's mark — the option's own forward
        (``SymbolFeed.fc``); Bybit's option formulas read the index."""
        return self._und(f, w, forward=f.instrument.is_option
                         and self.profile.option_margin_style != "bybit")

    def requirement(self, pos: Position, mark: float, und: float) -> tuple[float, float, float]:
        """Return (notional, initial margin, maintenance margin) in the settle currency."""
        inst = pos.instrument
        q = pos.qty_f
        if inst.is_option:
            if q >= 0:
                return inst.notional(q, und), 0.0, 0.0
            return self._short_option(pos, mark, und)
        rates = self.profile.rates.get(inst.symbol)
        if rates is not None:
            # size-dependent rates (Deribit standard margin): leverage plays no part
            r = rated_requirement(inst, q, mark, rates=rates, index_price=und)
            return r.notional, r.initial_margin, r.maintenance_margin
        notional = inst.notional(q, mark)
        im = notional / pos.leverage
        tiers = self.profile.tiers.get(inst.symbol)
        mm = (tiers.maintenance(notional) if tiers is not None
              else notional * self.profile.default_mmr)
        return notional, im, mm

    def _short_option(self, pos: Position, mark: float, und: float) -> tuple[float, float, float]:
        # the profile's standard short-option formula (margin-rules §5.4 / §7.3)
        inst = pos.instrument
        p = self.profile
        req = option_requirements(
            style=p.option_margin_style,  # type: ignore[arg-type]
            option_type="call" if inst.option_type is OptionType.CALL else "put",
            strike=inst.strike or 0.0, underlying=und, mark=max(mark, 0.0), qty=pos.qty_f,
            contract_size=inst.cs, maintenance_rate=p.option_maintenance_rate,
            liquidation_fee_rate=p.option_liquidation_fee_rate
            if p.option_margin_style == "bybit" else None)
        return inst.notional(pos.qty_f, und), req.initial_margin, req.maintenance_margin

    def position_value(self, pos: Position, mark: float, f: SymbolFeed | None = None) -> float:
        """Unrealized PnL (futures) or market value (options) in the settle currency."""
        inst = pos.instrument
        if inst.is_option:
            return pos.qty_f * inst.cs * mark
        return inst.pnl(pos.qty_f, pos.entry_f, mark)

    # -- evaluation -----------------------------------------------------------------------
    def _fused(self, *, intrabar: bool) -> MarginState | None:
        st = fused_state(self, intrabar=intrabar)
        self._option_free = st is not None  # the fused pass only takes books without options
        return st

    def evaluate_now(self) -> MarginState:
        """Evaluate at the current closes (no intrabar extremes)."""
        if self._fuse:
            st = self._fused(intrabar=False)
            if st is not None:
                return st
        return self._evaluate(scenario_of=None)

    def _evaluate(self, scenario_of: dict[str, int] | None, *,
                  multi: bool | None = None) -> MarginState:
        acct = self.e.account
        feeds = self.e.feed.symbols
        st = MarginState()
        bal_usd = 0.0
        mb_coll = 0.0
        stable = self.e.feed.is_stable
        # several pools: pool -> [collateral, session, upnl, im, mm, isolated allocations]
        if multi is None:
            multi = self._multi_pool()
        acc: dict[str, list[float]] | None = {} if multi else None
        face = self.face_value_assets()
        has_liability = False
        for asset, bal in acct.balances.items():
            w = scenario_of.get(asset, 2) if scenario_of else 2
            px = self.price_usd(asset, w)
            b = float(bal)
            bal_usd += b * px
            has_liability = has_liability or b < 0.0
            v = b * px * (self.profile.haircut(asset) if b > 0 and asset not in face else 1.0)
            mb_coll += v
            if stable(asset):
                st.collateral_fixed += v
            else:
                st.collateral_moving += v
            if acc is not None and b != 0.0:
                pool_sums(acc, asset)[0] += v
        session = 0.0  # unsettled session PnL and funding (daily-settlement profiles)
        for asset, bal in acct.session.items():
            if bal:
                x = float(bal) * self.price_usd(
                    asset, scenario_of.get(asset, 2) if scenario_of else 2)
                session += x
                if stable(asset):
                    st.session_fixed += x
                else:
                    st.session_moving += x
                if acc is not None:
                    pool_sums(acc, asset)[1] += x
        upnl = 0.0
        im = mm = 0.0
        gross = net = 0.0
        iso_alloc = 0.0
        isolated = self.mode is MarginMode.ISOLATED
        for sym, pos in acct.positions.items():
            if pos.qty_f == 0.0:
                continue
            f = feeds[sym]
            inst = pos.instrument
            w = scenario_of.get(inst.base, 2) if scenario_of else 2
            mark = self._mark(f, w)
            und = self.underlying_price(f, w)
            px_settle = self.price_usd(inst.settle, scenario_of.get(inst.settle, 2)
                                       if scenario_of else 2)
            value = self.position_value(pos, mark, f)
            notional, p_im, p_mm = self.requirement(pos, mark, und)
            if isolated and pos.isolated_margin is not None:
                iso_alloc += float(pos.isolated_margin) * px_settle
            upnl += value * px_settle
            im += p_im * px_settle
            mm += p_mm * px_settle
            if acc is not None:
                a = pool_sums(acc, inst.settle)
                a[2] += value * px_settle
                a[3] += p_im * px_settle
                a[4] += p_mm * px_settle
                if isolated and pos.isolated_margin is not None:
                    a[5] += float(pos.isolated_margin) * px_settle
            usd = inst.notional_usd(pos.qty_f, und if inst.is_option else mark)
            gross += usd
            net += usd if pos.qty_f > 0 else -usd
            if scenario_of is None:
                st.positions.append((sym, pos.qty_f, pos.entry_f, mark, value, notional,
                                     float(pos.isolated_margin) if pos.isolated_margin
                                     is not None else float("nan")))
        order_im = None
        if self.mode is MarginMode.PORTFOLIO:
            if im > 0.0 or mm > 0.0:
                # requirements net across the pool: the grid's worst loss replaces the sum
                im, mm = self._portfolio_requirement(scenario_of)
            if self.e.orders:
                # open-order rule: the worse of all working buys / all working sells filled
                order_im = self._portfolio_with_orders(None)[0] - im
        st.wallet_balance = bal_usd
        st.unrealized_pnl = upnl
        st.equity = bal_usd + session + upnl
        st.margin_balance = mb_coll + session + upnl
        st.initial_margin = im
        st.maintenance_margin = mm
        st.margin_ratio = mm / st.margin_balance if st.margin_balance > 0 else (
            _INF if mm > 0 else 0.0)
        if isolated:
            # isolated: allocated margins are out of the pool; positions' PnL is not available
            st.available = mb_coll - iso_alloc - self._order_im()
        else:
            st.available = st.margin_balance - im - (
                self._order_im() if order_im is None else order_im)
        st.gross_exposure = gross
        st.net_exposure = net
        st.status = liquidation_status(st.margin_balance, mm, st.margin_ratio, self.call_level,
                                       has_liability=has_liability)
        if acc is not None and len(acc) > 1:
            self._split_pools(st, acc, isolated=isolated)
        return st

    def _order_im(self, pool: str | None = None) -> float:
        # working orders' initial margin, USD (of the orders drawing on ``pool`` if given)
        total = 0.0
        for o in self.e.orders.values():
            if o.is_reduce_only:
                continue
            f = self.e.feed.symbols[o.symbol]
            if f.idx < 0:
                continue
            inst = f.instrument
            if pool is not None and self.pool_of(inst.settle) != pool:
                continue
            px = float(o.price) if o.price is not None else f.c[f.idx]
            lev = self.e.account.leverage.get(o.symbol, self.e.account.default_leverage)
            rates = self.profile.rates.get(o.symbol)
            if inst.is_option:
                total += (float(o.qty) * inst.cs * px * self.price_usd(inst.settle)
                          if o.side is Side.BUY else 0.0)
            elif rates is not None:
                # the order's own size at its rate (size-dependent rates)
                total += rated_requirement(inst, float(o.qty), px, rates=rates,
                                           index_price=px).initial_margin \
                    * self.price_usd(inst.settle)
            else:
                total += inst.notional(float(o.qty), px) / lev * self.price_usd(inst.settle)
        return total

    def _worst(self) -> MarginState:
        # group legs and collateral by underlying; take each group's worst of low/high/close
        if self._fuse:
            fused = self._fused(intrabar=True)
            if fused is not None:
                return fused
        return self._worst_general()

    def _worst_general(self) -> MarginState:
        if self._multi_pool():
            return self._worst_pools(self._pool_keys())
        acct = self.e.account
        groups: set[str] = {p.instrument.base for p in acct.positions.values() if p.qty_f != 0.0}
        groups |= {a for a, b in acct.balances.items() if b != 0 and not self.e.feed.is_stable(a)}
        if not groups:
            return self.evaluate_now()
        scenario: dict[str, int] = {}
        for g in sorted(groups):
            best_w, best_excess = 2, _INF
            for w in _SCENARIOS:
                excess = self._group_excess(g, w)
                if excess < best_excess:
                    best_w, best_excess = w, excess
            scenario[g] = best_w
        st = self._evaluate(scenario, multi=False)
        close = self._evaluate(None, multi=False)  # evaluate_now: the fused pass declined
        close.margin_balance, close.maintenance_margin = st.margin_balance, st.maintenance_margin
        close.margin_ratio, close.status = st.margin_ratio, st.status
        close.available = min(close.available, st.available)
        return close

    def _group_excess(self, group: str, w: int, pool: str | None = None) -> float:
        # margin excess (USD) of one underlying's collateral and legs at scenario w; with
        # ``pool`` only what draws on that pool
        acct = self.e.account
        feeds = self.e.feed.symbols
        px_g = self.price_usd(group, w)
        excess = 0.0
        bal = acct.balances.get(group)
        if bal is not None and (pool is None or self.pool_of(group) == pool):
            b = float(bal)
            excess += b * px_g * (self.profile.haircut(group)
                                  if b > 0 and group not in self.face_value_assets() else 1.0)
        for sym, pos in acct.positions.items():
            inst = pos.instrument
            if pos.qty_f == 0.0 or inst.base != group or (
                    pool is not None and self.pool_of(inst.settle) != pool):
                continue
            f = feeds[sym]
            mark = self._mark(f, w)
            und = self.underlying_price(f, w)
            px_settle = px_g if inst.settle == group else self.price_usd(inst.settle)
            if self.mode is MarginMode.PORTFOLIO:
                excess += self.position_value(pos, mark, f) * px_settle
                continue
            _, _, p_mm = self.requirement(pos, mark, und)
            excess += (self.position_value(pos, mark, f) - p_mm) * px_settle
        if self.mode is MarginMode.PORTFOLIO:
            excess -= self._portfolio_requirement({group: w}, only=group)[1]
        return excess

    def _portfolio_requirement(self, scenario_of: dict[str, int] | None, *,
                               only: str | None = None,
                               extra: Sequence[tuple[str, float]] = ()) -> tuple[float, float]:
        """Portfolio margin (USD): the worst loss over the scenario grid of each underlying's
        risk unit (Deribit-like, ``backtester.margin.portfolio``); maintenance a fraction of it.
        ``extra`` = (symbol, signed contracts) pairs add hypothetical trades (working orders
        filled, order admission)."""
        feeds = self.e.feed.symbols
        book: list[PortfolioPosition] = []
        prices: dict[str, float] = {}
        held = dict(self.e.account.positions.items())
        for sym, dq in extra:
            base = held.get(sym)
            probe = _probe(None, feeds[sym].instrument, (base.qty_f if base else 0.0) + dq)
            probe.entry_f = base.entry_f if base else feeds[sym].mc[feeds[sym].idx]
            held[sym] = probe
        for sym, pos in held.items():
            inst = pos.instrument
            if pos.qty_f == 0.0 or (only is not None and inst.base != only):
                continue
            f = feeds[sym]
            i = f.idx
            w = scenario_of.get(inst.base, 2) if scenario_of else 2
            und = self._und(f, w)
            prices.setdefault(inst.base, und)
            fwd = self._und(f, w, forward=True)
            iv = f.option_iv[i] if f.option_iv is not None else None
            book.append(PortfolioPosition(
                symbol=sym, underlying=inst.base,
                kind="option" if inst.is_option else (
                    "perpetual" if inst.is_perpetual else "future"),
                is_linear=inst.is_linear, qty=pos.qty_f, contract_size=inst.cs,
                mark_price=self._mark(f, w),
                strike=inst.strike, option_type=None if inst.option_type is None
                else inst.option_type.value,  # type: ignore[arg-type]
                expiry_ms=inst.expiry_ms, iv=iv if iv is not None and iv == iv else None,
                forward=fwd if inst.is_option else None))
        if not book:
            return 0.0, 0.0
        res = portfolio_margin(book, underlying_prices=prices, time_ms=self.e.now_ms,
                               params=self.profile.portfolio_params)
        im = sum(v * self._currency_usd(c, scenario_of) for c, v in res.initial_margin.items())
        mm = sum(v * self._currency_usd(c, scenario_of)
                 for c, v in res.maintenance_margin.items())
        return im, mm

    def _portfolio_with_orders(self, new: tuple[str, float] | None) -> tuple[float, str]:
        """Portfolio initial margin (USD) under the open-order rule: the greater of the
        requirement with every working buy filled and with every working sell filled (``new``,
        a (symbol, signed contracts) order being admitted, counted with its side); returns
        (requirement, ``"buys"`` or ``"sells"``). Reduce-only orders never add risk."""
        buys: list[tuple[str, float]] = []
        sells: list[tuple[str, float]] = []
        for o in self.e.orders.values():
            if not o.is_reduce_only and self.e.feed.symbols[o.symbol].idx >= 0:
                q = float(o.signed_qty)
                (buys if q > 0 else sells).append((o.symbol, q))
        if new is not None:
            (buys if new[1] > 0 else sells).append(new)
        im_buys = self._portfolio_requirement(None, extra=buys)[0]
        im_sells = self._portfolio_requirement(None, extra=sells)[0]
        return (im_buys, "buys") if im_buys >= im_sells else (im_sells, "sells")

    def note_liability(self) -> None:
        """Say once, in the run's warnings, what a liability (negative balance) assumes."""
        if not self._liability_noted:
            self._liability_noted = True
            self.e.warnings.append(
                "liability assumption: a negative balance is a loan against the pool's other "
                "collateral; no interest is charged on it and it carries no maintenance margin "
                "of its own (neither rate is published in margin-rules); a liquidation repays "
                "it by selling collateral at the index moved by the liquidation slippage")

    def face_value_assets(self) -> frozenset[str]:
        """Coins valued at face value (no haircut): with a profile whose inverse contracts are
        margined by their settle coin (``inverse_margin_at_face``, Bybit [BY1] §5.3), the
        settle coins of the open inverse positions."""
        if not self.profile.inverse_margin_at_face:
            return frozenset()
        return frozenset(p.instrument.settle for p in self.e.account.positions.values()
                         if p.qty_f != 0.0 and not p.instrument.is_linear
                         and not p.instrument.is_option)

    def _currency_usd(self, currency: str, scenario_of: dict[str, int] | None) -> float:
        if currency == "USD":
            return 1.0
        return self.price_usd(currency, scenario_of.get(currency, 2) if scenario_of else 2)

    # -- the per-bar check ----------------------------------------------------------------
    def check(self, t: int) -> bool:
        """Evaluate the account at ``t``; raise a margin call or liquidate as the profile says.

        Returns False (the bar was evaluated). The engine asks :attr:`quiet` first: a bar it
        finds healthy without an evaluation is not checked here, and its state is rebuilt after
        the run (``backtester.margin.quiet``), not kept in :attr:`state`.
        """
        if self.mode is MarginMode.ISOLATED:
            self._check_isolated(t)
            return False
        st = fused_state(self, intrabar=self.intrabar) if self._fuse else None
        self._option_free = st is not None
        if st is None:
            st = self._worst_general() if self.intrabar else self._evaluate(scenario_of=None)
        if st.status == "liquidate":
            self._liquidate(t, st)
            st = self._worst() if self.intrabar else self.evaluate_now()
        elif st.status == "call":
            self._margin_call(t, st)  # per pool with several pools (margin.pools)
        else:
            self._in_call = False
        if not self._liability_noted and any(b < 0 for b in self.e.account.balances.values()):
            self.note_liability()
        if not self._option_free and self._holds_options():
            st.greeks = self.greeks()
            if self.mode is not MarginMode.PORTFOLIO:
                # what the same book would need under portfolio margin (where requirements
                # net), beside the standard requirement, for the capital-efficiency report
                st.greeks["portfolio_initial_margin"] = self._portfolio_requirement(None)[0]
        self.state = st
        return False

    def _holds_options(self) -> bool:
        return any(p.qty_f != 0.0 and p.instrument.is_option
                   for p in self.e.account.positions.values())

    # -- admission ------------------------------------------------------------------------
    def admit(self, order: Order, f: SymbolFeed) -> OrderRejected | None:
        """Initial-margin check of a new (not reduce-only) order against available margin."""
        inst = f.instrument
        pos = self.e.account.positions.get(order.symbol)
        have = pos.qty_f if pos is not None else 0.0
        q = float(order.signed_qty)
        increase = abs(have + q) - abs(have)
        if increase <= 0:
            return None
        px = float(order.price) if order.price is not None else f.c[f.idx]
        lev = self.e.account.leverage.get(order.symbol, self.e.account.default_leverage)
        if inst.is_option:
            need = increase * inst.cs * px if q > 0 else \
                self._short_option(_probe(pos, inst, -increase), px, self.underlying_price(f))[1]
        elif (rates := self.profile.rates.get(order.symbol)) is not None:
            # size-dependent rates: what the order adds to the position's initial margin,
            # the order's price standing for the index
            need = (rated_requirement(inst, have + q, px, rates=rates, index_price=px)
                    .initial_margin
                    - rated_requirement(inst, have, px, rates=rates, index_price=px)
                    .initial_margin)
        else:
            notional_after = inst.notional(abs(have + q), px)
            tiers = self.profile.tiers.get(order.symbol)
            if tiers is not None:
                max_lev = tiers.max_leverage[tiers.index(notional_after)]
                if lev > max_lev:
                    return OrderRejected(
                        ts_ms=self.e.now_ms, order_id=order.id, symbol=order.symbol,
                        reason=RejectReason.LEVERAGE_EXCEEDS_BRACKET, tag=order.tag,
                        message=f"leverage {lev:g} exceeds the bracket maximum {max_lev:g} for "
                                f"a notional of {notional_after:,.2f} on {order.symbol}")
            need = inst.notional(increase, px) / lev
        need_usd = need * self.price_usd(inst.settle)
        if self.mode is MarginMode.PORTFOLIO:
            # requirements net in portfolio mode; open-order rule: the book with every working
            # buy filled and with every working sell filled (this order included), the worse
            total, side = self._portfolio_with_orders((order.symbol, q))
            mb = self.evaluate_now().margin_balance
            if total > mb + 1e-9:
                return OrderRejected(
                    ts_ms=self.e.now_ms, order_id=order.id, symbol=order.symbol,
                    reason=RejectReason.INSUFFICIENT_MARGIN, tag=order.tag,
                    message=f"portfolio initial margin {total:,.2f} USD with the working "
                            f"{side} filled exceeds the margin balance {mb:,.2f} USD for "
                            f"{order.side} {order.qty} {order.symbol}")
            return None
        avail, where = self._available_for(inst.settle)  # of the order's pool
        if need_usd > avail + 1e-9:
            return OrderRejected(
                ts_ms=self.e.now_ms, order_id=order.id, symbol=order.symbol,
                reason=RejectReason.INSUFFICIENT_MARGIN, tag=order.tag,
                message=f"initial margin {need_usd:,.2f} USD exceeds available {avail:,.2f} USD"
                        f"{where} for {order.side} {order.qty} {order.symbol}")
        return None

    # -- expiry ---------------------------------------------------------------------------
    def settle_expiry(self, f: SymbolFeed, expiry_ms: int) -> None:
        """Cash-settle an expiring future or option at the delivery price and cancel its orders."""
        e = self.e
        e.cancel(None, symbol=f.symbol, reason="expired")
        price, source = self._delivery_price(f, expiry_ms)
        pos = e.account.positions.get(f.symbol)
        if pos is None or pos.qty == 0:
            return
        inst = f.instrument
        qty = pos.qty
        s = dec(price)
        if inst.is_option:
            payoff = to_money(qty * inst.contract_size * dec(inst.option_payoff(price)))
            fee_base = abs(qty) * inst.contract_size * (s if inst.is_linear else Decimal(1))
            fee = to_money(min(self.profile.delivery_fee_rate * fee_base,
                               self.profile.option_fee_cap * abs(payoff)))
            pnl = payoff
            if payoff != 0:
                e.account.book(expiry_ms, EntryKind.SETTLEMENT, inst.settle, payoff,
                               symbol=f.symbol, ref="option expiry")
            e.account._net(pos, -qty, s)
        else:
            fee = to_money(inst.notional_exact(qty, s) * self.profile.delivery_fee_rate)
            pnl = e.account.apply_fill(expiry_ms, inst, -qty, s, ZERO, ref="expiry")
            # apply_fill booked the PnL as trade PnL; settlement is labelled by the event
        if fee != 0:
            e.account.book(expiry_ms, EntryKind.DELIVERY_FEE, inst.settle, -fee,
                           symbol=f.symbol, ref="delivery fee")
            pos.fees += fee
        ev = InstrumentExpired(ts_ms=expiry_ms, symbol=f.symbol, qty=qty, settlement_price=price,
                               pnl=pnl, fee=fee, asset=inst.settle, price_source=source)
        e.events.append(ev)
        e.pending.append(("expiry", ev))

    def _delivery_price(self, f: SymbolFeed, expiry_ms: int) -> tuple[float, str]:
        # index TWAP over the profile's window before expiry, from the index bars that overlap
        # it (weighted by overlap, each bar at its close); else the last index, else the mark
        g = self.e.feed.index_feeds.get(f.instrument.base, f)
        start = expiry_ms - self.profile.delivery_window_ms
        num = den = 0.0
        for i in range(max(g.idx, 0), -1, -1):
            a, b = g.ts[i], g.ts[i] + g.tf_ms
            if b <= start:
                break
            overlap = min(b, expiry_ms) - max(a, start)
            if overlap > 0:
                num += g.ic[i] * overlap
                den += overlap
        if den > 0 and (g.has_index or g.has_mark):
            return num / den, "index_twap" if g.has_index else "mark_twap"
        if g.idx >= 0:
            return g.ic[g.idx], "index" if g.has_index else "trade"
        return f.mc[max(f.idx, 0)], "mark"

def _probe(pos: Position | None, inst: object, qty: float) -> Position:
    from backtester.accounting import Position as P

    probe = P(inst, leverage=1.0)  # type: ignore[arg-type]
    probe.qty_f = qty
    probe.qty = dec(qty)
    return probe
