"""Tracking over one workspace: start, read and search runs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Select

from loopml.core import clock
from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.core.ids import new_id
from loopml.store.metadata.tables import executions, experiments
from loopml.store.workspace import Workspace
from loopml.tracking import environment, search, validation
from loopml.tracking.active_run import ActiveRun
from loopml.tracking.metric_writer import (
    HEARTBEAT_INTERVAL_S,
    MetricWriter,
    Point,
    StoreSink,
    packed,
)
from loopml.tracking.records import MetricHistory, Run, RunList, RunPage
from loopml.tracking.store import (
    KILLED,
    RUNNING,
    STALE_AFTER_S,
    RunStore,
    base_query,
    count_query,
    order,
)
from loopml.tracking.system_metrics import check_interval

DEFAULT_EXPERIMENT = "default"
# attach skips the heartbeat write when the run beat this recently; far below any staleness
# limit, so a run written to stays alive.
ATTACH_BEAT_S = 5.0
# A page is what a person or a paging client reads at once; larger answers come in pages.
MAX_PAGE = 1000


class Tracker:
    def __init__(
        self,
        workspace: Workspace,
        *,
        stale_after: float = STALE_AFTER_S,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        """``stale_after``: seconds without a heartbeat after which a running run reads as
        killed; ``heartbeat_interval``: how often this process beats for its open runs."""
        if not 0 < heartbeat_interval < stale_after:
            raise InvalidInputError(
                "heartbeat_interval and stale_after are seconds, 0 < heartbeat_interval < "
                "stale_after"
            )
        self.workspace = workspace
        self.store = RunStore(
            workspace.engine,
            workspace.write_engine,
            stale_after=stale_after,
            nowait=workspace.nowait,
        )
        self.writer = MetricWriter(StoreSink(self.store), heartbeat_interval=heartbeat_interval)

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
        created_by: str | None = None,
        system_metrics_interval: float | None = None,
        environment_info: environment.Environment | None = None,
        git: environment.GitState | None = None,
    ) -> ActiveRun:
        """Start a run. ``environment_of`` names a run whose git state and packages this
        one shares (a pipeline's steps share the pipeline run's) instead of capturing
        them again, which costs two git subprocesses. ``created_by`` says who started it
        (the workspace's actor by default). With ``system_metrics_interval`` (seconds) the
        run samples ``system/...`` metrics that often until it ends. ``environment_info``
        and ``git`` are what a client of the server captured on its own machine, recorded
        as given."""
        validation.check_name(experiment, "experiment")
        if system_metrics_interval is not None:
            system_metrics_interval = check_interval(system_metrics_interval)
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
        self.store.create_run(
            run_id,
            experiment=experiment,
            name=run_name,
            params=param_rows,
            tags=tag_rows,
            env=environment_info or (environment.python_environment() if capture else None),
            git=git or (environment.git_state(cwd or os.getcwd()) if capture else None),
            environment_of=environment_of,
            created_by=self.workspace.actor if created_by is None else created_by,
        )
        run = ActiveRun(self.store, self.writer, run_id, experiment, run_name, self.workspace)
        if system_metrics_interval is not None:
            run.start_system_metrics(system_metrics_interval)
        return run

    def attach(self, run_id: str) -> ActiveRun:
        """Write to a run started elsewhere (another process, a client of the server).

        Only a running run takes writes; metrics go through this tracker's writer. Each
        attach is a sign of life of the writer elsewhere: it beats for the run, unless it
        beat within the last ``ATTACH_BEAT_S`` (the server attaches once per request, and a
        write transaction per logged metric would cost more than the metric)."""
        if not isinstance(run_id, str) or not run_id:
            raise InvalidInputError(f"run id must be a non-empty string, got {run_id!r}")
        run = self.store.head(run_id)
        if run is None:
            raise NotFoundError(f"no run with id {run_id!r}; `loopml runs ls` lists the runs")
        # A run read as killed for a stale heartbeat is still running as stored (no end
        # time) and a write brings it back to life; one that was ended as killed is over.
        if run.status not in (RUNNING, KILLED) or run.end_time is not None:
            raise ConflictError(f"run {run_id} is {run.status}; only a running run takes writes")
        if run.heartbeat_at is None or clock.now() - run.heartbeat_at >= ATTACH_BEAT_S:
            self.store.beat([run.id])
        return ActiveRun(self.store, self.writer, run.id, run.experiment, run.name, self.workspace)

    def log_points(
        self,
        run_id: str,
        points: Sequence[tuple[str, float, int | None, float | None]],
        *,
        wait: bool = True,
    ) -> None:
        """Write ``(key, value, step, timestamp)`` points to a run started elsewhere, now,
        in one transaction with the check that the run takes writes: what a server does
        for a client's request. A step of None is 0; a timestamp of None is now. The
        points are checked as :meth:`ActiveRun.log_metric` checks them, all before any is
        written. With ``wait=False`` it raises ``WouldWait`` (having written nothing)
        where it would have to wait for the database (see ``store.metadata.nowait``)."""
        if not isinstance(run_id, str) or not run_id:
            raise InvalidInputError(f"run id must be a non-empty string, got {run_id!r}")
        now = clock.now()
        rows: list[Point] = []
        names: set[str] = set()
        for key, value, step, stamp in points:
            if key not in names:
                names.add(validation.check_name(key, "metric"))
            rows.append(
                (
                    run_id,
                    key,
                    0 if step is None else validation.check_step(key, step),
                    now if stamp is None else validation.check_metric_value("timestamp", stamp),
                    validation.check_metric_value(key, value),
                )
            )
        chunks, latest = packed(rows) if rows else ([], [])
        self.store.write_to_running(run_id, chunks, latest, beat_after=ATTACH_BEAT_S, wait=wait)

    def experiments(self) -> list[str]:
        return self.store.experiments()

    # reading ------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        if not isinstance(run_id, str) or not run_id:
            raise InvalidInputError(f"run id must be a non-empty string, got {run_id!r}")
        found = self.store.load(base_query().where(executions.c.id == run_id))
        if not found:
            raise NotFoundError(f"no run with id {run_id!r}; `loopml runs ls` lists the runs")
        return found[0]

    def code_version(self, run_id: str) -> str | None:
        """The run's git commit (``+dirty`` if the checkout had changes), or None."""
        return self.store.code_version(run_id)

    def search_runs(
        self,
        experiment: str | Sequence[str] | None = None,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int = 1000,
    ) -> RunList:
        """Runs matching ``filter`` (see :mod:`loopml.tracking.search`), newest first by default."""
        search.check_search_limit(limit)
        where = _where(experiment, filter)
        return self.store.load(_ordered(base_query().where(*where), order_by).limit(limit))

    def runs_page(
        self,
        experiment: str | Sequence[str] | None = None,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        *,
        offset: int = 0,
        limit: int = 100,
    ) -> RunPage:
        """The page of :meth:`search_runs`'s answer at ``offset``, with the total matched."""
        for value, what, low in ((limit, "limit", 1), (offset, "offset", 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{what} must be an integer of at least {low}")
        if limit > MAX_PAGE:
            raise InvalidInputError(f"limit must be from 1 to {MAX_PAGE}")
        where = _where(experiment, filter)
        # A form's empty sort box means the default order. Parsed before counting, so a bad
        # order_by is refused whether or not anything matched.
        q = _ordered(base_query().where(*where), order_by or None).offset(offset).limit(limit)
        found = list(self.store.load(q))
        # A page short of its limit is the last one, which says the total; only a full or
        # empty page needs the filter run again to count.
        if 0 < len(found) < limit:
            return RunPage(found, offset + len(found), offset, limit)
        return RunPage(found, self.store.count(count_query().where(*where)), offset, limit)

    def environment(self, digest: str) -> dict[str, Any]:
        return self.store.environment(digest)

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> MetricHistory:
        """A metric's series in step order; with ``max_points``, bucketed for a chart."""
        search.check_max_points(max_points)
        self.writer.flush()
        rows = self.store.metric_chunks(run_id, key)
        if not rows:
            self.get_run(run_id)  # raises NotFoundError for an unknown run
            raise NotFoundError(f"run {run_id} has no metric {key!r}")
        steps = np.concatenate([np.frombuffer(r[0], dtype="<i8") for r in rows])
        stamps = np.concatenate([np.frombuffer(r[1], dtype="<f8") for r in rows])
        values = np.concatenate([np.frombuffer(r[2], dtype="<f8") for r in rows])
        order_ = np.lexsort((stamps, steps))
        steps, stamps, values = steps[order_], stamps[order_], values[order_]
        history = MetricHistory(run_id, key, steps, stamps, values, total_points=len(steps))
        if max_points is None or len(steps) <= max_points:
            return history
        return downsample(history, max_points)


def _where(experiment: str | Sequence[str] | None, filter: str | None) -> list[Any]:
    where: list[Any] = []
    if experiment is not None:
        names = [experiment] if isinstance(experiment, str) else list(experiment)
        for name in names:
            search.check_text(name, "the experiment name")
        where.append(experiments.c.name.in_(names))
    if filter is not None and filter.strip():
        where.append(search.compile_filter(filter))
    return where


def _ordered(q: Select[Any], order_by: str | Sequence[str] | None) -> Select[Any]:
    """``q`` sorted by ``order_by``, then newest first (id breaks ties, so pages are stable)."""
    for i, key in enumerate(search.parse_order_by(order_by)):
        f = key.field
        column = search.attribute_column(f.key) if f.entity == "attribute" else None
        q = order(q, f.entity, f.key, key.descending, i, column)
    return q.order_by(executions.c.start_time.desc(), executions.c.id)


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
