"""Exceptions -> HTTP answers, in one place, through ``loopml.core.errors.error_codes``.

API paths answer JSON (``{"error": ..., "type": ...}``); pages answer an HTML page that
says the same. A malformed request is a 400 naming the bad parameter, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopml.core.errors import InvalidInputError, LoopmlError, error_codes

log = logging.getLogger("loopml.server")
API_PREFIXES = ("/api/",)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIXES)


def answer(request: Request, status: int, message: str, kind: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
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


def install(app: FastAPI) -> None:
    async def loopml_error(request: Request, exc: Exception) -> Response:
        codes = error_codes(exc)
        if codes.http_status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return answer(request, codes.http_status, str(exc), type(exc).__name__)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        bad = InvalidInputError(_describe(exc.errors()))
        return answer(request, error_codes(bad).http_status, str(bad), type(bad).__name__)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = "NotFoundError" if exc.status_code == 404 else "HTTPError"
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.url.path}; the API is described at /api/v1/docs"
        return answer(request, exc.status_code, detail, kind)

    app.add_exception_handler(LoopmlError, loopml_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
