"""Quiet stretches: skip the per-bar margin evaluation while the account provably stays healthy.

Between two changes of the account (a fill, a fee, funding, a leverage change) a cross book of
perpetuals and futures is a fixed function of the mark prices. For such a book this module
gives every leg a price band around its current mark and bounds, over the whole band, what the
margin check compares: ``call_level × margin balance − maintenance margin`` is at least
``call_level × collateral + Σ_legs (call_level × lowest PnL in the band − maintenance margin
at the band's largest notional)``. While that bound is positive and every leg's mark low, high
and close stay inside its band, the check's outcome is "ok" whatever the exact numbers are, so
the bar loop only compares each leg's marks with its band. A bar outside a band, a change of
the account or a bound too close to the call level goes through the exact evaluation.

The states of the skipped bars are not lost: :meth:`QuietStretch.flush` rebuilds them
afterwards, vectorized over all quiet bars, with the fused evaluation's float operations in its
order, so the recorded equity, margins and position rows are bit-identical to evaluating every
bar (``tests/integration/test_quiet_stretches.py`` runs books both ways).

Eligible books: cross mode, no working orders, no options or implied vols, one leg per
underlying, every leg settled in the one stablecoin that is the only collateral asset held,
tier tables whose maintenance margin does not fall as the notional grows, a call level in
``(0, 1]``, and no perpetual that needs work every bar (continuous funding, missing funding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from backtester.config import MarginMode

if TYPE_CHECKING:
    from backtester.data.feed import SymbolFeed
    from backtester.margin.profile_data import SimpleTiers
    from backtester.margin.state import MarginEngine

__all__ = ["QuietStretch"]

_STABLES = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "DAI"})  # Feed.is_stable
_BANDS = (0.02, 0.005, 0.00125)  # half-widths tried, as fractions of the mark
_RETRY_STEPS = 8  # after a failed arming with the account unchanged, re-try this much later
_SLACK = 1e-9  # relative margin that covers float rounding in the exact evaluation
_CHUNK_STEPS = 32_768  # quiet steps rebuilt at a time (bounds the temporaries' memory)


class _Leg:
    # one armed position: its constants, band [lo, hi] on the mark and the bound over the band
    __slots__ = ("aq", "bound", "cs", "entry", "f", "hi", "hi_seq", "is_linear", "lev", "lo",
                 "lo_seq", "q", "qcs", "scale", "sym", "tiers")

    def __init__(self, sym: str, f: SymbolFeed, q: float, entry: float, lev: float, cs: float,
                 is_linear: bool, tiers: SimpleTiers | None, intrabar: bool) -> None:
        self.sym = sym
        self.f = f
        self.q = q
        self.entry = entry
        self.lev = lev
        self.cs = cs
        self.is_linear = is_linear
        self.tiers = tiers
        self.qcs = q * cs
        self.aq = abs(q) * cs
        self.lo_seq = f.ml if intrabar else f.mc
        self.hi_seq = f.mh if intrabar else f.mc
        self.lo = self.hi = self.bound = self.scale = 0.0


class QuietStretch:
    """The quiet-stretch shortcut of one :class:`~backtester.margin.state.MarginEngine`.

    :meth:`holds` is asked at every check; True means the bar's outcome is "ok" and its state
    is rebuilt by :meth:`flush` after the run.
    """

    def __init__(self, me: MarginEngine, *, enabled: bool) -> None:
        self.me = me
        e = me.e
        self.intrabar = me.intrabar
        self.call = me.call_level
        self.default_mmr = me.profile.default_mmr
        clock = e.feed.steps
        #: every feed advances at every step (a feed's bar index is the step index)
        self.lockstep = len(clock.groups) == 1 and len(clock.groups[0]) == len(e.feed.symbols)
        self.enabled = (enabled and me._fuse and me.mode is MarginMode.CROSS
                        and 0.0 < self.call <= 1.0 and not e._special)
        self.armed = False
        self.orders = e.orders  # the engine's working orders (the same dict all run long)
        self.account = e.account
        self.version = -1
        self.legs: list[_Leg] = []
        self.by_symbol: dict[str, _Leg] = {}
        self.retry_version = -1
        self.retry_at = 0
        self.seg_start = -1
        self.payload: tuple[float, float, tuple[_Leg, ...]] | None = None
        #: (first step, end step, (wallet USD, collateral USD, legs)) of each quiet stretch
        self.segments: list[tuple[int, int, tuple[float, float, tuple[_Leg, ...]]]] = []
        self._feed_ok: dict[str, bool] = {}
        self._static: dict[str, Any] = {}
        self.code = e.symbol_code  # position rows name their symbol by a code
        self._tiers_ok: dict[str, bool] = {}

    # -- per bar --------------------------------------------------------------------------
    def holds(self) -> bool:
        """True when the account is provably healthy at this bar (no evaluation needed)."""
        if self.armed and not self.orders and self.account.version == self.version:
            for leg in self.legs:
                i = leg.f.idx
                if leg.lo_seq[i] < leg.lo or leg.hi_seq[i] > leg.hi:
                    break
            else:
                return True
        return self._arm()

    def armed_version(self) -> int:
        """The account version the current stretch was armed on (-1 when not armed)."""
        return self.version if self.armed else -1

    def exit_step(self, s: int, end: int) -> int:
        """The first step in ``(s, end)`` at which a leg's marks leave its band (else ``end``).

        For clocks where every feed advances at every step (a feed's bar index is the step).
        """
        first = end
        for leg in self.legs:
            lo_seq = np.frombuffer(leg.lo_seq, dtype="float64")
            hi_seq = np.frombuffer(leg.hi_seq, dtype="float64")
            a = s + 1
            width = 256
            while a < first:
                b = min(a + width, first)
                out = np.flatnonzero((lo_seq[a:b] < leg.lo) | (hi_seq[a:b] > leg.hi))
                if len(out):
                    first = a + int(out[0])
                    break
                a = b
                width *= 4
        return first

    def _disarm(self) -> bool:
        if self.armed:
            self.armed = False
            self._close(self.me.e.step)
        return False

    def _close(self, end: int) -> None:
        if self.payload is not None and end > self.seg_start:
            self.segments.append((self.seg_start, end, self.payload))
        self.payload = None

    def _arm(self) -> bool:
        me = self.me
        e = me.e
        acct = e.account
        step = e.step
        if not self.enabled or e.orders or (acct.version == self.retry_version
                                            and step < self.retry_at):
            return self._disarm()
        pool = None
        bal_usd = mb_coll = 0.0
        haircut = me.profile.haircut
        for asset, bal in acct.balances.items():  # as fused._plain_state, term for term
            if asset not in _STABLES:
                return self._fail()
            b = float(bal)
            if b != 0.0:
                if pool is not None and pool != asset:
                    return self._fail()
                pool = asset
            bal_usd += b
            mb_coll += b * (haircut(asset) if b > 0 else 1.0)
        legs: list[_Leg] = []
        bases: set[str] = set()
        static = self._static
        by_symbol = self.by_symbol
        base = self.call * mb_coll
        total = base
        scale = abs(base)
        for sym, pos in acct.positions.items():
            q = pos.qty_f
            if q == 0.0:
                continue
            st = static.get(sym)
            if st is None:
                st = static[sym] = self._static_of(sym, pos)
            if st is None or st[1] != pool or st[0] in bases:
                return self._fail()
            bases.add(st[0])
            leg = by_symbol.get(sym)
            if leg is None or leg.q != q or leg.entry != pos.entry_f or leg.lev != pos.leverage:
                leg = by_symbol[sym] = _Leg(sym, st[2], q, pos.entry_f, pos.leverage, st[3],
                                            st[4], st[5], self.intrabar)
                self._band(leg, _BANDS[0])
            else:
                i = leg.f.idx
                if not (leg.lo <= leg.lo_seq[i] and leg.hi_seq[i] <= leg.hi):
                    self._band(leg, _BANDS[0])
            total += leg.bound
            scale += leg.scale
            legs.append(leg)
        if not legs:
            return self._fail()
        if not total > _SLACK * scale:
            for half in _BANDS[1:]:  # narrower bands, closer to the current marks
                total = base
                scale = abs(base)
                for leg in legs:
                    self._band(leg, half)
                    total += leg.bound
                    scale += leg.scale
                if total > _SLACK * scale:
                    break
            else:
                return self._fail()
        self._close(step)
        me._in_call = False  # a healthy bar ends a margin call, as the evaluation says
        self.armed = True
        self.version = acct.version
        self.legs = legs
        self.seg_start = step
        self.payload = (bal_usd, mb_coll, tuple(legs))
        return True

    def _static_of(self, sym: str, pos: Any) -> tuple[str, str, SymbolFeed, float, bool,
                                                     SimpleTiers | None] | None:
        # (base, settle, feed, contract size, linear?, tiers) of an eligible instrument
        inst = pos.instrument
        f = self.me.e.feed.symbols[sym]
        if inst.is_option or f.option_iv is not None or inst.base in _STABLES \
                or inst.settle not in _STABLES or not self._eligible(f):
            return None
        return (inst.base, inst.settle, f, inst.cs, bool(inst.is_linear),
                self.me.profile.tiers.get(sym))

    def _fail(self) -> bool:
        self.retry_version = self.me.e.account.version
        self.retry_at = self.me.e.step + _RETRY_STEPS
        return self._disarm()

    def _band(self, leg: _Leg, half: float) -> None:
        # the band [mark (1 - half), mark (1 + half)] around the mark close and the bound of
        # call x PnL - MM over it
        i = leg.f.idx
        mark = leg.f.mc[i]
        lo = mark * (1.0 - half)
        hi = mark * (1.0 + half)
        lo = min(lo, leg.lo_seq[i])  # the current bar is always inside its band
        hi = max(hi, leg.hi_seq[i])
        if leg.is_linear:
            value = leg.qcs * ((lo if leg.q > 0 else hi) - leg.entry)
            notional = leg.aq * hi
        else:
            value = leg.qcs * (1.0 / leg.entry - 1.0 / (lo if leg.q > 0 else hi))
            notional = leg.aq / lo
        t = leg.tiers
        mm = t.maintenance(notional) if t is not None else notional * self.default_mmr
        leg.lo, leg.hi = lo, hi
        leg.bound = self.call * value - mm
        leg.scale = abs(self.call * value) + abs(mm)

    def _eligible(self, f: SymbolFeed) -> bool:
        # marks that keep low <= close <= high (every scenario inside [low, high]) and a tier
        # table whose maintenance margin never falls as the notional grows
        ok = self._feed_ok.get(f.symbol)
        if ok is None:
            ml = np.frombuffer(f.ml, dtype="float64")
            mh = np.frombuffer(f.mh, dtype="float64")
            mc = np.frombuffer(f.mc, dtype="float64")
            ok = bool(np.all(ml <= mc) and np.all(mc <= mh) and np.all(ml > 0.0))
            t = self.me.profile.tiers.get(f.symbol)
            ok = ok and (t is None or _monotone(t)) and self.default_mmr >= 0.0
            self._feed_ok[f.symbol] = ok
        return ok

    # -- after the run --------------------------------------------------------------------
    def flush(self, n_steps: int, rec: dict[str, Any],
              pos_rec: dict[str, Any]) -> None:
        """Write the states of every quiet bar into ``rec`` (arrays indexed by step) and merge
        their position rows into ``pos_rec`` (rows in step order)."""
        if self.armed:
            self.armed = False
            self._close(n_steps)
        segs = [(a, min(b, n_steps), p) for a, b, p in self.segments if a < n_steps]
        self.segments = []
        if not segs:
            return
        times = np.frombuffer(rec["ts"], dtype="int64")
        # the merged position rows: exact rows (recorded live) and quiet rows never share a
        # step, and each kind is in time order, so a row's place is its rank in its kind plus
        # the number of rows of the other kind before it (every leg of a stretch is open)
        exact_ts = np.asarray(pos_rec["ts"], dtype="int64")
        n_quiet = sum((b - a) * len(p[2]) for a, b, p in segs)
        out = {k: np.empty(len(exact_ts) + n_quiet, dtype="int64" if k in ("ts", "symbol")
                           else "float64") for k in pos_rec}
        exact_place = np.arange(len(exact_ts))
        done = 0
        for part in _chunks(segs, _CHUNK_STEPS):  # bounded temporaries; steps are independent
            cols, rows = _rebuild(part, self, times)
            steps = cols.pop("_steps")
            for k, v in cols.items():
                if v is None:
                    continue  # +0.0 everywhere: the series' untouched zeros already say so
                np.frombuffer(rec[k], dtype="float64")[steps] = v
            m = len(rows["ts"])
            place = np.arange(done, done + m) + np.searchsorted(exact_ts, rows["ts"])
            for k, v in rows.items():
                out[k][place] = v
            exact_place += np.searchsorted(rows["ts"], exact_ts)  # quiet rows before each
            done += m
        for k, old in pos_rec.items():
            col = out[k]
            col[exact_place] = np.asarray(old, dtype=col.dtype)
            pos_rec[k] = col


def _chunks(segs: list[tuple[int, int, Any]], size: int) -> list[list[tuple[int, int, Any]]]:
    # the stretches cut into groups of at most ``size`` steps (a stretch may be split)
    out: list[list[tuple[int, int, Any]]] = [[]]
    room = size
    for a, b, p in segs:
        while b - a > room:
            out[-1].append((a, a + room, p))
            a += room
            out.append([])
            room = size
        if b > a:
            out[-1].append((a, b, p))
            room -= b - a
    return [part for part in out if part]


def _monotone(t: SimpleTiers) -> bool:
    # maintenance = notional x rate - amount, per tier: non-decreasing inside each tier
    # (rate >= 0) and across each floor (the next tier starts no lower than this one ends)
    if any(r < 0.0 for r in t.mmr):
        return False
    for k in range(1, len(t.floors)):
        x = t.floors[k]
        left = x * t.mmr[k - 1] - t.cum[k - 1]
        right = x * t.mmr[k] - t.cum[k]
        if right < left - 1e-9 * max(1.0, abs(left)):
            return False
    return True


def _maintenance(t: SimpleTiers | None, notional: np.ndarray, default_mmr: float) -> np.ndarray:
    # SimpleTiers.maintenance elementwise: the highest tier whose floor is at or below
    if t is None:
        return notional * default_mmr
    floors = np.asarray(t.floors[1:], dtype="float64")
    if len(notional):
        lo, hi = np.searchsorted(floors, [notional.min(), notional.max()], side="right")
        if lo == hi:  # one tier throughout: the same rate and amount for every bar
            return notional * t.mmr[lo] - t.cum[lo]
    k = np.searchsorted(floors, notional, side="right")
    return notional * np.asarray(t.mmr, dtype="float64")[k] - np.asarray(t.cum,
                                                                         dtype="float64")[k]


def _rebuild(segs: list[tuple[int, int, tuple[float, float, tuple[_Leg, ...]]]],
             qs: QuietStretch, times: np.ndarray) -> tuple[dict[str, np.ndarray | None],
                                                           dict[str, Any]]:
    # every quiet step's state, as fused._plain_state computes it for one step, vectorized
    starts = np.asarray([a for a, _, _ in segs], dtype="int64")
    lens = np.asarray([b - a for a, b, _ in segs], dtype="int64")
    n = int(lens.sum())
    seg_of = np.repeat(np.arange(len(segs)), lens)
    # step k of the concatenation is starts[seg] + (k - first index of seg)
    steps = np.arange(n, dtype="int64") + np.repeat(starts - (np.cumsum(lens) - lens), lens)
    bal_usd = np.asarray([p[0] for _, _, p in segs], dtype="float64")[seg_of]
    mb_coll = np.asarray([p[1] for _, _, p in segs], dtype="float64")[seg_of]
    order = {sym: k for k, sym in enumerate(qs.me.e.account.positions)}  # the summing order
    # per symbol: (q, entry, leverage) per stretch, and the leg's constants
    table: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, _Leg]] = {}
    for j, (_, _, p) in enumerate(segs):
        for leg in p[2]:
            row = table.get(leg.sym)
            if row is None:
                row = table[leg.sym] = (np.zeros(len(segs)), np.zeros(len(segs)),
                                        np.ones(len(segs)), leg)
            row[0][j] = leg.q
            row[1][j] = leg.entry
            row[2][j] = leg.lev
    slots = sorted(table, key=order.__getitem__)
    t_steps = times[steps]
    zero = np.zeros(n)
    upnl, im, mm, gross, net = zero.copy(), zero.copy(), zero.copy(), zero.copy(), zero.copy()
    upnl_s, im_s, mm_s = zero.copy(), zero.copy(), zero.copy()
    per_slot = []
    with np.errstate(all="ignore"):
        for sym in slots:
            q, entry, lev, first = table[sym]
            f, cs, is_linear, tiers = first.f, first.cs, first.is_linear, first.tiers
            q, entry, lev = q[seg_of], entry[seg_of], lev[seg_of]
            on = q != 0.0
            idx = steps if qs.lockstep else f.bar_at(t_steps)
            qcs = q * cs
            aq = np.abs(q) * cs
            marks = ((np.frombuffer(f.ml, dtype="float64")[idx],
                      np.frombuffer(f.mh, dtype="float64")[idx],
                      np.frombuffer(f.mc, dtype="float64")[idx]) if qs.intrabar
                     else (np.frombuffer(f.mc, dtype="float64")[idx],))
            vals = []
            for m in marks:
                if is_linear:
                    notional = aq * m
                    value = qcs * (m - entry)
                    usd = notional  # aq * m, the same product
                else:
                    notional = aq / m
                    value = qcs * (1.0 / entry - 1.0 / m)
                    usd = aq
                vals.append((m, value, notional, _maintenance(tiers, notional, qs.default_mmr),
                             usd))
            mark, value, notional, p_mm, usd = vals[-1]
            every = bool(on.all())

            def only(x: np.ndarray, on: np.ndarray = on, every: bool = every) -> np.ndarray:
                # a flat leg adds exactly +0.0 (the evaluation skips it; x + 0.0 == x)
                return x if every else np.where(on, x, 0.0)

            upnl += only(value)
            im += only(notional / lev)
            mm += only(p_mm)
            gross += only(usd)
            net += only(np.where(q > 0, usd, -usd))
            if qs.intrabar:
                # the group's worst of low / high / close: first strictly smallest excess
                best = np.full(n, np.inf)
                pick = np.full(n, 2)
                for w in (0, 1, 2):
                    excess = 0.0 + (vals[w][1] - vals[w][3])
                    better = excess < best
                    pick = np.where(better, w, pick)
                    best = np.where(better, excess, best)
                low, high = pick == 0, pick == 1

                def chosen(k: int, low: np.ndarray = low, high: np.ndarray = high,
                           vals: list[Any] = vals) -> np.ndarray:
                    return np.where(low, vals[0][k], np.where(high, vals[1][k], vals[2][k]))

                upnl_s += only(chosen(1))
                im_s += only(chosen(2) / lev)
                mm_s += only(chosen(3))
            per_slot.append((sym, on, q, entry, mark, value, notional))
        inf = np.inf
        equity = bal_usd + upnl
        mb = mb_coll + upnl
        ratio = np.where(mb > 0, mm / mb, np.where(mm > 0, inf, 0.0))
        available = mb - im - 0.0
        if qs.intrabar:
            mb_w = mb_coll + upnl_s
            ratio = np.where(mb_w > 0, mm_s / mb_w, np.where(mm_s > 0, inf, 0.0))
            other = mb_w - im_s - 0.0
            available = np.where(other < available, other, available)
            mb, mm_out = mb_w, mm_s
        else:
            mm_out = mm
    cols = {"_steps": steps, "equity": equity, "wallet": bal_usd, "unrealized_pnl": upnl,
            "margin_balance": mb, "initial_margin": im, "maintenance_margin": mm_out,
            "margin_ratio": ratio, "available": available, "gross_exposure": gross,
            "net_exposure": net, "collateral_fixed": mb_coll,
            "collateral_moving": None}  # +0.0 at every quiet step (stablecoin collateral only)
    # position rows: step-major, legs in the account's order
    if len(per_slot) == 1:
        on1 = per_slot[0][1]
        r = np.flatnonzero(on1)
        c = np.zeros(len(r), dtype="int64")

        def take(k: int) -> np.ndarray:
            x = np.asarray(per_slot[0][k])
            return x if len(r) == n else x[r]
    else:
        r, c = np.nonzero(np.stack([s[1] for s in per_slot], axis=1))

        def take(k: int) -> np.ndarray:
            return np.stack([s[k] for s in per_slot], axis=1)[r, c]

    codes = np.asarray([qs.code[s[0]] for s in per_slot], dtype="int64")
    rows = {"ts": t_steps[r], "symbol": codes[c], "qty": take(2), "entry_price": take(3),
            "mark": take(4), "unrealized_pnl": take(5), "notional": take(6),
            "isolated_margin": np.full(len(r), np.nan)}
    return cols, rows
