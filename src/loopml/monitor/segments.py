"""Turning new prediction-log files into stored day segments, once.

Each new log file's rows (shadow answers aside: no client saw them) are split by model
version and UTC day of their event time (the answer time where no event time was sent).
Each part is summarised (``summary.py``): mergeable profiles of the inputs and outputs and
the validation counts of the inputs against the training schema. The server's writer
stores that summary beside each file as it writes it, so ingest reads only the columns
labels are joined against (never the inputs) and merges the files' summaries; a file
without a usable summary is summarised from its rows here. The file is then recorded as
read and never opened again; longer windows merge the stored summaries.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock
from loopml.core.ids import new_id
from loopml.data.schema import Schema
from loopml.monitor.logs import LOG_KIND, unread
from loopml.monitor.reference import References
from loopml.monitor.scores import frame_bytes
from loopml.monitor.summary import DAY as DAY
from loopml.monitor.summary import (
    SUMMARY_PROPERTY,
    PartKey,
    groups,
    read_file_summary,
    rows_of,
    summarise,
)
from loopml.monitor.summary import Summary as Summary
from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import monitor_segments, monitor_sources
from loopml.store.workspace import Workspace

log = logging.getLogger("loopml.monitor")
# What segments keep of each row: what labels join on and what performance is made of.
SCORE_COLUMNS = ("request_id", "row", "t", "prediction", "proba", "source")
# What is read of a log file whose summary is stored (everything but the inputs).
KEY_COLUMNS = ("request_id", "row", "timestamp", "event_time", "model", "model_version", "role")


BATCH_ROWS = 2_000_000  # log rows summarised together (files of a batch share segments)


def ingest_logs(ws: Workspace, references: References) -> list[str]:
    """Summarise every log file not read yet; return the ids of the new segments.

    New files are read in batches and their rows grouped together, so many small files
    (one per flush) make one segment per deployment, version and day, not one per file.
    The scores blob names each row's file (``source``), which is how ``trace`` finds a
    request's logged inputs."""
    new: list[str] = []
    batch: list[ArtifactRecord] = []
    rows = 0
    for record in unread(ws, LOG_KIND):
        batch.append(record)
        rows += int((record.properties or {}).get("rows") or 0)
        if rows >= BATCH_ROWS:
            new += ingest_files(ws, references, batch)
            batch, rows = [], 0
    if batch:
        new += ingest_files(ws, references, batch)
    return new


def _deployment(record: ArtifactRecord) -> str:
    props = record.properties or {}
    return str(props.get("deployment") or props.get("model") or "")


def _schema_of(references: References) -> Any:
    def schema_of(model: str, version: int) -> Schema | None:
        return references.get(model, version).schema

    return schema_of


def _read(
    ws: Workspace, references: References, record: ArtifactRecord
) -> tuple[pl.DataFrame, dict[PartKey, Summary]]:
    """One log file's rows (as ``rows_of`` gives them; without inputs when its stored
    summary is used) and its summaries by (model, version, day)."""
    schema_of = _schema_of(references)
    digest = (record.properties or {}).get(SUMMARY_PROPERTY)
    stored = None
    if isinstance(digest, str):
        raw = ws.artifacts.get_bytes(digest, what=f"summary of prediction log {record.name}")
        stored = read_file_summary(raw, schema_of)
    data = io.BytesIO(ws.artifacts.get_bytes(record.digest, what=f"prediction log {record.name}"))
    if stored is not None:
        names = pq.read_schema(data).names
        wanted = [c for c in (*KEY_COLUMNS, "prediction", "proba") if c in names]
        data.seek(0)
        rows = rows_of(pl.read_parquet(data, columns=wanted))
        if sum(s.rows for s in stored.values()) == rows.height:
            return rows, stored
        log.warning("the summary of %s does not cover its rows; summarising them", record.name)
        data.seek(0)
    rows = rows_of(pl.read_parquet(data))
    made = {
        (str(m), int(v), float(b)): summarise(part, schema_of(str(m), int(v)))
        for (m, v, b), part in groups(rows, ["model", "model_version", "bucket"])
    }
    return rows, made


def ingest_files(ws: Workspace, references: References, records: list[ArtifactRecord]) -> list[str]:
    frames = []
    summaries: dict[tuple[str, str, int, float], list[Summary]] = defaultdict(list)
    for record in records:
        rows, parts = _read(ws, references, record)
        deployment = _deployment(record)
        keep = [c for c in SCORE_COLUMNS if c in rows.columns]
        frames.append(
            rows.select(*keep, "model", "model_version", "bucket").with_columns(
                source=pl.lit(record.id), deployment=pl.lit(deployment)
            )
        )
        for (model, version, bucket), summary in parts.items():
            summaries[(deployment, model, version, bucket)].append(summary)
    df = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    now = clock.now()
    first: dict[str, str] = {}
    for record in records:
        first.setdefault(_deployment(record), record.id)
    segments: list[dict[str, Any]] = []
    for (deployment, model, version, bucket), part in groups(
        df, ["deployment", "model", "model_version", "bucket"]
    ):
        key = (str(deployment), str(model), int(version), float(bucket))
        summary = Summary.merge(summaries[key])
        segments.append(_segment(ws, first[key[0]], key, part, summary))
    sources = [
        {
            "artifact_id": r.id,
            "kind": "log",
            "deployment": _deployment(r),
            "rows": f.height,
            "matched": 0,
            "pending": False,
            "processed_at": now,
        }
        for r, f in zip(records, frames, strict=True)
    ]
    try:
        with ws.write_engine.begin() as conn:
            conn.execute(insert(monitor_sources), sources)
            if segments:
                conn.execute(insert(monitor_segments), segments)
    except SQLIntegrityError:
        return []  # another monitor read these files at the same time
    return [s["id"] for s in segments]


def _segment(
    ws: Workspace,
    source_id: str,
    key: tuple[str, str, int, float],
    part: pl.DataFrame,
    summary: Summary,
) -> dict[str, Any]:
    deployment, model, version, bucket = key
    keep = [c for c in SCORE_COLUMNS if c in part.columns]
    scores = ws.artifacts.put_bytes(frame_bytes(part.select(keep)))
    summary_blob = ws.artifacts.put_bytes(summary.to_json())
    return {
        "id": new_id(),
        "source_id": source_id,
        "deployment": deployment,
        "model": model,
        "version": version,
        "bucket": bucket,
        "rows": part.height,
        "requests": part["request_id"].n_unique(),
        "first_time": float(part["t"].min()),  # type: ignore[arg-type]
        "last_time": float(part["t"].max()),  # type: ignore[arg-type]
        "summary_digest": summary_blob.digest,
        "scores_digest": scores.digest,
        "labels_digest": None,
        "labelled_rows": 0,
        "revision": 0,
        "created_at": clock.now(),
    }
