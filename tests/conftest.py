"""Shared test configuration: socket guard and shared-data location."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as _hypothesis_settings

# the margin kernel is compiled (or loaded from numba's cache) on its first call: a timing
# deadline would fail whichever example happens to come first
_hypothesis_settings.register_profile("backtester", deadline=None)
_hypothesis_settings.load_profile("backtester")

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Return ``$BACKTESTER_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("BACKTESTER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The recorded exchange data folder; skips (fails in CI) when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("BACKTESTER_REQUIRE_SHARED") == "1":
            pytest.fail(f"shared data folder {path} is missing (BACKTESTER_REQUIRE_SHARED=1)")
        pytest.skip(f"shared data folder {path} not found; set BACKTESTER_SHARED_DATA")
    return path


_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        return str(address[0]) in _LOOPBACK or str(address[0]).startswith("127.")
    return isinstance(address, str | bytes)  # unix sockets are local


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        msg = f"test tried to reach {address!r}: only loopback connections are allowed in tests"
        raise ConnectionRefusedError(msg)
    _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    if host is not None and str(host) not in _LOOPBACK and not str(host).startswith("127."):
        msg = f"test tried to resolve {host!r}: only loopback hosts are allowed in tests"
        raise socket.gaierror(msg)
    return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _socket_guard() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.getaddrinfo = _real_getaddrinfo
