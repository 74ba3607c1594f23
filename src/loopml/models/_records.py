"""Lineage rows written inside a caller's transaction.

``Lineage`` opens a transaction per write; registration and promotion must write the
version or alias row and their lineage atomically, so they insert through this module on
the connection of their own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, insert, select

from loopml.core import clock
from loopml.core.errors import NotFoundError
from loopml.core.ids import new_id
from loopml.store.metadata.tables import artifacts, events, executions


def add_artifact(
    conn: Connection, digest: str, kind: str, size: int, name: str, properties: dict[str, Any]
) -> str:
    artifact_id = new_id()
    conn.execute(
        insert(artifacts).values(
            id=artifact_id,
            digest=digest,
            kind=kind,
            name=name,
            size=size,
            created_at=clock.now(),
            properties=properties,
        )
    )
    return artifact_id


def add_execution(
    conn: Connection, kind: str, name: str, status: str, properties: dict[str, Any]
) -> str:
    execution_id = new_id()
    ts = clock.now()
    conn.execute(
        insert(executions).values(
            id=execution_id,
            kind=kind,
            name=name,
            status=status,
            start_time=ts,
            end_time=ts,
            error=None,
            properties=properties,
        )
    )
    return execution_id


def link(conn: Connection, execution_id: str, artifact_id: str, type: str, role: str) -> None:
    conn.execute(
        insert(events).values(
            execution_id=execution_id,
            artifact_id=artifact_id,
            type=type,
            role=role,
            created_at=clock.now(),
        )
    )


def check_artifacts(conn: Connection, ids: Iterable[str], what: str) -> None:
    wanted = set(ids)
    if not wanted:
        return
    found = {r[0] for r in conn.execute(select(artifacts.c.id).where(artifacts.c.id.in_(wanted)))}
    missing = sorted(wanted - found)
    if missing:
        raise NotFoundError(
            f"no {what} artifact with id {', '.join(map(repr, missing))} in this workspace; "
            "pass the artifact id of a registered dataset version"
        )


def check_execution(conn: Connection, execution_id: str, what: str) -> None:
    found = conn.execute(select(executions.c.id).where(executions.c.id == execution_id)).first()
    if found is None:
        raise NotFoundError(f"no {what} with id {execution_id!r} in this workspace")
