"""Error and warning types of the backtester.

Market outcomes (order rejections, margin calls, liquidations) are *events*, never exceptions.
Exceptions here describe bad input, user-code failures and engine bugs.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Iterable
from pathlib import Path


class BacktesterError(Exception):
    """Base class of every error raised by the backtester."""


class ConfigError(BacktesterError, ValueError):
    """A run configuration, parameter or snapshot field is invalid."""


class DataError(BacktesterError):
    """Market data is missing, unreadable or fails validation."""


class StrategyError(BacktesterError):
    """An exception raised inside a strategy hook, with the strategy name, bar time and line.

    The message is one line ending with the innermost ``file:line`` of the strategy's code
    (outside the backtester package); :attr:`traceback_text` holds the full traceback.

    Parameters
    ----------
    strategy
        Name of the strategy class.
    hook
        Name of the hook that raised (``on_bar``, ...).
    ts_ms
        Bar time (close, int milliseconds UTC) at which it raised, or None before the first bar.
    cause
        The original exception.
    """

    def __init__(self, strategy: str, hook: str, ts_ms: int | None, cause: BaseException) -> None:
        from backtester.timeutil import ms_to_iso

        when = "before the first bar" if ts_ms is None else f"at {ms_to_iso(ts_ms)}"
        where = _user_line(cause)
        msg = (f"strategy {strategy}.{hook} raised {type(cause).__name__} {when}: {cause}"
               + (f" ({where})" if where else ""))
        super().__init__(msg)
        self.strategy = strategy
        self.hook = hook
        self.ts_ms = ts_ms
        self.cause = cause
        #: where the failed run's config and traceback were written (set by the CLI), if any
        self.run_folder: Path | None = None

    @property
    def traceback_text(self) -> str:
        """The full traceback of the strategy's exception (``file:line`` of every frame)."""
        return "".join(traceback.format_exception(self.cause)).rstrip()


def _user_line(cause: BaseException) -> str:
    # the innermost frame outside this package: the strategy's own line
    package = Path(__file__).resolve().parent
    found = ""
    for frame in traceback.extract_tb(cause.__traceback__):
        path = Path(frame.filename)
        if package not in path.resolve().parents:
            found = f"{path.name}:{frame.lineno}"
    return found


class PhaseError(BacktesterError):
    """An API call was made in a phase that does not allow it (e.g. an order in ``on_start``)."""


class InvariantError(BacktesterError):
    """An internal invariant was broken: a bug in the engine, please report it."""


class BacktesterWarning(UserWarning):
    """Legal but suspicious input or a modelling assumption the user should know about."""


def warn_moved(old: str, new: str) -> None:
    """Warn (``DeprecationWarning``, at the importing line) that module ``old`` moved to
    ``new`` and the old path goes in the next release; called by the old path's shim."""
    msg = f"{old} is deprecated: import from {new} (the old path is removed in the next release)"
    warnings.warn(msg, DeprecationWarning, stacklevel=3)


def closest(name: str, known: Iterable[str], *, what: str = "symbols", n: int = 3) -> str:
    """Return a hint naming the few known names closest to ``name`` and how many there are.

    Messages never list every known name (a dataset may hold hundreds of symbols).

    >>> closest("BTC/USDT", ["BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USD:BTC"])
    "did you mean 'BTC/USDT:USDT', 'BTC/USD:BTC' or 'ETH/USDT:USDT'? (3 symbols)"
    >>> closest("X", [])
    'no symbols are known'
    """
    import difflib

    names = sorted(set(known))
    if not names:
        return f"no {what} are known"
    # names that extend what was typed first ("BTC/USDT" -> "BTC/USDT:USDT"), then look-alikes
    near = [k for k in names if k.startswith(name)][:n]
    near += [k for k in difflib.get_close_matches(name, names, n=n, cutoff=0.3)
             if k not in near][:n - len(near)]
    if not near:
        near = names[:n]
        return f"{len(names):,} {what}, e.g. {_either(near, 'and')}"
    return f"did you mean {_either(near, 'or')}? ({len(names):,} {what})"


def shortlist(names: Iterable[str], *, n: int = 5) -> str:
    """Return up to ``n`` names and how many more there are.

    >>> shortlist(["a", "b", "c"], n=2)
    'a, b and 1 more'
    """
    items = list(names)
    head = ", ".join(items[:n])
    return head if len(items) <= n else f"{head} and {len(items) - n:,} more"


def _either(items: list[str], word: str) -> str:
    quoted = [repr(x) for x in items]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {word} {quoted[-1]}"
