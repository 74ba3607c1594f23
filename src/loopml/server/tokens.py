"""Bearer tokens of the team server: created once, stored as a hash, revoked by name.

A token is 256 random bits, shown to its creator once. The database keeps its SHA-256
only, so a copy of the database gives no working token. Scopes nest: ``admin`` may do what
``write`` may, which may do what ``read`` may.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, exists, insert, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock, names
from loopml.core.errors import ConflictError, InvalidInputError, LoopmlError, NotFoundError
from loopml.store.metadata.tables import api_tokens
from loopml.store.workspace import Workspace

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
PREFIX = "lm_"


class UnauthorizedError(LoopmlError):
    """No token, or a token that is unknown or revoked, while the server requires one."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"
    exit_code = 1


class ForbiddenError(LoopmlError):
    """A valid token whose scope does not allow the request."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"
    exit_code = 1


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scope: Scope
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def check_scope(scope: object) -> Scope:
    if scope not in SCOPES:
        raise InvalidInputError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return scope


def allows(granted: Scope, needed: Scope) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(ws: Workspace, name: str, scope: str) -> str:
    """A new token named ``name``; the only time the token itself is available."""
    names.check_name(name, what="token name")
    checked = check_scope(scope)
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with ws.write_engine.begin() as conn:
            conn.execute(
                insert(api_tokens).values(
                    name=name,
                    scope=checked,
                    token_hash=hash_token(token),
                    created_at=clock.now(),
                )
            )
    except SQLIntegrityError:
        raise ConflictError(
            f"a token named {name!r} exists already; revoke it or choose another name"
        ) from None
    return token


def list_tokens(ws: Workspace) -> list[TokenInfo]:
    with ws.engine.connect() as conn:
        rows = conn.execute(select(api_tokens).order_by(api_tokens.c.name)).all()
    return [
        TokenInfo(r.name, check_scope(r.scope), r.created_at, r.revoked_at, r.last_used_at)
        for r in rows
    ]


def revoke(ws: Workspace, name: str) -> None:
    names.check_name(name, what="token name")
    with ws.write_engine.begin() as conn:
        done = conn.execute(
            update(api_tokens)
            .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=clock.now())
        )
    if done.rowcount == 0:
        raise NotFoundError(f"no active token named {name!r}; `loopml token ls` lists them")


def any_active(ws: Workspace) -> bool:
    with ws.engine.connect() as conn:
        return bool(
            conn.execute(select(exists().where(api_tokens.c.revoked_at.is_(None)))).scalar()
        )


# Built once: SQLAlchemy then reuses their compiled form without recomputing its cache key.
_ANY_ACTIVE = select(exists().where(api_tokens.c.revoked_at.is_(None)))
_BY_HASH = select(api_tokens).where(api_tokens.c.token_hash == bindparam("token_hash"))


def authenticate(ws: Workspace, token: str | None, *, wait: bool = True) -> TokenInfo | None:
    """The token's record when tokens are required, None when the server has none.

    Raises UnauthorizedError for a missing, unknown or revoked token while any token exists.
    Read on every request (a token created or revoked by another process counts at once),
    so the usual cases cost one query: a valid token is its own proof that tokens are
    required, and without a token only whether any is active is asked. With
    ``wait=False`` it raises ``WouldWait`` where it would wait for the database.
    """
    row = None
    with ws.engine.connect() if wait else ws.nowait.reading() as conn:
        if token:
            row = conn.execute(_BY_HASH, {"token_hash": hash_token(token)}).first()
        if (row is None or row.revoked_at is not None) and not conn.execute(_ANY_ACTIVE).scalar():
            return None
    if not token:
        raise UnauthorizedError(
            "this server requires a token: send 'Authorization: Bearer <token>' "
            "(create one with `loopml token create`)"
        )
    if row is None:
        raise UnauthorizedError("unknown token")
    if row.revoked_at is not None:
        raise UnauthorizedError(f"token {row.name!r} was revoked")
    return TokenInfo(row.name, check_scope(row.scope), row.created_at, None, row.last_used_at)
