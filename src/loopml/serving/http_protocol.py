"""uvicorn's HTTP protocol with the limits a public server needs: a connection cap and a
deadline for request headers.

Without them, idle sockets pile up until the process runs out of file descriptors (then
``accept`` fails and well-behaved clients time out), and a client sending one byte a
second keeps its connection forever. Here:

* at most ``max_connections`` connections are open; a new one beyond that evicts the
  connection that has been idle longest (no request in progress), so idle sockets cannot
  lock out a client that has something to send. If every connection is busy, the new one
  is answered ``503`` with ``Retry-After`` and closed;
* a request's headers must arrive within ``header_timeout`` seconds of its first byte (or
  of the connection opening); otherwise the client gets ``408`` and the connection closes.
  The body has its own deadline, enforced where it is read (``rest_codec.read_body``).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_CLOSE = b"content-length: 0\r\nconnection: close\r\n"


def _response(status_line: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status_line + b"\r\n" + extra + _CLOSE + b"\r\n"


# Seconds an idle connection stays open once shutdown begins, for a request on its way.
SHUTDOWN_GRACE = 0.5
BUSY = _response(b"503 Service Unavailable", b"retry-after: 1\r\n")
TIMEOUT = _response(b"408 Request Timeout")


class GuardedHttpProtocol(HttpToolsProtocol):
    """Use :func:`guarded_protocol` to get a subclass with the limits set."""

    max_connections: ClassVar[int] = 10_000
    header_timeout: ClassVar[float] = 10.0
    # Connections with no request in progress, oldest first (a dict keeps insertion order).
    idle: ClassVar[dict[GuardedHttpProtocol, None]]
    refused: ClassVar[int] = 0
    evicted: ClassVar[int] = 0
    timed_out: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        # Requests begun but not yet answered (pipelining can make it more than one).
        self._open_requests = 0
        self._shutting_down = False
        self._grace_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cls = type(self)
        if len(self.connections) >= self.max_connections:
            if cls.idle:
                oldest = next(iter(cls.idle))
                oldest._forget()
                oldest.transport.close()
                cls.evicted += 1
            else:
                cls.refused += 1
                transport.write(BUSY)
                transport.close()
                self.transport = transport
                return
        super().connection_made(transport)
        self._became_idle()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self.flow is None:  # refused in connection_made
            return
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._open_requests += 1
        type(self).idle.pop(self, None)
        if self._header_timer is None:
            self._arm_header_timer()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:
            self.cycle.transport = ResponseCoalescer(self.transport, self.cycle)
        if self._shutting_down and self.cycle is not None:
            self.cycle.keep_alive = False  # answer it, then close

    def shutdown(self) -> None:
        """Graceful shutdown of this connection: answer what is in progress or arrives
        within ``SHUTDOWN_GRACE`` (with ``connection: close``), then close.

        uvicorn closes an idle connection at once; but a client may have sent its request
        already (a new connection, or one reused from a keep-alive pool), and closing under
        it leaves that request unanswered."""
        self._shutting_down = True
        if self.cycle is None or self.cycle.response_complete:
            if self._open_requests:
                return  # a request has begun arriving: it gets its answer and a close
            self._grace_timer = self.loop.call_later(SHUTDOWN_GRACE, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if not self._open_requests and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        self._open_requests = max(0, self._open_requests - 1)
        super().on_response_complete()
        if self._shutting_down and not self._open_requests:
            self.transport.close()
            return
        if not self._open_requests and not self.transport.is_closing():
            self._became_idle()

    # --------------------------------------------------------------------------------
    def _became_idle(self) -> None:
        idle = type(self).idle
        idle.pop(self, None)
        idle[self] = None

    def _forget(self) -> None:
        type(self).idle.pop(self, None)
        self._cancel_header_timer()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        type(self).timed_out += 1
        self._forget()
        self.transport.write(TIMEOUT)
        self.transport.close()


class ResponseCoalescer(asyncio.Transport):
    """The transport as one response's cycle sees it: the status line and headers are
    held back and sent in one write with the first body chunk.

    uvicorn writes them separately, and asyncio sends each write at once: two system
    calls and two TCP segments per answer, each waking the client, where one does.
    Everything else (a ``100 Continue``, written before the response starts; closing;
    later chunks of a streamed body) passes straight through, and held headers are sent
    before a close, so what reaches the client is byte for byte what it was."""

    __slots__ = ("_cycle", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        super().__init__()
        self._transport = transport
        self._cycle = cycle
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._cycle is not None and self._cycle.response_started:
            # The first write once the response has started is its head.
            self._cycle = None
            self._held = bytes(data)
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._held is not None:
            self._transport.write(self._held)
            self._held = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


def guarded_protocol(max_connections: int, header_timeout: float) -> type[GuardedHttpProtocol]:
    """A protocol class with these limits and its own idle list (one per server)."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "max_connections": max_connections,
            "header_timeout": header_timeout,
            "idle": {},
        },
    )
