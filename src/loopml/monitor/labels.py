"""Joining late labels to the segments whose rows they label, touching only those.

Each new feedback file is read and joined on (request_id, row) against the compact score
blobs of its deployment's segments (never the log files). Every segment that gains labels
gets a new labels blob and a new revision, which is what makes the windows holding it
recompute; other segments and windows are left alone. A repeated label for a row replaces
the earlier one: each labelled row keeps its file's arrival (``received``, then ``file``),
and the latest arrival wins whatever order files are joined in.

Labels that match no segment yet (the server writes its log every few seconds, and
another monitor may be turning it into segments right now) keep their file ``pending``.
At every refresh a pending file is joined against each segment of its deployment it was
not joined against before (``monitor_label_joins``), so it does not matter which monitor
created a segment, nor when: no label is left pending once its row is in a segment.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock
from loopml.core.errors import StoreError
from loopml.monitor.logs import FEEDBACK_KIND, read_file
from loopml.monitor.reference import label_keys
from loopml.monitor.scores import frame_bytes
from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import (
    artifacts,
    monitor_label_joins,
    monitor_segments,
    monitor_sources,
)
from loopml.store.workspace import Workspace

KEY = ["request_id", "row"]
LABEL_COLUMNS = [*KEY, "label", "value"]
ORDER = ["received", "file"]  # which of two labels for a row arrived last


class Blobs:
    """The monitor's immutable blobs, the most recently used kept in memory (bounded, so a
    long-running monitor does not hold every window it ever read)."""

    def __init__(self, ws: Workspace, max_rows: int = 5_000_000) -> None:
        self.ws = ws
        self.max_rows = max_rows
        self._cache: OrderedDict[str, pl.DataFrame] = OrderedDict()
        self._rows = 0

    def read(self, digest: str, what: str) -> pl.DataFrame:
        hit = self._cache.get(digest)
        if hit is not None:
            self._cache.move_to_end(digest)
            return hit
        raw = self.ws.artifacts.get_bytes(digest, what=what)
        # Arrow IPC files start with "ARROW1"; blobs of earlier monitors are Parquet.
        reader = pl.read_ipc if raw[:6] == b"ARROW1" else pl.read_parquet
        df = reader(io.BytesIO(raw))
        self._cache[digest] = df
        self._rows += df.height
        while self._rows > self.max_rows and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._rows -= old.height
        return df


def normalise(table: Any, record: ArtifactRecord) -> pl.DataFrame:
    """(request_id, row, label as text, value as float or null, the file's arrival), the
    last label per row."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    label = df["label"]
    numeric = label.dtype.is_numeric() or label.dtype == pl.Boolean
    return df.select(
        pl.col("request_id").cast(pl.String),
        pl.col("row").cast(pl.Int32),
        label_keys(label).alias("label"),
        (label.cast(pl.Float64) if numeric else pl.lit(None, pl.Float64)).alias("value"),
        pl.lit(float(record.created_at), pl.Float64).alias("received"),
        pl.lit(record.id, pl.String).alias("file"),
    ).unique(KEY, keep="last", maintain_order=True)


def merge_labels(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """The latest-arriving label of each row (blobs written before arrivals were kept
    count as earliest)."""
    for col, dtype in (("received", pl.Float64), ("file", pl.String)):
        if col not in old.columns:
            old = old.with_columns(pl.lit(None, dtype).alias(col))
    both = pl.concat([old, new.select(old.columns)], how="vertical_relaxed")
    return both.sort(ORDER, nulls_last=False, maintain_order=True).unique(
        KEY, keep="last", maintain_order=True
    )


def ingest_labels(ws: Workspace, blobs: Blobs) -> None:
    """Join every new feedback file, and every pending one against the segments it has not
    been joined against yet; oldest file first."""
    for record in files_to_join(ws):
        join_file(ws, record, blobs)


def files_to_join(ws: Workspace) -> list[ArtifactRecord]:
    unjoined = (
        select(monitor_sources.c.artifact_id)
        .join(monitor_segments, monitor_segments.c.deployment == monitor_sources.c.deployment)
        .outerjoin(
            monitor_label_joins,
            and_(
                monitor_label_joins.c.feedback_id == monitor_sources.c.artifact_id,
                monitor_label_joins.c.segment_id == monitor_segments.c.id,
            ),
        )
        .where(
            monitor_sources.c.kind == "feedback",
            monitor_sources.c.pending.is_(True),
            monitor_label_joins.c.segment_id.is_(None),
        )
    )
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(artifacts)
            .outerjoin(monitor_sources, monitor_sources.c.artifact_id == artifacts.c.id)
            .where(
                artifacts.c.kind == FEEDBACK_KIND,
                monitor_sources.c.artifact_id.is_(None) | artifacts.c.id.in_(unjoined),
            )
            .order_by(artifacts.c.created_at, artifacts.c.id)
        ).all()
    return [ArtifactRecord(**r._mapping) for r in rows]


class Conflict(Exception):
    """What a join read changed before it was written (another monitor wrote meanwhile)."""


JOIN_ATTEMPTS = 20


@dataclass(frozen=True)
class Join:
    """One feedback file joined against the segments as read: what to write."""

    record: ArtifactRecord
    deployment: str
    rows: int
    fresh: bool  # the file had not been recorded (else: pending, joined on unjoined segments)
    matched: int  # labels matched by this join
    joined: tuple[tuple[str, int], ...]  # (segment, labels matched) of every segment joined
    updates: tuple[tuple[str, int, str, int], ...]  # segment, revision read, labels blob, rows


def join_file(ws: Workspace, record: ArtifactRecord, blobs: Blobs) -> None:
    """Join one file and write the result; when another monitor wrote in between (the
    file, or one of the same segments), plan again on what it wrote."""
    for _ in range(JOIN_ATTEMPTS):
        try:
            plan = plan_join(ws, record, blobs)
            if plan is not None:
                write_join(ws, plan)
            return
        except Conflict:
            continue
    raise StoreError(
        f"labels of {record.name or record.id} could not be joined: the segments they "
        f"label changed {JOIN_ATTEMPTS} times while joining; run the check again"
    )


def plan_join(ws: Workspace, record: ArtifactRecord, blobs: Blobs) -> Join | None:
    """Join a feedback file against the segments of its deployment it was not joined
    against yet, as they are now; None when there is nothing to do."""
    deployment = str((record.properties or {}).get("deployment") or "")
    with ws.engine.connect() as conn:
        state = conn.execute(
            select(monitor_sources.c.pending).where(monitor_sources.c.artifact_id == record.id)
        ).first()
        if state is not None and not state.pending:
            return None  # every label matched
        joined_before = select(monitor_label_joins.c.segment_id).where(
            monitor_label_joins.c.feedback_id == record.id
        )
        segs = conn.execute(
            select(
                monitor_segments.c.id,
                monitor_segments.c.scores_digest,
                monitor_segments.c.labels_digest,
                monitor_segments.c.revision,
            )
            .where(
                monitor_segments.c.deployment == deployment,
                monitor_segments.c.id.not_in(joined_before),
            )
            .order_by(monitor_segments.c.bucket, monitor_segments.c.id)
        ).all()
    fresh = state is None
    if not fresh and not segs:
        return None
    labels = normalise(read_file(ws, record), record)
    matched = 0
    joined: list[tuple[str, int]] = []
    updates: list[tuple[str, int, str, int]] = []
    for seg in segs:
        keys = blobs.read(seg.scores_digest, "monitor scores").select(KEY)
        hit = labels.join(keys, on=KEY, how="semi")
        joined.append((seg.id, hit.height))
        if hit.height == 0:
            continue
        matched += hit.height
        if seg.labels_digest is not None:
            hit = merge_labels(blobs.read(seg.labels_digest, "monitor labels"), hit)
        blob = ws.artifacts.put_bytes(frame_bytes(hit))
        updates.append((seg.id, int(seg.revision), blob.digest, hit.height))
    return Join(record, deployment, labels.height, fresh, matched, tuple(joined), tuple(updates))


def write_join(ws: Workspace, join: Join) -> None:
    """Record what the join matched and swap each segment's labels, only where nothing it
    read changed since (else ``Conflict``, and nothing is written): the file is still as
    read (new, or pending and not joined against these segments by anyone else) and each
    segment is still at the revision read."""
    now = clock.now()
    src = monitor_sources.c
    try:
        with ws.write_engine.begin() as conn:
            if join.fresh:
                pending = join.matched < join.rows
                conn.execute(
                    insert(monitor_sources).values(
                        artifact_id=join.record.id,
                        kind="feedback",
                        deployment=join.deployment,
                        rows=join.rows,
                        matched=join.matched,
                        pending=pending,
                        processed_at=now,
                    )
                )
            else:
                done = conn.execute(
                    update(monitor_sources)
                    .where(src.artifact_id == join.record.id, src.pending.is_(True))
                    .values(matched=src.matched + join.matched, processed_at=now)
                )
                if done.rowcount != 1:
                    raise Conflict(join.record.id)  # another monitor completed it
                total = conn.execute(
                    select(src.matched, src.rows).where(src.artifact_id == join.record.id)
                ).one()
                pending = total.matched < total.rows
                if not pending:
                    conn.execute(
                        update(monitor_sources)
                        .where(src.artifact_id == join.record.id)
                        .values(pending=False)
                    )
            if pending:
                # A second monitor joining the same segments fails here, and plans again.
                rows = [
                    {"feedback_id": join.record.id, "segment_id": seg, "matched": n}
                    for seg, n in join.joined
                ]
                if rows:
                    conn.execute(insert(monitor_label_joins), rows)
            else:
                conn.execute(
                    delete(monitor_label_joins).where(
                        monitor_label_joins.c.feedback_id == join.record.id
                    )
                )
            _apply(conn, join.updates)
    except SQLIntegrityError:
        raise Conflict(join.record.id) from None


def _apply(conn: Any, updates: Iterable[tuple[str, int, str, int]]) -> None:
    for seg_id, revision, digest, n in updates:
        # Compare-and-swap on the revision: on PostgreSQL a concurrent committed update
        # makes the WHERE fail on the row's new version; SQLite runs one writer at a time.
        done = conn.execute(
            update(monitor_segments)
            .where(monitor_segments.c.id == seg_id, monitor_segments.c.revision == revision)
            .values(
                labels_digest=digest,
                labelled_rows=n,
                revision=monitor_segments.c.revision + 1,
            )
        )
        if done.rowcount != 1:
            raise Conflict(seg_id)
