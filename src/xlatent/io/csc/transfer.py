"""HTTP transfers with a total deadline and a size cap, which a cancelled run aborts at once.

Each request has a total deadline, ``timeout_s`` for connect, headers and the whole body (a
server that drips bytes cannot hold a transfer longer). The sockets of a transfer are
registered with it, so the deadline timer or Ctrl-C in another thread aborts it by shutting
them down, which wakes a read blocked in the transfer's thread at once. An answer is read up
to ``max_bytes`` (announced or received).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import requests
import urllib3
from requests.adapters import HTTPAdapter

from xlatent.io.csc.archive import ArchiveRefused
from xlatent.io.csc.query import TransientError

_CHUNK = 1 << 16
_DEADLINE, _INTERRUPT = "deadline", "interrupt"
_local = threading.local()


class DeadlineExceeded(TransientError):
    """A request did not complete (connect, headers and body) within its deadline."""


class Interrupted(Exception):
    """The run is being stopped (Ctrl-C); raised in the workers."""

    def __init__(self) -> None:
        super().__init__("interrupted")


class _Transfer:
    """One HTTP exchange that another thread can abort by shutting down its sockets, which
    wakes a read blocked in the transfer's thread at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.aborted: str | None = None
        self.received = 0

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.aborted is None:
                return
        _shutdown(sock)

    def abort(self, why: str) -> None:
        with self._lock:
            if self.aborted is None:
                self.aborted = why
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also on an SSL socket (no TLS close exchange, no wait);
    # a closed or detached socket has no descriptor any more: nothing to do.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watch(sock: socket.socket) -> None:
    transfer = getattr(_local, "transfer", None)
    if transfer is not None:
        transfer.attach(sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # the TCP socket: covers the TLS handshake
        return sock

    def connect(self) -> None:
        super().connect()
        _watch(self.sock)  # the TLS socket that replaced it


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections register their sockets with the current transfer."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if type(manager) is urllib3.ProxyManager:  # not SOCKS: its own pool classes
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class Run:
    """State shared by a run's workers: the cancel flag and the transfers in flight."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._active: set[_Transfer] = set()

    def check(self) -> None:
        """Raise :class:`Interrupted` once the run is cancelled."""
        if self.cancelled.is_set():
            raise Interrupted

    @contextlib.contextmanager
    def transfer(self, timeout_s: float) -> Iterator[_Transfer]:
        """A transfer aborted at ``timeout_s`` from now, or when the run is cancelled."""
        t = _Transfer()
        with self._lock:
            self.check()
            self._active.add(t)
        timer = threading.Timer(timeout_s, t.abort, args=(_DEADLINE,))
        timer.daemon = True
        timer.start()
        _local.transfer = t
        try:
            yield t
        finally:
            _local.transfer = None
            timer.cancel()
            with self._lock:
                self._active.discard(t)

    def cancel(self) -> None:
        """Set the cancel flag and abort every transfer in flight."""
        self.cancelled.set()
        with self._lock:
            active = list(self._active)
        for t in active:
            t.abort(_INTERRUPT)


def get_to_file(
    url: str, params: dict[str, str], fh: BinaryIO, run: Run, timeout_s: float, max_bytes: int
) -> None:
    """GET ``url`` with the query ``params`` and write the answer into ``fh``, within
    ``timeout_s`` in all (redirects followed, as ``requests`` does for GET).

    Raises :class:`DeadlineExceeded` past the deadline, :class:`Interrupted` when ``run`` is
    cancelled, :class:`ArchiveRefused` for an answer over ``max_bytes``, ``TransientError``
    for a connection dropped before ``Content-Length`` bytes, ``requests`` errors otherwise.
    """
    with run.transfer(timeout_s) as transfer:
        try:
            _stream(url, params, fh, transfer, run, timeout_s, max_bytes)
        except (ArchiveRefused, Interrupted):
            raise
        except Exception:
            if transfer.aborted is None:
                raise
        if transfer.aborted == _INTERRUPT:
            raise Interrupted
        if transfer.aborted == _DEADLINE:
            raise DeadlineExceeded(
                f"no complete answer within {timeout_s:g} s ({transfer.received} B received)"
            ) from None


def _stream(
    url: str,
    params: dict[str, str],
    fh: BinaryIO,
    transfer: _Transfer,
    run: Run,
    timeout_s: float,
    cap: int,
) -> None:
    deadline = time.monotonic() + timeout_s
    headers = {"Accept-Encoding": "identity", "User-Agent": "xlatent-csc/1"}
    with requests.Session() as session:
        session.mount("http://", _WatchedAdapter())
        session.mount("https://", _WatchedAdapter())
        timeout = (timeout_s, timeout_s)
        with session.get(url, params=params, headers=headers, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            length = (r.headers.get("Content-Length") or "").strip()
            expected = int(length) if length.isdigit() else None
            if expected is not None and expected > cap:
                raise ArchiveRefused(_too_large(f"announced {expected} B", cap))
            for chunk in r.iter_content(chunk_size=_CHUNK):
                transfer.received += len(chunk)
                if transfer.received > cap:
                    raise ArchiveRefused(_too_large(f"over {cap} B", cap))
                if time.monotonic() > deadline:
                    transfer.abort(_DEADLINE)
                    return
                run.check()
                fh.write(chunk)
    if transfer.aborted is None and expected is not None and transfer.received < expected:
        raise TransientError(f"connection dropped after {transfer.received} of {expected} bytes")


def _too_large(what: str, cap: int) -> str:
    return f"answer too large ({what}; the cap is {cap} B per archive, use smaller batches)"


__all__ = ["DeadlineExceeded", "Interrupted", "Run", "get_to_file"]
