"""Exceptions -> HTTP answers, in one place, through ``loopml.core.errors.error_codes``.

API paths answer JSON (``{"error": ..., "type": ...}``); pages answer an HTML page that
says the same. A malformed request is a 400 naming the bad parameter, never a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopml.core.errors import InvalidInputError, LoopmlError, StoreError, error_codes
from loopml.server.mlflow import protocol as mlflow_protocol

log = logging.getLogger("loopml.server")
API_PREFIXES = ("/api/",)
Handler = Callable[[Request, Exception], Awaitable[Response]]


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIXES)


def answer(
    request: Request,
    status: int,
    message: str,
    kind: str,
    headers: Mapping[str, str] | None = None,
    exc: BaseException | None = None,
) -> Response:
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if mlflow_protocol.is_mlflow_path(request.url.path):
        return mlflow_protocol.error_response(status, message, exc)
    if _wants_json(request):
        return JSONResponse({"error": message, "type": kind}, status, headers=headers)
    templates = request.app.state.templates
    return HTMLResponse(
        templates.get_template("error.html").render(
            request=request, path=request.url.path, status=status, message=message, kind=kind
        ),
        status,
        headers=headers,
    )


def _describe(errors: Any) -> str:
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",)) or "request"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "malformed request"


def _allowed(request: Request, fallback: str | None) -> str | None:
    """Every method the API document lists for this path. Starlette's 405 names only the
    first matching route's methods, though GET and POST of one path are separate routes."""
    path = request.url.path
    if not path.startswith(API_PREFIXES):
        return fallback
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in operations}
    return ", ".join(sorted(methods)) if methods else fallback


async def loopml_error(request: Request, exc: Exception) -> Response:
    codes = error_codes(exc)
    if codes.http_status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    return answer(request, codes.http_status, str(exc), type(exc).__name__, exc=exc)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    bad = InvalidInputError(_describe(exc.errors()))
    return answer(request, error_codes(bad).http_status, str(bad), type(bad).__name__)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    kind = "NotFoundError" if exc.status_code == 404 else "HTTPError"
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"nothing at {request.url.path}; the API is described at /api/v1/openapi.json"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allow = _allowed(request, headers.get("Allow"))
        if allow:
            headers["Allow"] = allow
    return answer(request, exc.status_code, detail, kind, headers)


async def database_error(request: Request, exc: Exception) -> Response:
    # The metadata database is down or locked past its timeout: the store's problem,
    # answered as StoreError is, not a bug.
    assert isinstance(exc, OperationalError)
    down = StoreError(f"the metadata database failed: {exc.orig}")
    log.warning("%s %s: %s", request.method, request.url.path, down)
    return answer(request, error_codes(down).http_status, str(down), type(down).__name__)


HANDLERS: tuple[tuple[type[Exception], Handler], ...] = (
    (LoopmlError, loopml_error),
    (OperationalError, database_error),
    (RequestValidationError, validation_error),
    (StarletteHTTPException, http_error),
)


async def respond(request: Request, exc: Exception) -> Response | None:
    """The answer the app's handlers give ``exc``, for code that answers outside FastAPI's
    routing (``loopml.server.mlflow.hot``); None for an exception they do not handle."""
    for kind, handler in HANDLERS:
        if isinstance(exc, kind):
            return await handler(request, exc)
    return None


def install(app: FastAPI) -> None:
    for kind, handler in HANDLERS:
        app.add_exception_handler(kind, handler)
