"""Names from user input that become one folder or file name (dataset, exchange, run and sweep ids).

A name the user types (``--exchange``, ``--dataset``, ``--run-id``, ``--sweep-id``) is joined to a
folder the backtester owns (``datasets/``, ``reports/``). :func:`safe_component` accepts it only
when it is exactly one plain path component, so no name can reach outside that folder: no
separator, no ``..``, no absolute path, no leading dot (our temp and lock files start with one)
and no control character. Names are refused, never rewritten: a silently changed name would
write somewhere the user did not ask for.
"""

from __future__ import annotations

from backtester.errors import ConfigError

__all__ = ["MAX_COMPONENT_CHARS", "safe_component"]

#: Longest name accepted (below the 255-byte file-name limit of common file systems, leaving
#: room for the suffixes the store adds such as ``.parquet.tmp-<32 hex>``).
MAX_COMPONENT_CHARS = 150


def safe_component(name: object, *, field: str) -> str:
    """Return ``name`` if it is one safe path component, else raise a ConfigError naming ``field``.

    >>> safe_component("binanceusdm", field="--exchange")
    'binanceusdm'
    >>> safe_component("../x", field="--exchange")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    backtester.errors.ConfigError: --exchange: '../x' is not a plain name (it contains '/'); ...
    """
    text = name if isinstance(name, str) else None
    problem = None
    if text is None:
        problem = f"expected a name, got {type(name).__name__}"
    elif not text.strip():
        problem = "it is empty"
    elif any(sep in text for sep in ("/", "\\")):
        sep = "/" if "/" in text else "\\"
        problem = f"it contains {sep!r}"
    elif text.startswith("."):
        problem = "it starts with '.'"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        problem = "it contains a control character"
    elif len(text) > MAX_COMPONENT_CHARS:
        problem = f"it is longer than {MAX_COMPONENT_CHARS} characters"
    if problem is not None:
        msg = (f"{field}: {name!r} is not a plain name ({problem}); use letters, digits, "
               "'-', '_' and '.' (not first), as one folder name")
        raise ConfigError(msg)
    assert text is not None
    return text
