"""Run configuration: one set of keys for ``run.toml``, CLI flags and Python keyword arguments.

Precedence: flags / keyword arguments override the file; the file overrides defaults
(DESIGN §7).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from backtester.errors import ConfigError
from backtester.numeric import dec
from backtester.paths import safe_component
from backtester.timeutil import ms_to_iso, parse_utc_ms, timeframe_ms

__all__ = ["OUTLIER_RETURN_MULTIPLE", "FillMode", "FundingMode", "MarginCheck", "MarginMode",
           "RunConfig", "load_config", "resolve_profile"]


class MarginMode(StrEnum):
    """How collateral backs positions."""

    CROSS = "cross"
    ISOLATED = "isolated"
    PORTFOLIO = "portfolio"


class MarginCheck(StrEnum):
    """Where in a bar margin is checked: low/high/close per underlying group, or close only."""

    INTRABAR = "intrabar"
    CLOSE = "close"


class FillMode(StrEnum):
    """When market orders fill: next bar's open (default) or this bar's close (comparisons)."""

    NEXT_OPEN = "next_open"
    CLOSE = "close"


class FundingMode(StrEnum):
    """Funding from history, or explicitly none.

    ``history``: a held perpetual is charged at every funding stamp of its history; a stamp the
    history does not cover (before it starts, after it ends, or no history at all) while the
    position is held is an error naming the uncovered span. ``history_or_zero``: the same, but
    uncovered stamps are charged zero, and the run's warnings name each uncovered span.
    ``zero``: no funding at all.
    """

    HISTORY = "history"
    HISTORY_OR_ZERO = "history_or_zero"
    ZERO = "zero"


#: Default of ``outlier_return_multiple``: a return beyond this multiple of a series' robust
#: scale is flagged (calibration in :mod:`backtester.data.outliers`).
OUTLIER_RETURN_MULTIPLE = 100.0

#: the profile of each ccxt exchange id (and of the synthetic sample, made for bybit's rules)
PROFILE_FOR_DATASET = {"binanceusdm": "binance-usdm", "binancecoinm": "binance-coinm",
                       "bybit": "bybit", "okx": "okx", "deribit": "deribit", "sample": "bybit"}
PROFILES = ("binance-usdm", "binance-coinm", "bybit", "okx", "deribit")
#: the profile of in-memory data when none is given or inferred (said in the run's warnings)
DEFAULT_FRAMES_PROFILE = "bybit"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """All the keys of a run (DESIGN §7). Build with :func:`load_config`."""

    dataset: str | None = None
    #: the trade candles' timeframe (``5m``, ``1h``...); needed when a dataset holds several
    timeframe: str | None = None
    profile: str | None = None
    collateral: dict[str, Decimal] = field(default_factory=dict)
    margin_mode: MarginMode = MarginMode.CROSS
    margin_check: MarginCheck = MarginCheck.INTRABAR
    leverage: dict[str, float] = field(default_factory=dict)
    default_leverage: float | None = None
    call_level: float = 0.8
    fill: FillMode = FillMode.NEXT_OPEN
    slippage_bps: float = 2.0
    volume_impact: float = 0.0
    liquidation_slippage_bps: float | None = None
    funding: FundingMode = FundingMode.HISTORY
    stop_on_bankruptcy: bool = True
    start: int | None = None
    end: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    compare_margin_modes: bool = False
    survival_collateral: bool = False
    #: a liquidation deficit is borne by auto-deleveraging (recorded as ``adl``) instead of
    #: the insurance fund
    adl: bool = False
    #: initial-margin admission of new orders (off only in survival-collateral re-runs, which
    #: must keep the run's trades while the collateral shrinks)
    check_initial_margin: bool = True
    #: isolated mode: each position's allocation is ``initial margin x margin_scale``
    margin_scale: float = 1.0
    #: data checks: a return beyond this multiple of a series' robust scale is flagged (a
    #: warning of the run; :mod:`backtester.data.outliers`)
    outlier_return_multiple: float = OUTLIER_RETURN_MULTIPLE
    tiers: str | dict[str, Any] | None = None
    run_id: str | None = None
    output_dir: str = "reports"

    def config_hash(self) -> str:
        """Return a short stable hash of every key (for results and caching)."""
        payload = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        """Return the keys as JSON-ready values."""
        out = asdict(self)
        out["collateral"] = {k: str(v) for k, v in self.collateral.items()}
        return out

    def with_updates(self, **updates: Any) -> RunConfig:
        """Return a copy with validated updates."""
        return load_config(base=self, **updates)


_KEYS = {f.name for f in fields(RunConfig)}


def _enum(cls: type[StrEnum], key: str, value: Any) -> StrEnum:
    try:
        return cls(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        msg = f"{key}: expected one of {allowed}, got {value!r}"
        raise ConfigError(msg) from None


@dataclass(frozen=True, slots=True)
class _Range:
    """Allowed values of a numeric run key: finite, between ``low`` and ``high`` (each bound
    included when its flag says so); ``text`` says it in the error message."""

    low: float
    is_low_inclusive: bool
    high: float
    is_high_inclusive: bool
    text: str


# The one home of every numeric run key's range. Slippage below 10,000 bps (100 %): a sell
# filled 100 % below the price would fill at zero.
_NUMERIC: dict[str, _Range] = {
    "leverage": _Range(0.0, False, math.inf, False, "a positive number"),
    "default_leverage": _Range(0.0, False, math.inf, False, "a positive number"),
    "margin_scale": _Range(0.0, False, math.inf, False, "a positive number"),
    "call_level": _Range(0.0, False, 1.0, True, "a fraction in (0, 1]"),
    "slippage_bps": _Range(0.0, True, 10_000.0, False, "a number of bps in [0, 10000)"),
    "liquidation_slippage_bps": _Range(0.0, True, 10_000.0, False,
                                       "a number of bps in [0, 10000)"),
    "volume_impact": _Range(0.0, True, math.inf, False, "a non-negative number"),
    "outlier_return_multiple": _Range(0.0, False, math.inf, False, "a positive number"),
}


def _number(key: str, value: Any, *, field: str | None = None) -> float:
    """Return ``value`` as a float within ``_NUMERIC[key]``, else raise naming ``field``."""
    where = field or key
    rng = _NUMERIC[key]
    if isinstance(value, bool):
        x = math.nan
    else:
        try:
            x = float(value)
        except (TypeError, ValueError, OverflowError):
            x = math.nan
    is_above_low = x >= rng.low if rng.is_low_inclusive else x > rng.low
    is_below_high = x <= rng.high if rng.is_high_inclusive else x < rng.high
    if not (math.isfinite(x) and is_above_low and is_below_high):
        msg = f"{where}: expected {rng.text}, got {value!r}"
        raise ConfigError(msg)
    return x


def _pairs(key: str, value: Any) -> dict[str, Any]:
    """Accept a dict, or 'A=1,B=2' / ['A=1', 'B=2'] (CLI form)."""
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str | list | tuple):
        msg = (f"{key}: expected NAME=VALUE pairs or a table (in run.toml: {key} = "
               f"{{ NAME = VALUE }}), got {value!r}")
        raise ConfigError(msg)
    items = value.split(",") if isinstance(value, str) else list(value)
    out: dict[str, Any] = {}
    for item in items:
        name, sep, val = str(item).partition("=")
        if not sep or not name.strip():
            msg = f"{key}: expected NAME=VALUE, got {item!r}"
            raise ConfigError(msg)
        out[name.strip()] = val.strip()
    return out


def load_config(path: str | Path | None = None, *, base: RunConfig | None = None,
                **overrides: Any) -> RunConfig:
    """Build a validated :class:`RunConfig` from defaults, an optional TOML file and overrides.

    ``overrides`` with value None are ignored (unset CLI flags). Unknown keys are errors with a
    "did you mean" hint.
    """
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            values.update(tomllib.loads(p.read_text()))
        except FileNotFoundError:
            msg = f"config file {p} not found"
            raise ConfigError(msg) from None
        except tomllib.TOMLDecodeError as exc:
            msg = f"config file {p} is not valid TOML: {exc}"
            raise ConfigError(msg) from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = base or RunConfig()
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _KEYS:
            close = difflib.get_close_matches(key, sorted(_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown run configuration key {key!r}{hint}"
            raise ConfigError(msg)
        updates[key] = _validate(key, value)
    out = replace(cfg, **updates)
    if out.start is not None and out.end is not None and out.start >= out.end:
        msg = (f"start {ms_to_iso(out.start)} is not before end {ms_to_iso(out.end)}: the run "
               "covers [start, end)")
        raise ConfigError(msg)
    return out


def _validate(key: str, value: Any) -> Any:
    if key in ("dataset", "run_id"):  # one folder name under datasets/ or the output folder
        return safe_component(value, field=key)
    if key == "margin_mode":
        return _enum(MarginMode, key, value)
    if key == "margin_check":
        return _enum(MarginCheck, key, value)
    if key == "fill":
        return _enum(FillMode, key, value)
    if key == "funding":
        return _enum(FundingMode, key, value)
    if key == "profile":
        if value not in PROFILES:
            close = difflib.get_close_matches(str(value), PROFILES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"profile: unknown profile {value!r}{hint} (profiles: {', '.join(PROFILES)})"
            raise ConfigError(msg)
        return value
    if key == "collateral":
        out: dict[str, Decimal] = {}
        for asset, amount in _pairs(key, value).items():
            try:
                d = dec(amount)
            except (ArithmeticError, ValueError):
                msg = f"collateral.{asset}: expected an amount, got {amount!r}"
                raise ConfigError(msg) from None
            if not d.is_finite() or d < 0:
                msg = f"collateral.{asset}: expected a non-negative amount, got {amount!r}"
                raise ConfigError(msg)
            out[asset.upper()] = d
        return out
    if key == "leverage":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"*": _number(key, value)}
        if isinstance(value, str) and "=" not in value:
            return {"*": _number(key, value)}
        return {sym: _number(key, lev, field=f"leverage.{sym}")
                for sym, lev in _pairs(key, value).items()}
    if key in _NUMERIC:
        return _number(key, value)
    if key == "timeframe":
        try:
            timeframe_ms(str(value))
        except ValueError as exc:
            msg = f"timeframe: {exc}"
            raise ConfigError(msg) from None
        return str(value)
    if key in ("start", "end"):
        try:
            return parse_utc_ms(value)
        except ValueError as exc:
            msg = f"{key}: {exc}"
            raise ConfigError(msg) from None
    if key == "params":
        return _pairs(key, value)
    if key == "tiers":
        if isinstance(value, dict):
            return value
        path = Path(str(value))
        if not path.is_file():
            msg = f"tiers: file {path} not found (a JSON of symbol -> tier list, ccxt format)"
            raise ConfigError(msg)
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            msg = f"tiers: {path} is not valid JSON: {exc}"
            raise ConfigError(msg) from None
    if key in ("stop_on_bankruptcy", "compare_margin_modes", "survival_collateral",
               "check_initial_margin", "adl"):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
            return str(value).lower() in ("true", "1", "yes")
        msg = f"{key}: expected true or false, got {value!r}"
        raise ConfigError(msg)
    return value


def resolve_profile(cfg: RunConfig, *, exchanges: tuple[str, ...] = (),
                    is_frames: bool = False) -> tuple[str, str]:
    """Return the exchange profile of a run and why it is that one.

    In order: the ``profile`` key; the dataset's name when it is a ccxt exchange id
    (``binanceusdm`` → ``binance-usdm``) or ``sample``; the ccxt exchange the data came from
    (``exchanges``: a fetched dataset's markets snapshot, or the instruments' exchange); for
    in-memory data (``is_frames``) without any of these, :data:`DEFAULT_FRAMES_PROFILE`.

    Raises
    ------
    ConfigError
        A stored dataset whose exchange cannot be told: the profile must be given.
    """
    from backtester.hints import option

    if cfg.profile is not None:
        return cfg.profile, "given"
    name = cfg.dataset
    if name in PROFILE_FOR_DATASET:
        why = ("the sample dataset is made for it" if name == "sample"
               else f"the dataset name {name} is that exchange's ccxt id")
        return PROFILE_FOR_DATASET[name], why
    known = sorted({e for e in exchanges if e in PROFILE_FOR_DATASET})
    if len(known) == 1:
        return PROFILE_FOR_DATASET[known[0]], f"the data comes from {known[0]} (its markets)"
    if is_frames and name in (None, "dataframes"):
        return DEFAULT_FRAMES_PROFILE, (f"no profile given for in-memory data: "
                                        f"{DEFAULT_FRAMES_PROFILE}, the default")
    ids = ", ".join(k for k in PROFILE_FOR_DATASET if k != "sample")
    msg = (f"cannot tell which exchange's margin rules apply to dataset {name!r} (its name is "
           f"not a ccxt exchange id: {ids}; nor do its markets say): give "
           f"{option('profile', 'binance-usdm')} or another of {', '.join(PROFILES)}")
    raise ConfigError(msg)
