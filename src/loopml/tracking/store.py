"""Every SQL statement tracking runs: creating, logging into, ending and reading runs.

:class:`Tracker` validates and orchestrates, :class:`ActiveRun` logs, the metric writer
batches; all of them reach the database through one :class:`RunStore`.

A run's status as read is its stored status, except that a ``running`` run whose
heartbeat is older than the reader's staleness limit reads as ``killed``: its process
died or never called ``end()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from loopml.core import clock
from loopml.core.errors import ConflictError, NotFoundError
from loopml.store.metadata import nowait
from loopml.store.metadata import tables as t
from loopml.store.metadata.nowait import NoWait, WouldWait
from loopml.store.metadata.tables import (
    environments,
    executions,
    experiments,
    latest_metrics,
    metric_chunks,
    runs,
)
from loopml.store.metadata.upsert import upsert
from loopml.tracking.environment import Environment, GitState
from loopml.tracking.records import Run, RunList

FINISHED = "finished"
FAILED = "failed"
RUNNING = "running"
KILLED = "killed"
END_STATUSES = (FINISHED, FAILED)
# A running run whose process has not beaten for this long reads as killed. The metric
# writer beats every 30 s by default, so this tolerates several missed beats.
STALE_AFTER_S = 300.0

# Bound at each read to "now minus the staleness limit".
STALE_BEFORE = bindparam("stale_before", type_=Float)


def read_status() -> ColumnElement[str]:
    """The status a reader sees: ``killed`` for a running run whose heartbeat is stale."""
    stale = and_(
        executions.c.status == RUNNING,
        func.coalesce(runs.c.heartbeat_at, executions.c.start_time) < STALE_BEFORE,
    )
    return case((stale, KILLED), else_=executions.c.status)


class RunStore:
    def __init__(
        self,
        engine: Engine,
        write_engine: Engine,
        *,
        stale_after: float = STALE_AFTER_S,
        nowait: NoWait | None = None,
    ) -> None:
        self.engine = engine
        self.write_engine = write_engine
        self.nowait = nowait
        self.stale_after = stale_after
        self._latest_stmt: Any = None

    # writing --------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        *,
        experiment: str,
        name: str,
        params: Mapping[str, str],
        tags: Mapping[str, str],
        env: Environment | None,
        git: GitState | None,
        environment_of: str | None,
        created_by: str | None = None,
    ) -> None:
        with self.write_engine.begin() as conn:
            exp_id = _experiment_id(conn, experiment)
            inherited = None
            if environment_of is not None:
                inherited = conn.execute(
                    select(runs.c.git_commit, runs.c.git_dirty, runs.c.environment_digest).where(
                        runs.c.id == environment_of
                    )
                ).first()
                if inherited is None:
                    raise NotFoundError(f"no run {environment_of!r} to take the environment of")
            if env is not None:
                conn.execute(
                    upsert(conn, environments, keys=["digest"]).values(
                        digest=env.digest,
                        python_version=env.python_version,
                        platform=env.platform,
                        packages=env.packages,
                    )
                )
            now = clock.now()
            conn.execute(
                insert(executions).values(
                    id=run_id,
                    kind="run",
                    name=name,
                    status=RUNNING,
                    start_time=now,
                    end_time=None,
                    properties={},
                )
            )
            conn.execute(
                insert(runs).values(
                    id=run_id,
                    experiment_id=exp_id,
                    git_commit=inherited.git_commit if inherited else git.commit if git else None,
                    git_dirty=inherited.git_dirty if inherited else git.dirty if git else None,
                    environment_digest=(
                        inherited.environment_digest if inherited else env.digest if env else None
                    ),
                    heartbeat_at=now,
                    created_by=created_by,
                )
            )
            if params:
                conn.execute(
                    insert(t.params),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in params.items()],
                )
            if tags:
                conn.execute(
                    insert(t.tags),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()],
                )

    def add_params(self, run_id: str, rows: Mapping[str, str]) -> None:
        """Params are write-once: a different value for a logged key is refused."""
        with self.write_engine.begin() as conn:
            existing = dict(
                conn.execute(
                    select(t.params.c.key, t.params.c.value).where(
                        t.params.c.run_id == run_id, t.params.c.key.in_(list(rows))
                    )
                ).all()
            )
            for key, old in existing.items():
                if old != rows[key]:
                    raise ConflictError(
                        f"param {key!r} of run {run_id} is already {old!r}; params cannot "
                        f"change within a run (tried {rows[key]!r}). Use a tag or a new run"
                    )
            new = [
                {"run_id": run_id, "key": k, "value": v}
                for k, v in rows.items()
                if k not in existing
            ]
            if new:
                conn.execute(t.params.insert(), new)

    def set_tags(self, run_id: str, rows: Mapping[str, str]) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(
                upsert(conn, t.tags, keys=["run_id", "key"], update=["value"]),
                [{"run_id": run_id, "key": k, "value": v} for k, v in rows.items()],
            )

    def end_run(self, run_id: str, status: str, error: str | None) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(
                update(executions)
                .where(executions.c.id == run_id)
                .values(status=status, end_time=clock.now(), error=error)
            )

    def beat(self, run_ids: Sequence[str]) -> None:
        """Record that the process recording ``run_ids`` is alive."""
        if not run_ids:
            return
        with self.write_engine.begin() as conn:
            conn.execute(
                update(runs).where(runs.c.id.in_(list(run_ids))).values(heartbeat_at=clock.now())
            )

    def write_metrics(self, chunks: list[dict[str, Any]], latest: list[dict[str, Any]]) -> None:
        """One batch: packed chunks, and each series' latest point kept current."""
        with self.write_engine.begin() as conn:
            self._write_metrics(conn, chunks, latest)

    def write_to_running(
        self,
        run_id: str,
        chunks: list[dict[str, Any]],
        latest: list[dict[str, Any]],
        *,
        beat_after: float,
        wait: bool = True,
    ) -> None:
        """Write points to ``run_id`` in one transaction with the check that it takes
        writes (not ended; running, or read as killed for a stale heartbeat, which a write
        revives); beat for it unless it beat within ``beat_after`` seconds. With
        ``wait=False`` it raises ``WouldWait`` rather than wait for the database."""
        with self._write_transaction(wait) as conn:
            row = conn.execute(_WRITE_CHECK, {"run_id": run_id}).first()
            if row is None:
                raise NotFoundError(f"no run with id {run_id!r}; `loopml runs ls` lists the runs")
            if row.status not in (RUNNING, KILLED) or row.end_time is not None:
                raise ConflictError(
                    f"run {run_id} is {row.status}; only a running run takes writes"
                )
            now = clock.now()
            if row.heartbeat_at is None or now - row.heartbeat_at >= beat_after:
                conn.execute(_BEAT, {"run_id": run_id, "now": now})
            if chunks:
                self._write_metrics(conn, chunks, latest)

    def _write_transaction(self, wait: bool) -> Any:
        if wait:
            return self.write_engine.begin()
        if self.nowait is None:
            raise WouldWait
        return self.nowait.writing()

    def _write_metrics(
        self,
        conn: Connection | nowait.Connection,
        chunks: list[dict[str, Any]],
        latest: list[dict[str, Any]],
    ) -> None:
        conn.execute(_INSERT_CHUNKS, chunks)
        conn.execute(self._latest_upsert(conn), latest)

    def _latest_upsert(self, conn: Connection | nowait.Connection) -> Any:
        # Built once: making an upsert statement costs more than running it on one row.
        if self._latest_stmt is None:
            self._latest_stmt = upsert(
                conn,
                latest_metrics,
                keys=["run_id", "key"],
                update=["step", "timestamp", "value"],
                where=lambda new, cur: (
                    (new.step > cur.step)
                    | ((new.step == cur.step) & (new.timestamp >= cur.timestamp))
                ),
            )
        return self._latest_stmt

    # reading --------------------------------------------------------------------
    def experiments(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(experiments.c.name).order_by(experiments.c.name)).scalars()
            )

    def head(self, run_id: str) -> Any:
        """A run's name, experiment, status as read, end time and last heartbeat, in one
        query (no params, tags or metrics): what a write to it needs to know. None if
        there is no such run."""
        with self.engine.connect() as conn:
            return conn.execute(_HEAD, {**self._binds(), "run_id": run_id}).first()

    def code_version(self, run_id: str) -> str | None:
        """The run's git commit, ``+dirty`` when the checkout had changes; None outside git."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs.c.git_commit, runs.c.git_dirty).where(runs.c.id == run_id)
            ).first()
        if row is None:
            raise NotFoundError(f"no run with id {run_id!r}; `loopml runs ls` lists the runs")
        if row.git_commit is None:
            return None
        return f"{row.git_commit}{'+dirty' if row.git_dirty else ''}"

    def environment(self, digest: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(environments).where(environments.c.digest == digest)).first()
        if row is None:
            raise NotFoundError(f"no environment {digest!r}")
        return dict(row._mapping)

    def metric_chunks(self, run_id: str, key: str) -> list[Any]:
        chunks = metric_chunks
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(chunks.c.steps, chunks.c.timestamps, chunks.c["values"])
                    .where(chunks.c.run_id == run_id, chunks.c.key == key)
                    .order_by(chunks.c.id)
                ).all()
            )

    def _binds(self) -> dict[str, float]:
        # A running run whose heartbeat is older than this reads as killed (read_status).
        return {"stale_before": clock.now() - self.stale_after}

    def count(self, q: Select[Any]) -> int:
        """The number ``q`` (a ``SELECT count(*)`` over runs, any filter) returns."""
        with self.engine.connect() as conn:
            return int(conn.execute(q, self._binds()).scalar_one())

    def load(self, q: Select[Any]) -> RunList:
        """The runs ``q`` (built on :func:`base_query`) selects, with params, tags, metrics."""
        with self.engine.connect() as conn:
            rows = conn.execute(q, self._binds()).all()
            if not rows:
                return RunList()
            ids = [r[0] for r in rows]
            extras: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
                run_id: ({}, {}, {}) for run_id in ids
            }
            # By id rather than by re-running the filter as a subquery per table, which
            # costs more.
            for slot, table in enumerate((t.params, t.tags, latest_metrics)):
                for run_id, key, value in conn.execute(
                    select(table.c.run_id, table.c.key, table.c.value).where(
                        _among(table.c.run_id, ids, conn.dialect.name)
                    )
                ).all():
                    extras[run_id][slot][key] = value
        found = RunList()
        # In base_query's column order.
        for run_id, name, status, start, end, error, experiment, commit, dirty, env, who in rows:
            run_params, run_tags, run_metrics = extras[run_id]
            found.append(
                Run(
                    id=run_id,
                    experiment=experiment,
                    name=name,
                    status=status,
                    start_time=start,
                    end_time=end,
                    params=run_params,
                    metrics=run_metrics,
                    tags=run_tags,
                    git_commit=commit,
                    git_dirty=dirty,
                    environment_digest=env,
                    error=error,
                    created_by=who,
                )
            )
        return found


# Built once (its compiled form is then reused without recomputing a cache key): what a
# write to a run needs to know of it.
_WRITE_CHECK = (
    select(executions.c.status, executions.c.end_time, runs.c.heartbeat_at)
    .select_from(runs)
    .join(executions, executions.c.id == runs.c.id)
    .where(runs.c.id == bindparam("run_id"))
)


_INSERT_CHUNKS = metric_chunks.insert()
_BEAT = update(runs).where(runs.c.id == bindparam("run_id")).values(heartbeat_at=bindparam("now"))


_HEAD = (
    select(
        executions.c.id,
        executions.c.name,
        read_status().label("status"),
        executions.c.end_time,
        experiments.c.name.label("experiment"),
        runs.c.heartbeat_at,
    )
    .select_from(runs)
    .join(executions, executions.c.id == runs.c.id)
    .join(experiments, experiments.c.id == runs.c.experiment_id)
    .where(executions.c.id == bindparam("run_id"))
)


def base_query() -> Select[Any]:
    """Every run with its experiment's name; add filters, order and limits (a Select is
    immutable: each addition makes a new one)."""
    return _BASE


_BASE = (
    select(
        executions.c.id,
        executions.c.name,
        read_status().label("status"),
        executions.c.start_time,
        executions.c.end_time,
        executions.c.error,
        experiments.c.name.label("experiment"),
        runs.c.git_commit,
        runs.c.git_dirty,
        runs.c.environment_digest,
        runs.c.created_by,
    )
    .select_from(runs)
    .join(executions, executions.c.id == runs.c.id)
    .join(experiments, experiments.c.id == runs.c.experiment_id)
)


def count_query() -> Select[Any]:
    """``SELECT count(*)`` over the rows :func:`base_query` selects; add the same filters."""
    return (
        select(func.count())
        .select_from(runs)
        .join(executions, executions.c.id == runs.c.id)
        .join(experiments, experiments.c.id == runs.c.experiment_id)
    )


def order(
    q: Select[Any], entity: str, key: str, descending: bool, i: int, column: Any
) -> Select[Any]:
    """Sort by a field; ``column`` is the attribute's column when ``entity`` is one."""
    if entity != "attribute":
        table = {"metric": latest_metrics, "param": t.params, "tag": t.tags}[entity].alias(f"o{i}")
        q = q.outerjoin(table, and_(table.c.run_id == executions.c.id, table.c.key == key))
        column = table.c.value
    return q.order_by(column.desc().nulls_last() if descending else column.asc().nulls_last())


def _experiment_id(conn: Any, name: str) -> int:
    find = select(experiments.c.id).where(experiments.c.name == name)
    found = conn.execute(find).first()
    if found is not None:
        return int(found[0])
    # Several processes may create the same experiment at once; on PostgreSQL nothing
    # serialises them, so the loser's insert must be a no-op, not a unique violation.
    conn.execute(upsert(conn, experiments, keys=["name"]).values(name=name, created_at=clock.now()))
    return int(conn.execute(find).scalar_one())


def _among(column: Any, ids: list[str], dialect: str) -> ColumnElement[bool]:
    """``column IN ids`` with the ids bound as one parameter: expanding hundreds of
    parameters costs SQLAlchemy more than SQLite takes to run the query, and SQLite caps
    the number of parameters in one statement."""
    if dialect == "sqlite":
        listed = func.json_each(bindparam("ids", json.dumps(ids))).table_valued("value")
        return column.in_(select(listed.c.value))
    # PostgreSQL, the only other backend make_engine accepts.
    return column == any_(bindparam("ids", ids, type_=postgresql.ARRAY(String)))
