"""Where a sweep's tasks run: any :class:`concurrent.futures.Executor` — in process
(:class:`InProcessExecutor`), a local TLS-secured Dask cluster, or a remote Dask scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from backtester.errors import ConfigError
from backtester.sweep.tasks import Task, run_task

__all__ = ["InProcessExecutor", "SchedulerTls", "check_scheduler_address", "execute",
           "local_cluster", "make_executor"]

P = ParamSpec("P")
T = TypeVar("T")


class InProcessExecutor(Executor):
    """A synchronous Executor: ``submit`` runs the call at once and returns a done future."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` now; its result or exception is in the returned future."""
        fut: Future[T] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            fut.set_exception(exc)
        return fut


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerTls:
    """PEM files for a TLS connection to a remote Dask scheduler (``--tls-*`` flags).

    ``ca_file`` is the certificate authority that signed the scheduler's (and workers')
    certificates; ``cert_file``/``key_file`` are this client's certificate and private key.
    """

    ca_file: str
    cert_file: str
    key_file: str

    def security(self) -> Any:
        """Return the ``distributed.security.Security`` of a client using these files."""
        from distributed.security import Security

        for flag, path in (("--tls-ca-file", self.ca_file), ("--tls-cert", self.cert_file),
                           ("--tls-key", self.key_file)):
            if not Path(path).is_file():
                msg = f"{flag}: file {path} not found"
                raise ConfigError(msg)
        return Security(tls_ca_file=self.ca_file, tls_client_cert=self.cert_file,
                        tls_client_key=self.key_file, require_encryption=True)


def check_scheduler_address(address: str) -> str:
    """Return ``address`` when it is ``tcp://host:port`` or ``tls://host:port``.

    >>> check_scheduler_address("tls://10.0.0.5:8786")
    'tls://10.0.0.5:8786'
    """
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None \
            or parts.path not in ("", "/"):
        msg = (f"--scheduler: {address!r} is not a Dask scheduler address; expected "
               "tls://host:port (or tcp://host:port on a trusted network), e.g. "
               "tls://10.0.0.5:8786")
        raise ConfigError(msg)
    return address


@contextlib.contextmanager
def local_cluster(n_workers: int) -> Iterator[Any]:
    """Start a loopback Dask cluster secured with temporary TLS credentials; yield its Client.

    The scheduler and workers listen on 127.0.0.1 with ``tls://`` only. A fresh self-signed
    key and certificate are made in memory for this cluster (``Security.temporary()``; never
    written to disk) and every connection must present them, so another local user (or
    process) that reaches the port cannot submit work or read results.
    """
    from distributed import Client, LocalCluster
    from distributed.security import Security

    security = Security.temporary()
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           protocol="tls://", security=security,
                           silence_logs=logging.ERROR)
    try:
        client = Client(cluster, security=security)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


@contextlib.contextmanager
def make_executor(*, workers: int | None = None, scheduler: str | None = None,
                  n_tasks: int | None = None,
                  tls: SchedulerTls | None = None) -> Iterator[Executor]:
    """Yield the Executor of a sweep and shut it down afterwards.

    ``scheduler`` (or ``$DASK_SCHEDULER_ADDRESS``) → that Dask cluster, over TLS with ``tls``
    (or Dask's own ``distributed.comm.tls.*`` configuration for a ``tls://`` address);
    ``workers=1`` → in process; otherwise a local TLS-secured Dask cluster
    (:func:`local_cluster`) of ``min(workers or cpu count, n_tasks)`` processes with one thread
    each.
    """
    scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if scheduler is not None:
        check_scheduler_address(scheduler)
    elif tls is not None:
        msg = "--tls-ca-file/--tls-cert/--tls-key: only for a remote --scheduler"
        raise ConfigError(msg)
    if scheduler is None and workers == 1:
        yield InProcessExecutor()
        return
    try:
        from distributed import Client
        from distributed.security import Security
    except ImportError:
        msg = ("sweeps on a Dask cluster need dask[distributed]: pip install "
               "'backtester[distributed]' (or use --workers 1)")
        raise ConfigError(msg) from None
    if scheduler is not None:
        security = tls.security() if tls is not None else (
            Security() if scheduler.startswith("tls://") else None)
        try:
            client = Client(scheduler, timeout="10s", security=security)
        except (OSError, TypeError, ValueError) as exc:
            msg = f"--scheduler: cannot connect to Dask scheduler {scheduler}: {exc}"
            raise ConfigError(msg) from None
        try:
            yield client.get_executor()
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    if n_tasks is not None:
        n = max(1, min(n, n_tasks))
    with local_cluster(n) as local:
        yield local.get_executor()



def execute(tasks: Sequence[Task], executor: Executor, *,
            on_row: Callable[[dict[str, Any]], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> tuple[list[dict[str, Any]],
                                                                            bool]:
    """Run ``tasks`` on ``executor``; return (rows in completion order, is_complete).

    Ctrl-C (KeyboardInterrupt) cancels the futures not yet finished and returns the rows done.
    """
    rows: list[dict[str, Any]] = []
    futures: list[Future[dict[str, Any]]] = []
    seen: set[int] = set()

    def collect(fut: Future[dict[str, Any]]) -> None:
        seen.add(id(fut))
        row = fut.result()
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if on_progress is not None:
            on_progress(len(rows), len(tasks))

    try:
        for t in tasks:
            fut = executor.submit(run_task, t)
            futures.append(fut)
            if fut.done():  # a synchronous executor: report progress as runs finish
                collect(fut)
        for fut in as_completed([f for f in futures if id(f) not in seen]):
            collect(fut)
    except KeyboardInterrupt:
        for fut in futures:
            fut.cancel()
        for fut in futures:  # keep runs that finished but were not collected yet
            if id(fut) not in seen and fut.done() and not fut.cancelled() \
                    and fut.exception() is None:
                seen.add(id(fut))
                rows.append(fut.result())
                if on_row is not None:
                    on_row(rows[-1])
        return rows, False
    return rows, True
