"""Tracking over one workspace: start, read and search runs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    any_,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from loopml.core import clock
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.core.ids import new_id
from loopml.store.metadata import tables as t
from loopml.store.metadata.tables import (
    environments,
    executions,
    experiments,
    latest_metrics,
    metric_chunks,
    runs,
)
from loopml.store.workspace import Workspace
from loopml.tracking import environment, search, validation
from loopml.tracking.active_run import RUNNING, ActiveRun
from loopml.tracking.metric_writer import MetricWriter
from loopml.tracking.records import MetricHistory, Run, RunList

DEFAULT_EXPERIMENT = "default"
MAX_SEARCH_LIMIT = 100_000


class Tracker:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.engine = workspace.engine
        self.write_engine = workspace.write_engine
        self.writer = MetricWriter(self.write_engine)

    def close(self) -> None:
        self.writer.close()

    # starting -----------------------------------------------------------------
    def start_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        capture_environment: bool = True,
        environment_of: str | None = None,
        cwd: str | None = None,
    ) -> ActiveRun:
        """Start a run. ``environment_of`` names a run whose git state and packages this
        one shares (a pipeline's steps share the pipeline run's) instead of capturing
        them again, which costs two git subprocesses."""
        validation.check_name(experiment, "experiment")
        run_id = new_id()
        run_name = validation.check_name(name, "run") if name is not None else f"run-{run_id[:8]}"
        # Validate everything before writing anything: a bad param must not leave a run.
        param_rows = {
            validation.check_name(k, "param"): validation.param_text(k, v)
            for k, v in (params or {}).items()
        }
        tag_rows = {
            validation.check_name(k, "tag"): validation.tag_text(k, v)
            for k, v in (tags or {}).items()
        }
        capture = capture_environment and environment_of is None
        env = environment.python_environment() if capture else None
        git = environment.git_state(cwd or os.getcwd()) if capture else None
        with self.write_engine.begin() as conn:
            exp_id = self._experiment_id(conn, experiment)
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
                known = conn.execute(
                    select(environments.c.digest).where(environments.c.digest == env.digest)
                ).first()
                if known is None:
                    conn.execute(
                        insert(environments).values(
                            digest=env.digest,
                            python_version=env.python_version,
                            platform=env.platform,
                            packages=env.packages,
                        )
                    )
            conn.execute(
                insert(executions).values(
                    id=run_id,
                    kind="run",
                    name=run_name,
                    status=RUNNING,
                    start_time=clock.now(),
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
                )
            )
            if param_rows:
                conn.execute(
                    insert(t.params),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in param_rows.items()],
                )
            if tag_rows:
                conn.execute(
                    insert(t.tags),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in tag_rows.items()],
                )
        return ActiveRun(self, run_id, experiment, run_name)

    def _experiment_id(self, conn: Any, name: str) -> int:
        find = select(experiments.c.id).where(experiments.c.name == name)
        found = conn.execute(find).first()
        if found is not None:
            return int(found[0])
        # Several processes may create the same experiment at once; on PostgreSQL nothing
        # serialises them, so the loser's insert must be a no-op, not a unique violation.
        insert_ = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert_(experiments)
            .values(name=name, created_at=clock.now())
            .on_conflict_do_nothing(index_elements=[experiments.c.name])
        )
        return int(conn.execute(find).scalar_one())

    def experiments(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(experiments.c.name).order_by(experiments.c.name)).scalars()
            )

    # reading ------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        if not isinstance(run_id, str) or not run_id:
            raise InvalidInputError(f"run id must be a non-empty string, got {run_id!r}")
        found = self._load(_base_query().where(executions.c.id == run_id))
        if not found:
            raise NotFoundError(f"no run with id {run_id!r}; `loopml runs ls` lists the runs")
        return found[0]

    def search_runs(
        self,
        experiment: str | Sequence[str] | None = None,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int = 1000,
    ) -> RunList:
        """Runs matching ``filter`` (see :mod:`loopml.tracking.search`), newest first by default."""
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 0 < limit <= MAX_SEARCH_LIMIT
        ):
            raise InvalidInputError(f"limit must be an integer from 1 to {MAX_SEARCH_LIMIT}")
        q = _base_query()
        if experiment is not None:
            names = [experiment] if isinstance(experiment, str) else list(experiment)
            for name in names:
                search.check_text(name, "the experiment name")
            q = q.where(experiments.c.name.in_(names))
        if filter is not None and filter.strip():
            q = q.where(search.compile_filter(filter))
        for i, key in enumerate(search.parse_order_by(order_by)):
            q = _order(q, key, i)
        q = q.order_by(executions.c.start_time.desc(), executions.c.id).limit(limit)
        return self._load(q)

    def _load(self, q: Select[Any]) -> RunList:
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
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
        # In _base_query's column order.
        for run_id, name, status, start, end, error, experiment, commit, dirty, env in rows:
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
                )
            )
        return found

    def environment(self, digest: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(environments).where(environments.c.digest == digest)).first()
        if row is None:
            raise NotFoundError(f"no environment {digest!r}")
        return dict(row._mapping)

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> MetricHistory:
        """A metric's series in step order; with ``max_points``, bucketed for a chart."""
        if max_points is not None and (
            isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2
        ):
            raise InvalidInputError("max_points must be an integer of at least 2")
        self.writer.flush()
        chunks = metric_chunks
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(chunks.c.steps, chunks.c.timestamps, chunks.c["values"])
                .where(chunks.c.run_id == run_id, chunks.c.key == key)
                .order_by(chunks.c.id)
            ).all()
        if not rows:
            self.get_run(run_id)  # raises NotFoundError for an unknown run
            raise NotFoundError(f"run {run_id} has no metric {key!r}")
        steps = np.concatenate([np.frombuffer(r[0], dtype="<i8") for r in rows])
        stamps = np.concatenate([np.frombuffer(r[1], dtype="<f8") for r in rows])
        values = np.concatenate([np.frombuffer(r[2], dtype="<f8") for r in rows])
        order = np.lexsort((stamps, steps))
        steps, stamps, values = steps[order], stamps[order], values[order]
        history = MetricHistory(run_id, key, steps, stamps, values, total_points=len(steps))
        if max_points is None or len(steps) <= max_points:
            return history
        return downsample(history, max_points)


