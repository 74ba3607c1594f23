"""Who may call what: token checks as a FastAPI dependency, and the record of every write.

When the workspace has an active token, reads need a ``read`` token and writes (any method
but GET/HEAD/OPTIONS) a ``write`` token, sent as ``Authorization: Bearer <token>``. Pages
also accept the token from the ``loopml_token`` cookie that the sign-in form sets.
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.server import tokens
from loopml.server.audit import AuditLog
from loopml.server.state import state

COOKIE = "loopml_token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise tokens.UnauthorizedError("the Authorization header must be 'Bearer <token>'")
    return request.cookies.get(COOKIE)


def require_access(request: Request) -> None:
    """Raise 401/403 unless the request's token allows its method; remember who it is.
    (A FastAPI dependency: its parameters are what FastAPI reads from the request.)"""
    check_access(request, wait=True)


def check_access(request: Request, *, wait: bool) -> None:
    """``require_access``; with ``wait=False``, ``WouldWait`` where the check would wait
    for the database."""
    info = tokens.authenticate(state(request).workspace, bearer(request), wait=wait)
    request.state.token_name = None if info is None else info.name
    if info is None:
        return
    needed: tokens.Scope = "read" if request.method in READ_METHODS else "write"
    if not tokens.allows(info.scope, needed):
        raise tokens.ForbiddenError(
            f"token {info.name!r} has scope {info.scope!r}; this request needs {needed!r}"
        )


class WriteLog:
    """ASGI middleware: every write under /api/ is recorded with its token's name and status
    (queued to ``audit``, which writes in batches)."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in READ_METHODS
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            # Requests refused before a token was checked (401) name no one; still recorded.
            name = scope.get("state", {}).get("token_name")
            self.audit.record(name, scope["method"], scope["path"], status)
