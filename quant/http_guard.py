"""HTTP that a cancel or a deadline interrupts in every state: connecting, waiting, streaming.

httpx's sync client blocks in `connect()` and `recv()`; closing its socket from another thread
does not wake them (issue 12: a cancel closed a hung stream only after 28 s). So the remote
backend's transport uses a network backend whose waits are short `select()` slices that check
the calling thread's `RequestGuard` in between; an aborted wait raises, and httpcore then closes
the connection on this same thread, so the server sees it go at once.
"""

from __future__ import annotations

import contextlib
import select
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from .backend import CancelToken

# How long one wait may go unchecked: a cancel lands within this.
SLICE_S = 0.05
_active = threading.local()


class RequestGuard:
    """A request's cancel token and its overall deadline (time.monotonic())."""

    def __init__(self, cancel: CancelToken, deadline: float) -> None:
        self.cancel = cancel
        self.deadline = deadline

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self.deadline

    def left(self) -> float:
        """Seconds until the deadline (0 once past)."""
        return max(0.0, self.deadline - time.monotonic())

    def check(self, what: str) -> None:
        """Raise the httpcore error for an aborted wait, naming `what` was waited for."""
        if self.cancel.cancelled:
            raise httpcore.ReadError(f"cancelled while {what}")
        if self.expired:
            raise httpcore.ReadTimeout(f"deadline passed while {what}")


@contextlib.contextmanager
def guarding(guard: RequestGuard) -> Iterator[None]:
    """Make `guard` the one this thread's HTTP waits check, for the block's duration."""
    previous = getattr(_active, "guard", None)
    _active.guard = guard
    try:
        yield
    finally:
        _active.guard = previous


def _current() -> RequestGuard | None:
    return getattr(_active, "guard", None)


def _wait_readable(sock: Any, timeout: float | None) -> None:
    """Wait until `sock` has data, in slices that check the thread's guard."""
    guard = _current()
    if guard is None or sock is None:
        return
    limit = None if timeout is None else time.monotonic() + timeout
    while True:
        guard.check("waiting for data")
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted bytes already buffered: select() would not see them
        if limit is not None and time.monotonic() >= limit:
            raise httpcore.ReadTimeout(f"no data within {timeout}s")
        ready, _, _ = select.select([sock], [], [], SLICE_S)
        if ready:
            return


class GuardedStream(httpcore.NetworkStream):
    """A network stream whose reads wait in guarded slices."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read once data is there; the guard may abort the wait."""
        _wait_readable(self._inner.get_extra_info("socket"), timeout)
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write (a request body is small: the kernel takes it without waiting)."""
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        """Close the connection."""
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        """The TLS stream over this one, guarded the same way."""
        return GuardedStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        """What the inner stream says (its socket, the TLS object)."""
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend with guarded connects and reads."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        """Connect on a helper thread and wait for it in guarded slices; an abandoned connect
        closes its socket when it completes (by then nobody waits for it)."""
        guard = _current()
        if guard is None:
            return GuardedStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))
        box: dict[str, Any] = {}
        done = threading.Event()
        lock = threading.Lock()

        def connect() -> None:
            try:
                stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
            except Exception as exc:  # handed to the waiting thread
                stream, box["error"] = None, exc
            with lock:
                if box.get("abandoned") and stream is not None:
                    stream.close()
                box["stream"] = stream
                done.set()

        threading.Thread(target=connect, name="codeflow-connect", daemon=True).start()
        while not done.wait(SLICE_S):
            with lock:
                if guard.cancel.cancelled or guard.expired:
                    box["abandoned"] = True
            if box.get("abandoned"):
                guard.check(f"connecting to {host}:{port}")
        if "error" in box:
            raise box["error"]
        return GuardedStream(box["stream"])


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport over a connection pool that uses `GuardedBackend`."""

    def __init__(self, verify: bool = True) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify), network_backend=GuardedBackend()
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the pool; httpcore errors become httpx's."""
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped():
            response = self._pool.handle_request(core)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response.stream), extensions=response.extensions)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        with _mapped():
            yield from self._inner

    def close(self) -> None:
        with _mapped():
            self._inner.close()


# httpcore's errors and the httpx ones callers catch, most specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise
