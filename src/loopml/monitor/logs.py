"""Reading the prediction log and the feedback labels the inference server writes.

The server writes; monitoring reads. The artifact kinds are declared here (the lower
layer) so serving and monitoring agree on them without monitoring importing serving.
A prediction-log file has the columns the server's ``prediction_log`` module documents;
files written before ``event_time`` existed read as if every event time were null.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import artifacts, monitor_sources
from loopml.store.workspace import Workspace

LOG_KIND = "prediction_log"
FEEDBACK_KIND = "prediction_feedback"
ERROR_KIND = "prediction_errors"  # requests answered with an error, one row each
EVENT_TIME = "event_time"


def records(workspace: Workspace, kind: str) -> list[ArtifactRecord]:
    """Every artifact record of ``kind``, oldest first."""
    with workspace.engine.connect() as conn:
        rows = conn.execute(
            select(artifacts).where(artifacts.c.kind == kind).order_by(artifacts.c.created_at)
        ).all()
    return [ArtifactRecord(**r._mapping) for r in rows]


def unread(workspace: Workspace, kind: str) -> list[ArtifactRecord]:
    """The artifact records of ``kind`` no monitor has read yet (none in ``monitor_sources``),
    oldest first."""
    q = (
        select(artifacts)
        .outerjoin(monitor_sources, monitor_sources.c.artifact_id == artifacts.c.id)
        .where(artifacts.c.kind == kind, monitor_sources.c.artifact_id.is_(None))
        .order_by(artifacts.c.created_at)
    )
    with workspace.engine.connect() as conn:
        return [ArtifactRecord(**r._mapping) for r in conn.execute(q).all()]


EVENT_TIME_FIELD = pa.field(EVENT_TIME, pa.timestamp("us", tz="UTC"))


def read_file(workspace: Workspace, record: ArtifactRecord) -> pa.Table:
    """One log or feedback file, its bytes verified against the digest."""
    what = f"{record.kind} {record.name or record.digest[:19]}"
    data = workspace.artifacts.get_bytes(record.digest, what=what)
    table = pq.read_table(io.BytesIO(data))
    if record.kind == LOG_KIND and EVENT_TIME not in table.column_names:
        # Format 1 had no event times: read them as unknown.
        position = table.column_names.index("timestamp") + 1
        nulls = pa.nulls(table.num_rows, EVENT_TIME_FIELD.type)
        table = table.add_column(position, EVENT_TIME_FIELD, nulls)
    return table


def _concat(tables: Iterable[pa.Table]) -> pa.Table | None:
    parts = list(tables)
    if not parts:
        return None
    return pa.concat_tables(parts, promote_options="permissive")


def _of(workspace: Workspace, kind: str, deployment: str | None) -> pa.Table | None:
    def wanted(r: ArtifactRecord) -> bool:
        props: dict[str, Any] = r.properties or {}
        return deployment is None or props.get("deployment") == deployment

    return _concat(read_file(workspace, r) for r in records(workspace, kind) if wanted(r))


def read_predictions(workspace: Workspace, deployment: str | None = None) -> pa.Table | None:
    """Every logged prediction row (of one deployment), or None if nothing was logged."""
    return _of(workspace, LOG_KIND, deployment)


def read_feedback(workspace: Workspace, deployment: str | None = None) -> pa.Table | None:
    """Every label received (for one deployment), or None."""
    return _of(workspace, FEEDBACK_KIND, deployment)
