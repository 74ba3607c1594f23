"""Read queries the server needs that the domain packages do not offer yet.

A page of runs at an offset, with the total that matched, and executions by kind (monitor
checks, alerts, loop decisions). Candidates to move into ``loopml.tracking`` /
``loopml.store`` once the server's needs settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, or_, select

from loopml.core.errors import InvalidInputError
from loopml.store.lineage import ExecutionRecord
from loopml.store.metadata.tables import executions, experiments, runs, tags
from loopml.store.workspace import Workspace
from loopml.tracking import search
from loopml.tracking.records import Run
from loopml.tracking.store import base_query, order
from loopml.tracking.tracker import Tracker

MAX_PAGE = 1000


@dataclass(frozen=True)
class RunPage:
    runs: list[Run]
    total: int
    offset: int
    limit: int


def runs_page(
    tracker: Tracker,
    *,
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> RunPage:
    """One page of the runs ``filter`` matches, in ``order_by`` order (newest first)."""
    if not 0 < limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be from 1 to {MAX_PAGE}")
    if offset < 0:
        raise InvalidInputError("offset must be 0 or more")
    where: list[Any] = []
    if experiment is not None:
        names = [experiment] if isinstance(experiment, str) else list(experiment)
        where.append(experiments.c.name.in_(names))
    if filter is not None and filter.strip():
        where.append(search.compile_filter(filter))
    keys = search.parse_order_by(order_by or None)
    q = base_query().where(*where)
    for i, key in enumerate(keys):
        f = key.field
        column = search.attribute_column(f.key) if f.entity == "attribute" else None
        q = order(q, f.entity, f.key, key.descending, i, column)
    q = q.order_by(executions.c.start_time.desc(), executions.c.id).offset(offset).limit(limit)
    count_q = (
        select(func.count())
        .select_from(runs)
        .join(executions, executions.c.id == runs.c.id)
        .join(experiments, experiments.c.id == runs.c.experiment_id)
        .where(*where)
    )
    with tracker.workspace.engine.connect() as conn:
        total = int(conn.execute(count_q).scalar_one())
    found = tracker.store.load(q) if total > offset else []
    return RunPage(list(found), total, offset, limit)


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


def set_reserved_tag(ws: Workspace, run_id: str, key: str, value: str) -> None:
    """A ``loopml.`` tag, which the tracking API keeps for loopml's own entries."""
    with ws.write_engine.begin() as conn:
        conn.execute(insert(tags).values(run_id=run_id, key=key, value=value))
