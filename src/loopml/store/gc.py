"""Garbage collection: retention, prediction-log compaction, and unreferenced blobs.

What may go, in order:

1. **Compaction.** The prediction log writes one small Parquet file per flush per hour per
   model version. The files of one (deployment, model, version, hour) are rewritten as one
   file with the same schema and format (``loopml.prediction_log/1``), once the hour is
   over by more than the grace period. The new artifact row replaces the old ones in one
   transaction, so a reader sees either the old files or the new one, never both.
2. **Retention.** Prediction logs and feedback older than their retention, and pipeline
   cache entries unused (neither written nor hit) for longer than theirs.
3. **Blobs nothing references.** Every digest held by any table (every digest column and
   every digest inside a JSON column, so a table added later is covered without a change
   here), and every file of a referenced tree, is kept. Of the rest, a blob is removed
   only when it is older than the grace period: a writer stores its blobs before the rows
   that reference them, and storing a blob that already exists renews its modification
   time (``ArtifactStore._reuse``), so a blob being written or reused is never removed.

Artifact rows that the lineage graph or any other row points at (a run's output, a
dataset or model version, a pipeline cache entry) are never removed by retention.
"""

from __future__ import annotations

import calendar
import io
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import JSON, Connection, String, delete, func, insert, select

from loopml.core import clock, hashing
from loopml.core.errors import IntegrityError, InvalidInputError, LoopmlError
from loopml.core.ids import new_id
from loopml.core.progress import Progress, silent
from loopml.store.metadata.tables import (
    artifacts,
    events,
    executions,
    metadata,
    pipeline_cache,
    pipeline_steps,
)
from loopml.store.workspace import Workspace

# What the serving layer records (serving/prediction_log.py, feedback.py; a test checks
# these against it). Each log file is the output of its own "prediction_logging"
# execution, whose input is the model version: that edge records the file's provenance
# and moves with it (compaction) or goes with it (retention); any other edge keeps it.
PREDICTION_LOG_KIND = "prediction_log"
PREDICTION_LOG_FORMATS = ("loopml.prediction_log/1", "loopml.prediction_log/2")
LOGGING_EXECUTION = "prediction_logging"
FEEDBACK_KIND = "prediction_feedback"
DAY = 86_400.0
_TREE_PREFIX = b'{"files":'  # manifests are written with sorted keys
_MAX_TREE_BYTES = 64 << 20


@dataclass(frozen=True)
class Retention:
    """How long things are kept; ``None`` keeps them forever."""

    prediction_logs_days: float | None = 30.0
    feedback_days: float | None = 90.0
    cache_unused_days: float | None = 30.0
    grace_seconds: float = 3600.0  # blobs and log hours younger than this are left alone
    compact: bool = True

    def __post_init__(self) -> None:
        for name in ("prediction_logs_days", "feedback_days", "cache_unused_days"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise InvalidInputError(f"{name} must be a number of days >= 0, not {value!r}")
        if not isinstance(self.grace_seconds, int | float) or self.grace_seconds < 60:
            raise InvalidInputError(
                "the grace period must be at least 60 seconds: blobs being written are "
                "younger than it"
            )


@dataclass(frozen=True)
class GcLine:
    what: str
    count: int
    bytes: int = 0
    note: str = ""


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    lines: tuple[GcLine, ...]
    problems: tuple[str, ...] = ()

    @property
    def freed_bytes(self) -> int:
        return sum(line.bytes for line in self.lines)

    def line(self, what: str) -> GcLine:
        return next(line for line in self.lines if line.what == what)


@dataclass
class _Run:
    ws: Workspace
    retention: Retention
    dry_run: bool
    now: float
    progress: Progress
    lines: list[GcLine] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dropped_artifacts: set[str] = field(default_factory=set)  # rows removed (or would be)


def collect(
    ws: Workspace,
    retention: Retention | None = None,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    now: float | None = None,
) -> GcReport:
    """Apply ``retention``, compact prediction logs and remove unreferenced blobs; with
    ``dry_run`` only report what would be done."""
    run = _Run(
        ws,
        retention or Retention(),
        dry_run,
        clock.now() if now is None else now,
        progress or silent,
    )
    if run.retention.compact:
        _compact_logs(run)
    _expire(run, PREDICTION_LOG_KIND, run.retention.prediction_logs_days, "prediction logs")
    _expire(run, FEEDBACK_KIND, run.retention.feedback_days, "feedback")
    _expire_cache(run)
    _sweep_blobs(run)
    return GcReport(dry_run, tuple(run.lines), tuple(run.problems))


# --- which rows still need an artifact -----------------------------------------------------


def _pinned_artifact_ids(conn: Connection) -> set[str]:
    """Artifact ids some row points at through a foreign key (lineage events, dataset and
    model versions, pipeline cache entries and steps, and any table added later), except
    a log file's edge from its own logging execution."""
    pinned: set[str] = set()
    for table in metadata.sorted_tables:
        for column in table.columns:
            if any(fk.column is artifacts.c.id for fk in column.foreign_keys):
                q = select(column).where(column.is_not(None)).distinct()
                if table is events:
                    own = select(executions.c.id).where(executions.c.kind == LOGGING_EXECUTION)
                    q = q.where(~((events.c.type == "output") & events.c.execution_id.in_(own)))
                pinned.update(str(r[0]) for r in conn.execute(q))
    return pinned


def _logging_executions(conn: Connection, artifact_ids: list[str]) -> list[str]:
    """The logging executions that produced these log files."""
    return [
        r[0]
        for r in conn.execute(
            select(events.c.execution_id)
            .join(executions, executions.c.id == events.c.execution_id)
            .where(
                events.c.artifact_id.in_(artifact_ids),
                events.c.type == "output",
                executions.c.kind == LOGGING_EXECUTION,
            )
            .distinct()
        )
    ]


def _delete_artifacts(conn: Connection, ids: list[str]) -> int:
    """Delete artifact rows with their own logging executions; the rows deleted."""
    removed = 0
    for chunk in _chunks(ids, 500):
        own = _logging_executions(conn, chunk)
        if own:
            conn.execute(delete(events).where(events.c.execution_id.in_(own)))
            conn.execute(delete(executions).where(executions.c.id.in_(own)))
        removed += conn.execute(delete(artifacts).where(artifacts.c.id.in_(chunk))).rowcount
    return removed


# --- compaction ----------------------------------------------------------------------------


def _hour_end(partition: str) -> float | None:
    try:
        return calendar.timegm(time.strptime(partition, "%Y-%m-%dT%H")) + 3600.0
    except (TypeError, ValueError):
        return None


def _compact_logs(run: _Run) -> None:
    ws = run.ws
    with ws.engine.connect() as conn:
        rows = conn.execute(select(artifacts).where(artifacts.c.kind == PREDICTION_LOG_KIND)).all()
        pinned = _pinned_artifact_ids(conn)
    # One group per deployment, model version, hour and file format.
    groups: dict[tuple[str, str, int, str], list[Any]] = defaultdict(list)
    for r in rows:
        p = r.properties or {}
        end = _hour_end(str(p.get("partition")))
        if r.id in pinned or end is None or end > run.now - run.retention.grace_seconds:
            continue
        if p.get("format") not in PREDICTION_LOG_FORMATS:
            continue
        key = (str(p.get("deployment")), str(p.get("model")), int(p.get("version") or 0))
        groups[(*key, f"{p['partition']} {p['format']}")].append(r)
    todo = [g for g in groups.values() if len(g) > 1]
    files = hours = freed = 0
    for i, group in enumerate(todo):
        run.progress("compacting prediction logs", i, len(todo))
        try:
            done = _compact_group(run, sorted(group, key=lambda r: (r.created_at, r.id)))
        except LoopmlError as exc:
            run.problems.append(f"prediction log {group[0].name}: not compacted: {exc}")
            continue
        if done is not None:
            files += len(group)
            hours += 1
            freed += done
    run.progress("compacting prediction logs", len(todo), len(todo))
    run.lines.append(
        GcLine(
            "prediction log files compacted",
            files,
            freed,
            f"into {hours} hourly file(s)" if files else "",
        )
    )


def _compact_group(run: _Run, group: list[Any]) -> int | None:
    """Rewrite the group's files as one; the bytes saved, or None if another writer
    changed the group meanwhile."""
    ws = run.ws
    old_bytes = sum(int(r.size) for r in group)
    tables = []
    for r in group:
        data = ws.artifacts.get_bytes(r.digest, what=f"prediction log {r.name}")
        tables.append(pq.read_table(io.BytesIO(data)))
    try:
        # A column all null in one flush is typed null there; permissive takes the type
        # from the other files, as the log reader does.
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as exc:
        run.problems.append(
            f"prediction log {group[0].name}: files of one hour do not combine ({exc}); "
            "left as they are"
        )
        return None
    if run.dry_run:
        run.dropped_artifacts.update(r.id for r in group)
        return old_bytes  # an estimate: the new file is not written
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    blob = ws.artifacts.put_bytes(sink.getvalue())
    props = dict(group[0].properties or {})
    props.update(
        start=min(float((r.properties or {}).get("start", 0.0)) for r in group),
        end=max(float((r.properties or {}).get("end", 0.0)) for r in group),
        rows=table.num_rows,
        requests=sum(int((r.properties or {}).get("requests") or 0) for r in group),
        compacted_from=len(group),
    )
    ids = [r.id for r in group]
    try:
        with ws.write_engine.begin() as conn:
            models = _logged_models(conn, ids)
            if _delete_artifacts(conn, ids) != len(ids):
                raise _Changed  # another gc compacted (part of) this hour first: roll back
            # Dated like the oldest file it replaces: readers order logs by creation
            # and retention ages them by it.
            new = new_id()
            conn.execute(
                insert(artifacts).values(
                    id=new,
                    digest=blob.digest,
                    kind=PREDICTION_LOG_KIND,
                    name=group[0].name,
                    size=blob.size,
                    created_at=group[0].created_at,
                    properties=props,
                )
            )
            if models:
                execution = ws.lineage.add_execution(
                    LOGGING_EXECUTION, name=group[0].name, status="finished", conn=conn
                )
                for model in models:
                    ws.lineage.link(execution.id, model, "input", "model", conn=conn)
                ws.lineage.link(execution.id, new, "output", "prediction_log", conn=conn)
    except _Changed:
        return None
    run.dropped_artifacts.update(ids)
    return max(old_bytes - blob.size, 0)


class _Changed(Exception):
    pass


def _logged_models(conn: Connection, log_ids: list[str]) -> list[str]:
    """The model artifacts the logging executions of these files name as input."""
    own = _logging_executions(conn, log_ids)
    if not own:
        return []
    rows = conn.execute(
        select(events.c.artifact_id)
        .where(events.c.execution_id.in_(own), events.c.type == "input")
        .distinct()
    )
    return sorted(str(r[0]) for r in rows)


# --- retention -----------------------------------------------------------------------------


def _expire(run: _Run, kind: str, days: float | None, label: str) -> None:
    if days is None:
        run.lines.append(GcLine(f"{label} expired", 0, 0, "kept forever"))
        return
    cutoff = run.now - days * DAY
    ws = run.ws
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(artifacts.c.id, artifacts.c.size).where(
                artifacts.c.kind == kind, artifacts.c.created_at < cutoff
            )
        ).all()
        pinned = _pinned_artifact_ids(conn)
    doomed = [r for r in rows if r.id not in pinned and r.id not in run.dropped_artifacts]
    size = sum(int(r.size) for r in doomed)
    if doomed and not run.dry_run:
        ids = [r.id for r in doomed]
        with ws.write_engine.begin() as conn:
            _delete_artifacts(conn, ids)
    run.dropped_artifacts.update(r.id for r in doomed)
    run.lines.append(GcLine(f"{label} expired", len(doomed), size, f"older than {days:g} days"))


def _expire_cache(run: _Run) -> None:
    days = run.retention.cache_unused_days
    if days is None:
        run.lines.append(GcLine("pipeline cache entries expired", 0, 0, "kept forever"))
        return
    cutoff = run.now - days * DAY
    last_hit = (
        select(pipeline_steps.c.cache_key, func.max(pipeline_steps.c.start_time).label("t"))
        .where(pipeline_steps.c.cache_key.is_not(None))
        .group_by(pipeline_steps.c.cache_key)
        .subquery()
    )
    used = func.coalesce(last_hit.c.t, pipeline_cache.c.created_at)
    with run.ws.engine.connect() as conn:
        keys = [
            r.key
            for r in conn.execute(
                select(pipeline_cache.c.key)
                .outerjoin(last_hit, last_hit.c.cache_key == pipeline_cache.c.key)
                .where(pipeline_cache.c.created_at < cutoff, used < cutoff)
            )
        ]
    if keys and not run.dry_run:
        with run.ws.write_engine.begin() as conn:
            for chunk in _chunks(keys, 500):
                conn.execute(delete(pipeline_cache).where(pipeline_cache.c.key.in_(chunk)))
    run.lines.append(
        GcLine(
            "pipeline cache entries expired",
            len(keys),
            0,
            f"unused for {days:g} days; their outputs stay while a run links them",
        )
    )


