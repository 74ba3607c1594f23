"""Failed requests: the server's error files, counted once into ``monitor_errors``.

Each error file (artifact kind ``prediction_errors``, one row per request answered with
an error) is read once, like a prediction-log file, and its rows counted per model, UTC
day (of the event time, else the answer time), status and error class. Windows sum the
counts of their days.
"""

from __future__ import annotations

import io
from typing import Any

import polars as pl
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock
from loopml.monitor.logs import ERROR_KIND, unread
from loopml.monitor.summary import DAY
from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import monitor_errors, monitor_sources
from loopml.store.workspace import Workspace


def ingest_errors(ws: Workspace) -> int:
    """Count every error file not read yet; return how many files were read."""
    files = unread(ws, ERROR_KIND)
    for record in files:
        _ingest(ws, record)
    return len(files)


def _ingest(ws: Workspace, record: ArtifactRecord) -> None:
    deployment = str((record.properties or {}).get("deployment") or "")
    raw = ws.artifacts.get_bytes(record.digest, what=f"error log {record.name}")
    df = pl.read_parquet(io.BytesIO(raw))
    t = pl.coalesce(pl.col("event_time"), pl.col("timestamp")).dt.epoch("us").cast(pl.Float64)
    counts = (
        df.with_columns(bucket=(t / 1e6 / DAY).floor() * DAY)
        .group_by("model", "bucket", "status", "error")
        .len()
    )
    rows: list[dict[str, Any]] = [
        {
            "source_id": record.id,
            "deployment": deployment,
            "model": None if r["model"] is None else str(r["model"])[:250],
            "bucket": float(r["bucket"]),
            "status": int(r["status"]),
            "error": str(r["error"])[:100],
            "count": int(r["len"]),
        }
        for r in counts.iter_rows(named=True)
    ]
    source = {
        "artifact_id": record.id,
        "kind": "errors",
        "deployment": deployment,
        "rows": df.height,
        "matched": 0,
        "pending": False,
        "processed_at": clock.now(),
    }
    try:
        with ws.write_engine.begin() as conn:
            conn.execute(insert(monitor_sources).values(**source))
            if rows:
                conn.execute(insert(monitor_errors), rows)
    except SQLIntegrityError:
        pass  # another monitor counted this file at the same time


def error_counts(
    ws: Workspace, what: str, name: str, start: float, end: float
) -> tuple[dict[str, int], list[int]]:
    """Failed requests in ``[start, end)`` by status, and the ids of the counts summed:
    of the deployment, or those that named the model (``what``: deployment | model)."""
    col = monitor_errors.c.deployment if what == "deployment" else monitor_errors.c.model
    q = select(monitor_errors.c.id, monitor_errors.c.status, monitor_errors.c.count).where(
        col == name, monitor_errors.c.bucket >= start, monitor_errors.c.bucket < end
    )
    with ws.engine.connect() as conn:
        found = conn.execute(q.order_by(monitor_errors.c.id)).all()
    by_status: dict[str, int] = {}
    for _, status, count in found:
        by_status[str(status)] = by_status.get(str(status), 0) + int(count)
    return dict(sorted(by_status.items())), [int(r[0]) for r in found]
