"""Serving errors as HTTP responses, and the request id on every response.

Statuses come from the one error table (:func:`loopml.core.errors.error_codes`); nothing
below this module knows about HTTP. :class:`RequestContextMiddleware` gives each
request an id (the client's ``X-Request-ID`` if usable, else a new one), returns it in the
``x-request-id`` header of every response (errors included), times the request for the
metrics, and turns an unexpected exception into a logged 500 that still carries the id.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.core.errors import InvalidInputError, error_codes
from loopml.serving.errors import OverloadedError, RequestTimeoutError
from loopml.serving.metrics import ServingMetrics
from loopml.serving.runtime import check_request_id, new_request_id

log = logging.getLogger("loopml.serving")
REQUEST_ID_HEADER = "x-request-id"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def loopml_error_response(exc: Exception) -> Response:
    headers = None
    if isinstance(exc, OverloadedError):
        headers = {"retry-after": str(exc.retry_after)}
    elif isinstance(exc, RequestTimeoutError):
        headers = {"connection": "close"}  # the rest of a slow body is not worth waiting for
    return error_response(error_codes(exc).http_status, str(exc), headers)


async def loopml_error_handler(request: Request, exc: Exception) -> Response:
    return loopml_error_response(exc)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail))


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["started"] = started
        state["request_id"] = _client_id(scope) or new_request_id()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                rid = str(state.get("request_id", ""))
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode("utf-8", "replace")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error on %s (request %s)", scope["path"], state["request_id"])
            if not response_started:
                await error_response(
                    500, f"internal server error; request id {state['request_id']}"
                )(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.observe_request("http", endpoint, status, time.perf_counter() - started)


def _client_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            try:
                return check_request_id(value.decode("utf-8"))
            except (UnicodeDecodeError, InvalidInputError):
                return None
    return None