# --- blobs ---------------------------------------------------------------------------------


def _sweep_blobs(run: _Run) -> None:
    ws = run.ws
    keep_after = run.now - run.retention.grace_seconds
    # Listed before the references are read: a blob stored after this point is not a
    # candidate at all, and one stored before it is either referenced by a row committed
    # before the read below or younger than the grace period.
    candidates = [
        (digest, size)
        for digest, size, modified in ws.artifacts.iter_blobs()
        if modified is not None and modified < keep_after
    ]
    try:
        referenced = referenced_digests(ws, exclude_artifacts=run.dropped_artifacts)
    except IntegrityError as exc:
        run.problems.append(f"no blob removed: a referenced tree cannot be read: {exc}")
        run.lines.append(GcLine("unreferenced blobs removed", 0, 0, "skipped"))
        return
    doomed = [(d, s) for d, s in candidates if d not in referenced]
    removed = size = 0
    for i, (digest, blob_size) in enumerate(doomed):
        run.progress("removing unreferenced blobs", i, len(doomed))
        if run.dry_run:
            removed, size = removed + 1, size + blob_size
            continue
        # Looked at again as it is removed: a writer may have reused it meanwhile.
        if ws.artifacts.remove_unused(digest, keep_after):
            removed, size = removed + 1, size + blob_size
    run.progress("removing unreferenced blobs", len(doomed), len(doomed))
    stale = ws.artifacts.stale_temp_files(keep_after)
    for path in stale if not run.dry_run else ():
        ws.artifacts.fs.rm_file(path)
    run.lines.append(GcLine("unreferenced blobs removed", removed, size))
    if stale:
        run.lines.append(GcLine("interrupted writes cleaned", len(stale), 0))


def referenced_digests(ws: Workspace, *, exclude_artifacts: Iterable[str] = ()) -> set[str]:
    """Every digest some row holds (digest columns and digests inside JSON values, of
    every table), with the files of every referenced tree; rows of ``artifacts`` whose
    id is in ``exclude_artifacts`` do not count."""
    excluded = set(exclude_artifacts)
    found: set[str] = set()
    with ws.engine.connect() as conn:
        for table in metadata.sorted_tables:
            digest_cols = [
                c for c in table.columns if isinstance(c.type, String) and c.type.length == 67
            ]
            json_cols = [c for c in table.columns if isinstance(c.type, JSON)]
            if not digest_cols and not json_cols:
                continue
            id_col = [table.c.id] if table is artifacts else []
            for row in conn.execute(select(*id_col, *digest_cols, *json_cols)):
                values = list(row)
                if table is artifacts:
                    if values[0] in excluded:
                        continue
                    values = values[1:]
                for value in values:
                    found.update(_digests_in(value))
    return _with_tree_files(ws, found)


def _digests_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if hashing.is_digest(value):
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _digests_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _digests_in(v)


def _with_tree_files(ws: Workspace, digests: set[str]) -> set[str]:
    out = set(digests)
    todo = list(digests)
    while todo:
        digest = todo.pop()
        if not _is_tree(ws, digest):
            continue
        for entry in ws.artifacts.get_tree(digest, what=f"tree {digest}").entries:
            if entry.digest not in out:
                out.add(entry.digest)
                todo.append(entry.digest)
    return out


def _is_tree(ws: Workspace, digest: str) -> bool:
    try:
        with ws.artifacts.fs.open(ws.artifacts.path_of(digest), "rb") as f:
            head = f.read(len(_TREE_PREFIX))
            if head != _TREE_PREFIX:
                return False
            f.seek(0, 2)
            if f.tell() > _MAX_TREE_BYTES:
                return False
    except FileNotFoundError:
        return False
    return True


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
