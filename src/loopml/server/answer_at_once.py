"""The team server's HTTP protocol: small tracking writes answered as they are parsed.

An MLflow client sends one request per logged metric and waits for each answer, so the
server's work per request is the client's wait. uvicorn runs every request as an ASGI
cycle: a task, the ASGI layers, a ``receive`` that waits on an event, two ``send`` calls
that each build and check headers. Skipping it saved about 0.16 ms of the server's CPU per
``log-metric`` under MLflow's own client (1.06 against 1.22 ms, database write included).

So a request for an endpoint that can answer without waiting (``AnswerAtOnce``) is held
until its (small) body is in, then answered right there, inside the parser's callback,
with no task and no ASGI cycle. Anything else, and any request the endpoint declines (it
would wait for the database, or the request is in error, which the ASGI path answers with
the app's own error handlers), becomes an ordinary ASGI cycle, exactly as without this.
Holding a request adds no wait: the ASGI path would wait for the same body before
answering (a client such as urllib3 sends the headers and the body in two writes).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from loopml.serving.http_protocol import GuardedHttpProtocol
from loopml.serving.options import descriptor_budget


class AnswerAtOnce(Protocol):
    def wants(self, scope: dict[str, Any]) -> bool:
        """Whether this request (its headers parsed, its body not yet) may be answered
        at once when its body is in: only a body small enough to hold, of a declared
        length (no ``100 Continue``: the client would wait for it)."""

    def answer(self, scope: dict[str, Any], body: bytes) -> bytes | None:
        """The ``200`` answer's JSON body, or None to have it go the ASGI way instead
        (having changed nothing)."""


class TeamServerProtocol(GuardedHttpProtocol):
    """uvicorn's HTTP protocol as the inference server uses it: a cap on open connections
    (from the file-descriptor limit, so idle sockets cannot exhaust it), a deadline for a
    request's headers, each answer's head and body sent in one write; and, with
    ``at_once`` set, small tracking writes answered without an ASGI cycle. A module-level
    class, so that worker processes started by uvicorn find it by name."""

    max_connections = descriptor_budget()
    header_timeout = 10.0
    idle: ClassVar[dict[GuardedHttpProtocol, None]] = {}
    # Set by whoever builds the app for this process (``run.serve``, ``app_from_config``).
    at_once: ClassVar[AnswerAtOnce | None] = None
    answered_at_once: ClassVar[int] = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsing = False
        # A request held until its body is in, with no ASGI task yet.
        self._held: tuple[Any, Any] | None = None

    def data_received(self, data: bytes) -> None:
        self._parsing = True
        try:
            super().data_received(data)
        finally:
            self._parsing = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._held = None  # its body will never come; nothing was done for it
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # A request pipelined behind one answered at once starts within the same read,
        # after that answer armed the keep-alive timer: it must not close under this one.
        self._unset_keepalive_if_required()
        super().on_message_begin()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        at_once = self.at_once
        if (
            at_once is not None
            and self._parsing  # not one started later from uvicorn's pipelining queue
            and app is self.app  # not uvicorn's 503 for a concurrency limit
            and not cycle.waiting_for_100_continue
            and at_once.wants(cycle.scope)
        ):
            self._held = (cycle, app)
            return
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        held = self._held
        if held is None or held[0] is not self.cycle or self.at_once is None:
            return
        self._held = None
        cycle: Any = held[0]
        body = self.at_once.answer(cycle.scope, bytes(cycle.body))
        if body is None:
            super()._start_asgi_task(*held)
        else:
            self._answer(cycle, body)

    def _answer(self, cycle: Any, body: bytes) -> None:
        """What the cycle's own ``send`` does for a ``200`` JSON answer, in one write."""
        type(self).answered_at_once += 1
        cycle.response_started = cycle.response_complete = True
        cycle.waiting_for_100_continue = False
        if cycle.access_log and cycle.access_logger.isEnabledFor(logging.INFO):
            cycle.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(cycle.scope),
                cycle.scope["method"],
                get_path_with_query_string(cycle.scope),
                cycle.scope["http_version"],
                200,
            )
        head = [STATUS_LINE[200]]
        for name, value in cycle.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", b"%d" % len(body)]
        head.append(b"\r\n\r\n" if cycle.keep_alive else b"\r\nconnection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        cycle.body = bytearray()
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
