"""MLflow's tracking endpoints as one plain ASGI layer in front of FastAPI's routing.

A tracking client calls these thousands of times (each ``mlflow.log_metric`` is one
request), so each should cost what its own work costs. Here a request is routed by one
dict lookup; the token check and the handler run together in one worker-thread hop; the
answer is serialised by orjson. Through FastAPI the same request paid for matching
every route of the app, solving dependencies and a thread hop for each sync dependency,
which together cost more than the handler's database work (docs/benchmarks.md).

Every other request falls through to the app unchanged. Errors are answered as the app's
own exception handlers answer them (``on_error``), so the wire shapes stay identical.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from loopml.core.errors import InvalidInputError
from loopml.server.audit import AuditLog
from loopml.server.auth import READ_METHODS, check_access
from loopml.server.mlflow.protocol import MAX_BODY, PREFIX, error_response, parse_body
from loopml.server.state import state
from loopml.store.metadata.nowait import WouldWait

# (server state, the request's JSON body or query parameters, the request) -> the answer;
# a handler that may run on the event loop also takes ``wait`` (see ``Endpoints.post``).
Handler = Callable[..., dict[str, Any]]
OnError = Callable[[Request, Exception], Awaitable[Response | None]]
_READS = ("GET", "HEAD")
_JSON = (b"content-type", b"application/json")
# Recorded in the audit for a request whose client left before it was read (nginx's code).
CLIENT_GONE = 499
log = logging.getLogger("loopml.server")
# A body up to this size may be handled on the event loop: a lone metric or a small batch
# is checked in well under a millisecond; a larger batch goes to a worker thread.
INLINE_BODY_MAX = 16 * 1024


@dataclass(frozen=True)
class Route:
    handler: Handler
    inline: bool


class Endpoints:
    """The table of hot endpoints: (method, full path) -> route."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], Route] = {}

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self._add(_READS, path, inline=False)

    def post(self, path: str, *, inline: bool = False) -> Callable[[Handler], Handler]:
        """``inline``: the handler takes ``wait`` and, called with ``wait=False``, either
        answers without waiting for the database or raises ``WouldWait`` having changed
        nothing. Such a request with a small body is first tried on the event loop itself,
        which saves two thread hand-offs; on ``WouldWait`` it goes to a worker thread."""
        return self._add(("POST",), path, inline=inline)

    def _add(
        self, methods: tuple[str, ...], path: str, *, inline: bool
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for method in methods:
                self.table[(method, PREFIX + path)] = Route(handler, inline)
            return handler

        return register


class HotPaths:
    """The outermost ASGI layer: answers the endpoints of ``endpoints`` itself and hands
    every other request to ``app`` (FastAPI's own middleware stack and routing).

    Being outermost, it does for its requests what the app's layers do for the rest:
    errors are answered by ``on_error`` (the app's own exception handlers, so the wire
    shapes are identical) and writes are recorded in ``audit``."""

    def __init__(
        self, app: ASGIApp, endpoints: Endpoints, on_error: OnError, audit: AuditLog
    ) -> None:
        self.app = app
        self.table = endpoints.table
        self.on_error = on_error
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.table.get((scope.get("method", ""), scope.get("path", "")))
        if route is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        status = 500
        try:
            answer = await self._answer(route, request, receive)
        except ClientDisconnect:
            status = CLIENT_GONE  # no one to answer; nothing was done
        except Exception as exc:
            response = await self._error(request, exc)
            status = response.status_code
            await response(scope, receive, send)
        else:
            status = 200
            body = orjson.dumps(answer)
            headers = [_JSON, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            if scope["method"] not in READ_METHODS:
                name = scope.get("state", {}).get("token_name")
                self.audit.record(name, scope["method"], scope["path"], status)

    def wants(self, scope: Scope) -> bool:
        """Whether the request may be answered by ``answer`` once its body is in: an
        inline endpoint, and a body of a declared length small enough to wait for."""
        route = self.table.get((scope["method"], scope["path"]))
        if route is None or not route.inline:
            return False
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return False
        return length is not None and length.isdigit() and int(length) <= INLINE_BODY_MAX

    def answer(self, scope: Scope, body: bytes) -> bytes | None:
        """A request ``wants`` accepted, answered here and now with no ASGI cycle: the JSON
        of its ``200``; or None, having changed nothing, where it would wait for the
        database or fails (the ASGI path then answers it, errors in the app's own shapes).
        ``scope`` must name the app, as ``__call__`` expects."""
        route = self.table[(scope["method"], scope["path"])]
        try:
            answer = _checked(route, body, Request(scope), wait=False)
        except Exception:  # WouldWait, a caller's mistake, or a bug: all answered by ASGI
            return None
        self.audit.record(scope["state"].get("token_name"), scope["method"], scope["path"], 200)
        return orjson.dumps(answer)

    async def _answer(self, route: Route, request: Request, receive: Receive) -> dict[str, Any]:
        raw = None if request.method in _READS else await _body(receive)
        if route.inline and raw is not None and len(raw) <= INLINE_BODY_MAX:
            with contextlib.suppress(WouldWait):
                return _checked(route, raw, request, wait=False)
        return await anyio.to_thread.run_sync(_checked, route, raw, request)

    async def _error(self, request: Request, exc: Exception) -> Response:
        found = await self.on_error(request, exc)
        if found is not None:
            return found
        # A bug, not the caller's mistake: logged with its traceback, answered in MLflow's
        # error shape as any other MLflow endpoint's failure is.
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, f"{request.method} {request.url.path} failed on the server")


async def _body(receive: Receive) -> bytes:
    """The body, refused as soon as it passes MLflow's size cap rather than once read."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        part = message.get("body", b"")
        size += len(part)
        if size > MAX_BODY:
            raise InvalidInputError(f"the request body is over {MAX_BODY} bytes")
        parts.append(part)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _checked(
    route: Route, raw: bytes | None, request: Request, wait: bool = True
) -> dict[str, Any]:
    """The token first, as FastAPI's dependency checked it before the body was read."""
    check_access(request, wait=wait)
    # Repeated query parameters: the last one counts, as in FastAPI's query parsing.
    data = dict(request.query_params) if raw is None else parse_body(raw)
    if route.inline:
        return route.handler(state(request), data, request, wait=wait)
    return route.handler(state(request), data, request)
