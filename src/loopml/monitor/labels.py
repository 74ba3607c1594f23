"""Joining late labels to the segments whose rows they label, touching only those.

Each new feedback file is read once and joined on (request_id, row) against the compact
score blobs of its deployment's segments (never the log files). Every segment that gains
labels gets a new labels blob and a new revision, which is what makes the windows holding
it recompute; other segments and windows are left alone. Labels that match no logged row
yet (the server writes its log every few seconds) keep their file ``pending``; it is joined
again against segments that arrive later. A repeated label for a row replaces the earlier.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock
from loopml.core.errors import StoreError
from loopml.monitor.logs import FEEDBACK_KIND, read_file
from loopml.monitor.reference import label_keys
from loopml.monitor.scores import frame_bytes
from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import artifacts, monitor_segments, monitor_sources
from loopml.store.workspace import Workspace

KEY = ["request_id", "row"]


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


def normalise(table: Any) -> pl.DataFrame:
    """(request_id, row, label as text, value as float or null), the last label per row."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    label = df["label"]
    numeric = label.dtype.is_numeric() or label.dtype == pl.Boolean
    return df.select(
        pl.col("request_id").cast(pl.String),
        pl.col("row").cast(pl.Int32),
        label_keys(label).alias("label"),
        (label.cast(pl.Float64) if numeric else pl.lit(None, pl.Float64)).alias("value"),
    ).unique(KEY, keep="last", maintain_order=True)


def ingest_labels(ws: Workspace, new_segments: list[str], blobs: Blobs) -> None:
    """Join new feedback files; join pending ones against ``new_segments``."""
    with ws.engine.connect() as conn:
        fresh = conn.execute(
            select(artifacts)
            .outerjoin(monitor_sources, monitor_sources.c.artifact_id == artifacts.c.id)
            .where(artifacts.c.kind == FEEDBACK_KIND, monitor_sources.c.artifact_id.is_(None))
            .order_by(artifacts.c.created_at)
        ).all()
        pending = (
            conn.execute(
                select(artifacts, monitor_sources.c.matched)
                .join(monitor_sources, monitor_sources.c.artifact_id == artifacts.c.id)
                .where(monitor_sources.c.pending.is_(True))
                .order_by(artifacts.c.created_at)
            ).all()
            if new_segments
            else []
        )
    for row in fresh:
        record = ArtifactRecord(**row._mapping)
        _join_file(ws, record, blobs, only=None, matched_before=None)
    for row in pending:
        m = dict(row._mapping)
        matched = int(m.pop("matched"))
        _join_file(ws, ArtifactRecord(**m), blobs, only=set(new_segments), matched_before=matched)


class Conflict(Exception):
    """A segment's labels changed between reading and writing them (another monitor)."""


JOIN_ATTEMPTS = 20


@dataclass(frozen=True)
class Join:
    """One feedback file joined against the segments as read: what to write."""

    record: ArtifactRecord
    deployment: str
    rows: int
    matched_before: int | None
    matched: int
    updates: tuple[tuple[str, int, str, int], ...]  # segment, revision read, labels blob, rows


def _join_file(
    ws: Workspace,
    record: ArtifactRecord,
    blobs: Blobs,
    *,
    only: set[str] | None,
    matched_before: int | None,
) -> None:
    """Join one file and write the result; when another monitor changed one of the same
    segments meanwhile (its revision moved), join again on what it wrote."""
    for _ in range(JOIN_ATTEMPTS):
        try:
            write_join(ws, plan_join(ws, record, blobs, only=only, matched_before=matched_before))
            return
        except Conflict:
            if matched_before is not None:
                matched_before = _matched(ws, record.id)
    raise StoreError(
        f"labels of {record.name or record.id} could not be joined: the segments they "
        f"label changed {JOIN_ATTEMPTS} times while joining; run the check again"
    )


def _matched(ws: Workspace, artifact_id: str) -> int:
    with ws.engine.connect() as conn:
        q = select(monitor_sources.c.matched).where(monitor_sources.c.artifact_id == artifact_id)
        return int(conn.execute(q).scalar_one())


def plan_join(
    ws: Workspace,
    record: ArtifactRecord,
    blobs: Blobs,
    *,
    only: set[str] | None,
    matched_before: int | None,
) -> Join:
    """Join a feedback file against its deployment's segments as they are now."""
    deployment = str((record.properties or {}).get("deployment") or "")
    labels = normalise(read_file(ws, record))
    q = select(
        monitor_segments.c.id,
        monitor_segments.c.scores_digest,
        monitor_segments.c.labels_digest,
        monitor_segments.c.revision,
    ).where(monitor_segments.c.deployment == deployment)
    with ws.engine.connect() as conn:
        segs = [s for s in conn.execute(q).all() if only is None or s.id in only]
    matched = 0
    updates: list[tuple[str, int, str, int]] = []
    for seg in segs:
        keys = blobs.read(seg.scores_digest, "monitor scores").select(KEY)
        hit = labels.join(keys, on=KEY, how="semi")
        if hit.height == 0:
            continue
        matched += hit.height
        if seg.labels_digest is not None:
            old = blobs.read(seg.labels_digest, "monitor labels")
            hit = pl.concat([old, hit], how="vertical_relaxed").unique(
                KEY, keep="last", maintain_order=True
            )
        blob = ws.artifacts.put_bytes(frame_bytes(hit))
        updates.append((seg.id, int(seg.revision), blob.digest, hit.height))
    return Join(record, deployment, labels.height, matched_before, matched, tuple(updates))


def write_join(ws: Workspace, join: Join) -> None:
    """Record the file as joined and swap each segment's labels, only where the segment
    is still at the revision the join read (else ``Conflict``, and nothing is written)."""
    total = join.matched if join.matched_before is None else join.matched_before + join.matched
    done = total >= join.rows
    now = clock.now()
    try:
        with ws.write_engine.begin() as conn:
            if join.matched_before is None:
                conn.execute(
                    insert(monitor_sources).values(
                        artifact_id=join.record.id,
                        kind="feedback",
                        deployment=join.deployment,
                        rows=join.rows,
                        matched=total,
                        pending=not done,
                        processed_at=now,
                    )
                )
            else:
                conn.execute(
                    update(monitor_sources)
                    .where(monitor_sources.c.artifact_id == join.record.id)
                    .values(matched=total, pending=not done, processed_at=now)
                )
            _apply(conn, join.updates)
    except SQLIntegrityError:
        return  # another monitor joined this file at the same time


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
