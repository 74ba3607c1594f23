"""What every router shares: documented error answers and parsing of path values."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from loopml.core import names
from loopml.server import tokens
from loopml.server.auth import bearer
from loopml.server.wire import ErrorBody
from loopml.store.workspace import Workspace

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request"},
    401: {"model": ErrorBody, "description": "a token is required, or it is unknown or revoked"},
    403: {"model": ErrorBody, "description": "the token's scope does not allow this"},
    404: {"model": ErrorBody, "description": "no such run, dataset, model or artifact"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorBody, "description": "conflicts with the current state"},
}


ANONYMOUS = "anonymous"


def who(request: Request) -> str:
    """Whom a write is recorded as made by: its token's name, or ``anonymous`` when the
    server has no tokens (``require_access`` has checked the token by now)."""
    name = getattr(request.state, "token_name", None)
    return name if name else ANONYMOUS


def version_number(text: str) -> int:
    return names.parse_positive_int(text, "version")


def require_admin(ws: Workspace, request: Request, doing: str) -> None:
    """Refuse (403) a token below ``admin`` for what a write or read token alone must not
    do; ``doing`` says what that is. A server without tokens lets everyone through."""
    info = tokens.authenticate(ws, bearer(request))
    if info is not None and not tokens.allows(info.scope, "admin"):
        raise tokens.ForbiddenError(
            f"token {info.name!r} has scope {info.scope!r}; {doing} needs an 'admin' token"
        )
