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
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock
from loopml.core.ids import new_id
from loopml.data.profile import Profile, profile
from loopml.data.validate import Anomaly, validate
from loopml.monitor.logs import EVENT_TIME, LOG_KIND
from loopml.monitor.reference import References
from loopml.monitor.scores import frame_bytes, output_table
from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import artifacts, monitor_segments, monitor_sources
from loopml.store.workspace import Workspace

DAY = 86_400.0
SUMMARY_FORMAT = "loopml.monitor_segment/1"
log = logging.getLogger("loopml.monitor")


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
            tuple(Anomaly.from_dict(a) for a in d["anomalies"]),
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
    for record in new_log_files(ws):
        batch.append(record)
        rows += int((record.properties or {}).get("rows") or 0)
        if rows >= BATCH_ROWS:
            new += ingest_files(ws, references, batch)
            batch, rows = [], 0
    if batch:
        new += ingest_files(ws, references, batch)
    return new


def rows_of(df: pl.DataFrame) -> pl.DataFrame:
    """Log rows with ``t``, the event time (else answer time) in epoch seconds, and its day."""
    answered = pl.col("timestamp").dt.epoch("us").cast(pl.Float64) / 1e6
    if EVENT_TIME in df.columns:
        t = pl.coalesce(pl.col(EVENT_TIME).dt.epoch("us").cast(pl.Float64) / 1e6, answered)
    else:
        t = answered
    if "role" in df.columns:
        df = df.filter(pl.col("role") != "shadow")
    return df.with_columns(t=t, bucket=(t / DAY).floor() * DAY)


def _deployment(record: ArtifactRecord) -> str:
    props = record.properties or {}
    return str(props.get("deployment") or props.get("model") or "")


def ingest_files(ws: Workspace, references: References, records: list[ArtifactRecord]) -> list[str]:
    frames = []
    for record in records:
        raw = ws.artifacts.get_bytes(record.digest, what=f"prediction log {record.name}")
        frames.append(
            pl.read_parquet(io.BytesIO(raw)).with_columns(
                source=pl.lit(record.id), deployment=pl.lit(_deployment(record))
            )
        )
    df = rows_of(pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0])
    now = clock.now()
    first: dict[str, str] = {}
    for record in records:
        first.setdefault(_deployment(record), record.id)
    segments: list[dict[str, Any]] = []
    keys = ["deployment", "model", "model_version", "bucket"]
    groups: Any
    if df.height and len(first) == 1 and _one_group(df):
        # The usual case (one deployment, version and day): no regrouping copy.
        first_row = df.row(0, named=True)
        groups = [(tuple(first_row[k] for k in keys), df)]
    else:
        groups = df.group_by(keys, maintain_order=True)
    for (deployment, model, version, bucket), part in groups:
        segments.append(
            _segment(
                ws,
                references,
                first[str(deployment)],
                str(deployment),
                model,
                version,
                bucket,
                part,
            )
        )
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


def _one_group(df: pl.DataFrame) -> bool:
    """Whether every row has the same model, version and day (cheaper than ``n_unique``
    over the keys: one min/max pass)."""
    spans = df.select(
        pl.col("model").min().alias("m0"),
        pl.col("model").max().alias("m1"),
        pl.col("model_version").min().alias("v0"),
        pl.col("model_version").max().alias("v1"),
        pl.col("bucket").min().alias("b0"),
        pl.col("bucket").max().alias("b1"),
    ).row(0)
    return spans[0] == spans[1] and spans[2] == spans[3] and spans[4] == spans[5]


def _segment(
    ws: Workspace,
    references: References,
    source_id: str,
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
    summary = Summary(
        part.height, profile(inputs, distinct=False), profile(outputs, distinct=False), anomalies
    )
    keep = [
        c for c in ("request_id", "row", "t", "prediction", "proba", "source") if c in part.columns
    ]
    scores = ws.artifacts.put_bytes(frame_bytes(part.select(keep)))
    summary_blob = ws.artifacts.put_bytes(summary.to_json())
    return {
        "id": new_id(),
        "source_id": source_id,
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
