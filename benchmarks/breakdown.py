"""Where the time of one ``backtester.run(...)`` goes: timers around the engine's functions.

``run_ours.py --breakdown`` installs :class:`Breakdown` before the timed call. Each wrapped
function is timed with ``time.perf_counter`` and its time is attributed **exclusively**: a
wrapped function's time minus the time of the wrapped functions it called (a stack of child
times), so the categories add up to the instrumented step.

Categories (in bar-loop order):

* ``setup`` — what ``backtester.run`` does outside the others (result assembly around
  ``_collect``, the run's progress context);
* ``prepare`` — ``runs.runner.prepare``: the configuration, loading the strategy, reading a stored
  dataset (W4), the feed build (validation, alignment) and the exchange profile;
* ``engine_init`` — ``Engine.__init__``: the account, the margin monitor and its first
  evaluation, minus ``jit``;
* ``jit`` — numba's ``Dispatcher._compile_for_args``: the first call of each compiled function
  in a process, which loads it from numba's cache (or compiles it when the cache is cold);
* ``on_start`` — the strategy's ``on_start`` (its ``ctx.indicator`` computations);
* ``strategy`` — the strategy's ``on_bar`` (indicator reads, its decisions), minus
  ``orders``;
* ``orders`` — ``Engine.submit`` (``ctx.target`` → order checks and admission);
* ``fills`` — ``Engine._execute`` (matching at the next open, slippage, fees, the Decimal
  journal, the margin monitor's ``on_fill``) and ``Engine._deliver`` (fill events to hooks);
* ``funding`` — funding, expiries, daily settlement (``_funding``, ``_special_funding``,
  ``_expire``, ``_daily_settlement``) when called outside ``fills``;
* ``margin`` — the margin monitor: ``MarginEngine.step`` and everything it calls (book build,
  the kernel's block evaluation which also writes the account series) and
  ``Engine.carry_out`` (margin calls and liquidations: the margin engine's decisions and their
  booking), minus ``recording``;
* ``recording`` — ``MarginEngine._flush`` (position rows, pool collateral, greeks per step),
  ``Engine._finish_records``, ``Engine.record_user``;
* ``replay`` — ``Account.check_replay`` (the journal replayed to the balances after the loop);
* ``loop`` — what remains of ``Engine.run``: the while loop over the clock, feed cursors, the
  block and event checks;
* ``trim`` — ``runs.frames.trim_heap`` (``malloc_trim`` between loop and collection);
* ``collection`` — ``runs.runner._collect`` (every result frame and metric).

Overhead: each wrapped call costs a few hundred ns, partly inside the timed interval (inflating
its own category) and partly outside (inflating its caller's). Both parts are measured on a
wrapped no-op (:func:`calibrate`) and subtracted per call (``*_corrected``); the raw figures
are kept beside them. Targets are looked up by name in every loaded ``backtester`` module, so
the mode survives modules moving; a target not found is reported, not silently dropped.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CATEGORIES = ("setup", "prepare", "engine_init", "jit", "on_start", "strategy", "orders",
              "fills", "funding", "margin", "recording", "replay", "loop", "trim", "collection")

#: (class name or None for a module function, attribute, category)
TARGETS: tuple[tuple[str | None, str, str], ...] = (
    (None, "prepare", "prepare"),
    ("Engine", "__init__", "engine_init"),
    ("Engine", "run", "loop"),
    ("Engine", "submit", "orders"),
    ("Engine", "_execute", "fills"),
    ("Engine", "_deliver", "fills"),
    ("Engine", "_funding", "funding"),
    ("Engine", "_special_funding", "funding"),
    ("Engine", "_expire", "funding"),
    ("Engine", "_daily_settlement", "funding"),
    ("MarginEngine", "step", "margin"),
    ("Engine", "carry_out", "margin"),
    ("MarginEngine", "_flush", "recording"),
    ("Engine", "_finish_records", "recording"),
    ("Engine", "record_user", "recording"),
    ("Account", "check_replay", "replay"),
    (None, "trim_heap", "trim"),
    (None, "_collect", "collection"),
)


@dataclass
class Breakdown:
    """Exclusive time, call counts and child-call counts per category (see the module doc)."""

    clock: Callable[[], float] = time.perf_counter
    excl: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0.0))
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    #: calls of wrapped functions made from inside each category (its share of outer overhead)
    child_calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    missing: list[str] = field(default_factory=list)
    _stack: list[list[Any]] = field(default_factory=list)
    _undo: list[tuple[Any, str, Any]] = field(default_factory=list)

    def wrap(self, func: Callable[..., Any], cat: str) -> Callable[..., Any]:
        """``func`` timed into ``cat`` (exclusive of wrapped callees)."""
        clock = self.clock
        stack = self._stack
        excl = self.excl
        calls = self.calls
        child_calls = self.child_calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [0.0, cat]
            stack.append(frame)
            t0 = clock()
            try:
                return func(*args, **kwargs)
            finally:
                dt = clock() - t0
                stack.pop()
                excl[cat] += dt - frame[0]
                calls[cat] += 1
                if stack:
                    parent = stack[-1]
                    parent[0] += dt
                    child_calls[parent[1]] += 1

        timed.__wrapped__ = func  # type: ignore[attr-defined]
        return timed

    def install(self, strategy_cls: type | None = None) -> None:
        """Wrap every target found in the loaded ``backtester`` modules (and the strategy
        class's ``on_start`` / ``on_bar``)."""
        mods = [m for n, m in list(sys.modules.items())
                if (n == "backtester" or n.startswith("backtester.")) and m is not None]
        for cls_name, attr, cat in TARGETS:
            found = False
            if cls_name is None:
                orig = None
                for m in mods:
                    f = m.__dict__.get(attr)
                    if isinstance(f, types.FunctionType):
                        orig = f
                        break
                if orig is not None:
                    w = self.wrap(orig, cat)
                    for m in mods:  # every module that holds this function object
                        if m.__dict__.get(attr) is orig:
                            self._undo.append((m, attr, orig))
                            setattr(m, attr, w)
                            found = True
            else:
                for m in mods:
                    cls = m.__dict__.get(cls_name)
                    if not isinstance(cls, type) or cls.__module__ != m.__name__:
                        continue
                    # the class that defines it (Engine's parts are mixins)
                    owner = next((c for c in cls.__mro__
                                  if isinstance(c.__dict__.get(attr), types.FunctionType)), None)
                    if owner is not None:
                        orig = owner.__dict__[attr]
                        self._undo.append((owner, attr, orig))
                        setattr(owner, attr, self.wrap(orig, cat))
                        found = True
            if not found:
                self.missing.append(f"{cls_name + '.' if cls_name else ''}{attr}")
        try:
            from numba.core.dispatcher import Dispatcher
        except ImportError:  # a checkout without numba
            Dispatcher = None
        owner = next((c for c in (Dispatcher.__mro__ if Dispatcher is not None else ())
                      if isinstance(c.__dict__.get("_compile_for_args"), types.FunctionType)),
                     None)
        if owner is not None:
            orig = owner.__dict__["_compile_for_args"]
            self._undo.append((owner, "_compile_for_args", orig))
            owner._compile_for_args = self.wrap(orig, "jit")  # type: ignore[attr-defined]
        if strategy_cls is not None:
            for attr, cat in (("on_start", "on_start"), ("on_bar", "strategy")):
                orig = getattr(strategy_cls, attr)
                self._undo.append((strategy_cls, attr, strategy_cls.__dict__.get(attr)))
                setattr(strategy_cls, attr, self.wrap(orig, cat))

    def uninstall(self) -> None:
        """Put the original functions back."""
        for owner, attr, orig in reversed(self._undo):
            if orig is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, orig)
        self._undo.clear()

    def report(self, total_s: float, n_bars: int, overhead: tuple[float, float],
               cpu_s: float | None = None) -> dict[str, Any]:
        """Per category: raw and overhead-corrected seconds and µs per bar.

        ``total_s`` is the instrumented step (the same clock); ``setup`` is what the wrapped
        categories leave of it. ``overhead`` = (inner, outer) seconds per wrapped call.
        ``cpu_s``: the step's process CPU time; the corrected wall-clock figures are also given
        scaled by ``cpu_s / total_s`` (``us_per_bar_cpu``): on a shared machine the wall clock
        includes time the process waited for a CPU, spread over all categories alike (a CPU
        clock per call would cost ~1.4 µs, more than most of what is measured).
        """
        inner, outer = overhead
        raw = dict(self.excl)
        raw["setup"] = total_s - sum(v for k, v in raw.items() if k != "setup")
        corr = {k: v - self.calls[k] * inner - self.child_calls[k] * outer
                for k, v in raw.items()}
        # the top-level wrapped calls' outer overhead is in setup
        top = sum(self.calls.values()) - sum(self.child_calls.values())
        corr["setup"] -= top * outer
        n_calls = sum(self.calls.values())
        return {
            "n_bars": n_bars, "instrumented_s": total_s, "calls": dict(self.calls),
            "overhead_inner_ns": inner * 1e9, "overhead_outer_ns": outer * 1e9,
            "overhead_s": n_calls * (inner + outer),
            "raw_s": raw, "corrected_s": corr,
            "us_per_bar": {k: v / n_bars * 1e6 for k, v in corr.items()},
            "raw_us_per_bar": {k: v / n_bars * 1e6 for k, v in raw.items()},
            "missing": list(self.missing), "cpu_s": cpu_s,
            "cpu_scale": (cpu_s / total_s) if cpu_s else None,
            "us_per_bar_cpu": ({k: v / n_bars * 1e6 * cpu_s / total_s for k, v in corr.items()}
                               if cpu_s else None),
        }


