"""Who may call what: token checks as a FastAPI dependency, and the record of every write.

When the workspace has an active token, reads need a ``read`` token and writes (any method
but GET/HEAD/OPTIONS) a ``write`` token, sent as ``Authorization: Bearer <token>``. Pages
also accept the token from the ``loopml_token`` cookie that the sign-in form sets.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import Request
from sqlalchemy import insert
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopml.core import clock
from loopml.server import tokens
from loopml.server.state import state
from loopml.store.metadata.tables import api_writes
from loopml.store.workspace import Workspace

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
    """Raise 401/403 unless the request's token allows its method; remember who it is."""
    info = tokens.authenticate(state(request).workspace, bearer(request))
    request.state.token_name = None if info is None else info.name
    if info is None:
        return
    needed: tokens.Scope = "read" if request.method in READ_METHODS else "write"
    if not tokens.allows(info.scope, needed):
        raise tokens.ForbiddenError(
            f"token {info.name!r} has scope {info.scope!r}; this request needs {needed!r}"
        )


class WriteLog:
    """ASGI middleware: every write under /api/ is recorded with its token's name and status."""

    def __init__(self, app: ASGIApp, workspace: Workspace) -> None:
        self.app = app
        self.workspace = workspace

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
            await anyio.to_thread.run_sync(
                self._record, name, scope["method"], scope["path"], status
            )

    def _record(self, name: str | None, method: str, path: str, status: int) -> None:
        with self.workspace.write_engine.begin() as conn:
            conn.execute(
                insert(api_writes).values(
                    token_name=name,
                    method=method,
                    path=path[:1000],
                    status=status,
                    created_at=clock.now(),
                )
            )
