"""Insert-or-update in one statement, on either backend.

SQLite and PostgreSQL spell ``INSERT ... ON CONFLICT`` alike, but SQLAlchemy builds it
from each dialect's own ``insert``; this picks the one the connection speaks, so callers
never branch on the dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from loopml.store.metadata import nowait

# (the row being inserted, the row already there) -> whether to overwrite it
Condition = Callable[[Any, Any], ColumnElement[bool]]


def upsert(
    conn: Connection | nowait.Connection,
    table: Table,
    *,
    keys: Sequence[str],
    update: Sequence[str] = (),
    where: Condition | None = None,
) -> Any:
    """``INSERT`` into ``table``; on a conflict on ``keys`` take the new ``update`` columns
    (when ``where`` holds), or keep the existing row when ``update`` is empty.

    Returns the statement; execute it with one row or a list of rows.
    """
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    index = [table.c[k] for k in keys]
    if not update:
        return stmt.on_conflict_do_nothing(index_elements=index)
    return stmt.on_conflict_do_update(
        index_elements=index,
        set_={c: stmt.excluded[c] for c in update},
        where=None if where is None else where(stmt.excluded, table.c),
    )
