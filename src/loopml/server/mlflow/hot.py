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

from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from loopml.server.auth import require_access
from loopml.server.mlflow.protocol import PREFIX, parse_body
from loopml.server.state import ServerState, state

# (server state, the request's JSON body or query parameters, the request) -> the answer
Handler = Callable[[ServerState, dict[str, Any], Request], dict[str, Any]]
OnError = Callable[[Request, Exception], Awaitable[Response | None]]
_READS = ("GET", "HEAD")


class Endpoints:
    """The table of hot endpoints: (method, full path) -> handler."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], Handler] = {}

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self._add(_READS, path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self._add(("POST",), path)

    def _add(self, methods: tuple[str, ...], path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for method in methods:
                self.table[(method, PREFIX + path)] = handler
            return handler

        return register


class HotPaths:
    """ASGI middleware answering the endpoints of ``endpoints``; the rest goes to ``app``."""

    def __init__(self, app: ASGIApp, endpoints: Endpoints, on_error: OnError) -> None:
        self.app = app
        self.table = endpoints.table
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.table.get((scope.get("method", ""), scope.get("path", "")))
        if handler is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            raw = None if scope["method"] in _READS else await request.body()
            answer = await anyio.to_thread.run_sync(_checked, handler, raw, request)
            response = Response(orjson.dumps(answer), media_type="application/json")
        except Exception as exc:
            found = await self.on_error(request, exc)
            if found is None:
                raise
            response = found
        await response(scope, receive, send)


def _checked(handler: Handler, raw: bytes | None, request: Request) -> dict[str, Any]:
    """The token first, as FastAPI's dependency checked it before the body was read."""
    require_access(request)
    # Repeated query parameters: the last one counts, as in FastAPI's query parsing.
    data = dict(request.query_params) if raw is None else parse_body(raw)
    return handler(state(request), data, request)