def downsample(history: MetricHistory, max_points: int) -> MetricHistory:
    """Bucket a sorted series into at most ``max_points`` equal step ranges.

    Each bucket keeps its first step, last timestamp, mean value and the min/max envelope,
    so a spike survives that a plain mean would hide.
    """
    steps = history.steps
    lo, span = int(steps[0]), int(steps[-1]) - int(steps[0]) + 1
    buckets = (steps - lo).astype(np.float64) * max_points // span
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    counts = np.diff(np.r_[starts, len(steps)])
    values = history.values
    return MetricHistory(
        history.run_id,
        history.key,
        steps[starts],
        history.timestamps[np.r_[starts[1:], len(steps)] - 1],
        np.add.reduceat(values, starts) / counts,
        min=np.minimum.reduceat(values, starts),
        max=np.maximum.reduceat(values, starts),
        total_points=history.total_points,
    )


def _base_query() -> Select[Any]:
    return (
        select(
            executions.c.id,
            executions.c.name,
            executions.c.status,
            executions.c.start_time,
            executions.c.end_time,
            executions.c.error,
            experiments.c.name.label("experiment"),
            runs.c.git_commit,
            runs.c.git_dirty,
            runs.c.environment_digest,
        )
        .select_from(runs)
        .join(executions, executions.c.id == runs.c.id)
        .join(experiments, experiments.c.id == runs.c.experiment_id)
    )


def _among(column: Any, ids: list[str], dialect: str) -> ColumnElement[bool]:
    """``column IN ids`` with the ids bound as one parameter: expanding hundreds of
    parameters costs SQLAlchemy more than SQLite takes to run the query, and SQLite caps
    the number of parameters in one statement."""
    if dialect == "sqlite":
        listed = func.json_each(bindparam("ids", json.dumps(ids))).table_valued("value")
        return column.in_(select(listed.c.value))
    # PostgreSQL, the only other backend make_engine accepts.
    return column == any_(bindparam("ids", ids, type_=postgresql.ARRAY(String)))


def _order(q: Select[Any], key: search.OrderKey, i: int) -> Select[Any]:
    f = key.field
    if f.entity == "attribute":
        col: Any = search.attribute_column(f.key)
    else:
        table = {"metric": latest_metrics, "param": t.params, "tag": t.tags}[f.entity].alias(
            f"o{i}"
        )
        q = q.outerjoin(table, and_(table.c.run_id == executions.c.id, table.c.key == f.key))
        col = table.c.value
    return q.order_by(col.desc().nulls_last() if key.descending else col.asc().nulls_last())
