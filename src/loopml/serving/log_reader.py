"""Read the prediction log and feedback back as Arrow tables (for tests and monitoring)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from loopml.serving.event_time import EVENT_TIME
from loopml.serving.feedback import FEEDBACK_KIND
from loopml.serving.prediction_log import LOG_KIND
from loopml.store.metadata.tables import artifacts
from loopml.store.workspace import Workspace

EVENT_TIME_FIELD = pa.field(EVENT_TIME, pa.timestamp("us", tz="UTC"))


def _read(workspace: Workspace, kind: str, deployment: str | None) -> pa.Table | None:
    with workspace.engine.connect() as conn:
        rows = conn.execute(
            select(artifacts.c.digest, artifacts.c.properties)
            .where(artifacts.c.kind == kind)
            .order_by(artifacts.c.created_at)
        ).all()
    tables = []
    for digest, props in rows:
        if deployment is not None and (props or {}).get("deployment") != deployment:
            continue
        data = workspace.artifacts.get_bytes(digest, what=f"{kind} {digest[:19]}")
        table = pq.read_table(io.BytesIO(data))
        if kind == LOG_KIND and EVENT_TIME not in table.column_names:
            # Format 1 had no event times: read them as unknown.
            position = table.column_names.index("timestamp") + 1
            nulls = pa.nulls(table.num_rows, EVENT_TIME_FIELD.type)
            table = table.add_column(position, EVENT_TIME_FIELD, nulls)
        tables.append(table)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def read_predictions(workspace: Workspace, deployment: str | None = None) -> pa.Table | None:
    """Every logged prediction row (of one deployment), or None if nothing was logged."""
    return _read(workspace, LOG_KIND, deployment)


def read_feedback(workspace: Workspace, deployment: str | None = None) -> pa.Table | None:
    return _read(workspace, FEEDBACK_KIND, deployment)
