"""Turning new prediction-log files into stored day segments, once.

Each new log file is read, its rows (shadow answers aside: no client saw them) split by
model version and UTC day of their event time (the answer time where no event time was
sent), and each part summarised: mergeable profiles of the inputs and outputs, the
validation counts of the inputs against the training schema, and a compact blob of what
labels are joined against. The file is then recorded as read and never opened again;
longer windows merge the stored summaries.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock
from loopml.core.ids import new_id
from loopml.data.profile import Profile, profile
from loopml.data.validate import Anomaly, validate
from loopml.monitoring.logs import EVENT_TIME, LOG_KIND, read_file
from loopml.monitoring.reference import References
from loopml.monitoring.scores import output_table
from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import artifacts, monitor_segments, monitor_sources
from loopml.store.workspace import Workspace

DAY = 86_400.0
SUMMARY_FORMAT = "loopml.monitor_segment/1"
log = logging.getLogger("loopml.monitoring")


@dataclass(frozen=True)
class Summary:
    """What a segment (or a merge of segments) knows without its rows."""

    rows: int
    inputs: Profile
    outputs: Profile
    anomalies: tuple[Anomaly, ...]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": SUMMARY_FORMAT,
                "rows": self.rows,
                "inputs": self.inputs.to_dict(),
                "outputs": self.outputs.to_dict(),
                "anomalies": [a.to_dict() for a in self.anomalies],
            },
            allow_nan=False,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Summary:
        d = json.loads(raw)
        return cls(
            int(d["rows"]),
            Profile.from_dict(d["inputs"]),
            Profile.from_dict(d["outputs"]),
            tuple(
                Anomaly(
                    a["kind"],
                    a["severity"],
                    a["column"],
                    a["message"],
                    a["count"],
                    tuple(a["examples"]),
                )
                for a in d["anomalies"]
            ),
        )


def new_log_files(ws: Workspace) -> list[ArtifactRecord]:
    q = (
        select(artifacts)
        .outerjoin(monitor_sources, monitor_sources.c.artifact_id == artifacts.c.id)
        .where(artifacts.c.kind == LOG_KIND, monitor_sources.c.artifact_id.is_(None))
        .order_by(artifacts.c.created_at)
    )
    with ws.engine.connect() as conn:
        return [ArtifactRecord(**r._mapping) for r in conn.execute(q).all()]


def ingest_logs(ws: Workspace, references: References) -> list[str]:
    """Summarise every log file not read yet; return the ids of the new segments."""
    new: list[str] = []
    for record in new_log_files(ws):
        new += ingest_file(ws, references, record)
    return new


def rows_of(table: Any) -> pl.DataFrame:
    """A log file's rows with ``t``, the event time (else answer time) in epoch seconds."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    answered = pl.col("timestamp").dt.epoch("us").cast(pl.Float64) / 1e6
    if EVENT_TIME in df.columns:
        t = pl.coalesce(pl.col(EVENT_TIME).dt.epoch("us").cast(pl.Float64) / 1e6, answered)
    else:
        t = answered
    if "role" in df.columns:
        df = df.filter(pl.col("role") != "shadow")
    return df.with_columns(t=t, bucket=(t / DAY).floor() * DAY)


def ingest_file(ws: Workspace, references: References, record: ArtifactRecord) -> list[str]:
    props = record.properties or {}
    deployment = str(props.get("deployment") or props.get("model") or "")
    df = rows_of(read_file(ws, record))
    now = clock.now()
    segments: list[dict[str, Any]] = []
    for (model, version, bucket), part in df.group_by(
        ["model", "model_version", "bucket"], maintain_order=True
    ):
        segments.append(_segment(ws, references, record, deployment, model, version, bucket, part))
    try:
        with ws.write_engine.begin() as conn:
            conn.execute(
                insert(monitor_sources).values(
                    artifact_id=record.id,
                    kind="log",
                    deployment=deployment,
                    rows=df.height,
                    matched=0,
                    pending=False,
                    processed_at=now,
                )
            )
            if segments:
                conn.execute(insert(monitor_segments), segments)
    except SQLIntegrityError:
        return []  # another monitor read this file at the same time
    return [s["id"] for s in segments]


def _segment(
    ws: Workspace,
    references: References,
    record: ArtifactRecord,
    deployment: str,
    model: Any,
    version: Any,
    bucket: Any,
    part: pl.DataFrame,
) -> dict[str, Any]:
    inputs = part.select(pl.col("inputs").struct.unnest())
    ref = references.get(str(model), int(version))
    outputs = output_table(part, ref.classes).with_columns(part["latency_ms"])
    anomalies: tuple[Anomaly, ...] = ()
    if ref.schema is not None:
        anomalies = validate(inputs, ref.schema).anomalies
    summary = Summary(part.height, profile(inputs), profile(outputs), anomalies)
    keep = [c for c in ("request_id", "row", "t", "prediction", "proba") if c in part.columns]
    sink = io.BytesIO()
    pq.write_table(part.select(keep).to_arrow(), sink, compression="zstd", compression_level=1)
    scores = ws.artifacts.put_bytes(sink.getvalue())
    summary_blob = ws.artifacts.put_bytes(summary.to_json())
    return {
        "id": new_id(),
        "source_id": record.id,
        "deployment": deployment,
        "model": str(model),
        "version": int(version),
        "bucket": float(bucket),
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