class _Probe:
    def noop(self, x: int) -> int:
        return x


def calibrate(clock: Callable[[], float] = time.perf_counter, n: int = 200_000,
              repeats: int = 5) -> tuple[float, float]:
    """(inner, outer) overhead of one wrapped call in seconds, the minimum over ``repeats``.

    inner = what the wrapper adds to the callee's own measured time (its timed interval
    minus the bare call); outer = the rest of the wrapped call's extra cost (charged to the
    caller)."""
    best_inner = best_total = float("inf")
    probe = _Probe()
    for _ in range(repeats):
        bare = probe.noop
        t0 = clock()
        for i in range(n):
            bare(i)
        t_bare = (clock() - t0) / n
        bd = Breakdown(clock=clock)
        wrapped = bd.wrap(_Probe.noop, "strategy")
        outer_frame = [0.0, "loop"]
        bd._stack.append(outer_frame)
        t0 = clock()
        for i in range(n):
            wrapped(probe, i)
        t_wrapped = (clock() - t0) / n
        bd._stack.pop()
        measured = bd.excl["strategy"] / n  # the callee's timed interval per call
        best_inner = min(best_inner, max(measured - t_bare, 0.0))
        best_total = min(best_total, max(t_wrapped - t_bare, 0.0))
    return best_inner, max(best_total - best_inner, 0.0)
