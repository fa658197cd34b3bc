"""The local Dask cluster of a sweep refuses clients without its credentials (issue 15, item 11).

The sweep's cluster listens on 127.0.0.1, where any local user can connect; before this issue a
plain ``Client("tcp://127.0.0.1:<port>")`` could submit code to its workers. Now it speaks TLS
only and requires the temporary certificate made for it (``Security.temporary()``).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from backtester import sweep
from backtester.errors import ConfigError
from backtester.sweep import make_executor

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def sweep_cluster() -> Iterator[Any]:
    with make_executor(workers=2, n_tasks=1) as executor:
        yield executor


def _host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _tls_attempt(address: str, cert: tuple[Path, Path] | None) -> bytes:
    # a raw TLS connection that does not check the server (as an attacker would not) and
    # offers ``cert`` as its client certificate, then reads: the server's refusal shows here
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(certfile=cert[0], keyfile=cert[1])
    with socket.create_connection(_host_port(address), timeout=10) as raw, \
            ctx.wrap_socket(raw) as tls:
        tls.settimeout(10)
        return tls.recv(1)


def test_sweep_cluster_works_over_tls_for_its_own_client_15(sweep_cluster: Any) -> None:
    assert sweep_cluster._client.scheduler.address.startswith("tls://127.0.0.1:")
    assert sweep_cluster.submit(pow, 2, 10).result() == 1024


def test_plain_client_is_refused_by_the_sweep_cluster_15(sweep_cluster: Any) -> None:
    address = sweep_cluster._client.scheduler.address
    plain = "tcp://" + address.split("://", 1)[1]

    with pytest.raises((OSError, TypeError)):  # reset by the TLS listener
        distributed.Client(plain, timeout="5s")
    with pytest.raises(TypeError, match="TLS"):  # a tls:// address needs credentials
        distributed.Client(address, timeout="5s")


def _pem_files(security: Any, folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_text(security.tls_client_cert)  # Security.temporary() keeps PEM text in memory
    key.write_text(security.tls_client_key)
    return cert, key


@pytest.mark.parametrize(("offer", "refusal"), [
    ("no certificate", "CERTIFICATE_REQUIRED"),
    ("another self-signed certificate", "UNKNOWN_CA"),
])
def test_tls_client_without_the_credentials_is_refused_15(sweep_cluster: Any, tmp_path: Path,
                                                          offer: str, refusal: str) -> None:
    address = sweep_cluster._client.scheduler.address
    cert = None
    if offer != "no certificate":
        cert = _pem_files(distributed.security.Security.temporary(), tmp_path)

    with pytest.raises(ssl.SSLError, match=refusal):
        _tls_attempt(address, cert)
    # the control: the same raw connection with the cluster's own credentials gets an answer
    assert _tls_attempt(address, _pem_files(sweep_cluster._client.security, tmp_path))


@pytest.mark.parametrize("address", ["notaurl", "http://host:8786", "tls://host", "tcp://:8786"])
def test_scheduler_address_must_be_tcp_or_tls_host_port_15(address: str) -> None:
    with pytest.raises(ConfigError, match=r"--scheduler: .* is not a Dask scheduler address"):
        sweep.check_scheduler_address(address)


def test_tls_files_must_exist_15(tmp_path: Path) -> None:
    tls = sweep.SchedulerTls(ca_file=str(tmp_path / "ca.pem"), cert_file=str(tmp_path / "c.pem"),
                       key_file=str(tmp_path / "k.pem"))
    with pytest.raises(ConfigError, match=r"--tls-ca-file: file .*ca.pem not found"):
        tls.security()
