"""The test suite's socket guard: nothing may leave the machine."""

from __future__ import annotations

import socket

import pytest


def test_non_loopback_connect_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(
            ConnectionRefusedError, match=r"only loopback connections are allowed"):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1, never routed


def test_non_loopback_dns_is_refused() -> None:
    with pytest.raises(socket.gaierror, match=r"only loopback hosts are allowed"):
        socket.getaddrinfo("fapi.binance.com", 443)


def test_loopback_is_allowed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
