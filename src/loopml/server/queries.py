"""Read queries the server needs that the domain packages do not offer yet.

Executions by kind (monitor checks, alerts, loop decisions); a candidate for
``loopml.store.lineage``. Pages of runs are :meth:`loopml.tracking.tracker.Tracker.runs_page`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select

from loopml.store.lineage import ExecutionRecord
from loopml.store.metadata.tables import executions
from loopml.tracking.records import RunPage
from loopml.tracking.tracker import MAX_PAGE as MAX_PAGE
from loopml.tracking.tracker import Tracker


def runs_page(tracker: Tracker, **kwargs: Any) -> RunPage:
    """:meth:`Tracker.runs_page`, under the name ``server/mlflow`` still calls."""
    return tracker.runs_page(**kwargs)


def executions_with_prefix(
    engine: Any, prefixes: Sequence[str], *, limit: int = 200
) -> list[ExecutionRecord]:
    """The latest executions whose kind starts with one of ``prefixes``, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(executions)
            .where(or_(*(executions.c.kind.startswith(p) for p in prefixes)))
            .order_by(executions.c.start_time.desc())
            .limit(limit)
        ).all()
    return [ExecutionRecord(**r._mapping) for r in rows]
