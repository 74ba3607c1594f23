"""Pipeline runs as stored: one row a run, one row a node, and read-only views of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update

from loopml.core import clock
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.pipelines import values
from loopml.pipelines.cache_key import CacheKey
from loopml.pipelines.graph import Graph
from loopml.store.metadata.tables import pipeline_runs, pipeline_steps
from loopml.store.workspace import Workspace

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
# Node statuses. "cached": reused from the step cache; "reused": from the run resumed.
PENDING, EXECUTED, CACHED, REUSED, SKIPPED = "pending", "executed", "cached", "reused", "skipped"
SUCCEEDED = (EXECUTED, CACHED, REUSED)


@dataclass(frozen=True)
class StepRecord:
    node: str
    step: str
    position: int
    status: str
    code_version: str
    attempts: int
    run_id: str | None = None
    cache_key: str | None = None
    output_kind: str | None = None
    output_digest: str | None = None
    output_artifact_id: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    error: str | None = None
    # The decoded cache key and, for an executed node, why it was not taken from the cache.
    key_parts: dict[str, Any] | None = None
    reason: str | None = None
    deps: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED


@dataclass(frozen=True)
class PipelineRun:
    """A pipeline run as recorded. ``output`` loads what the pipeline function returned."""

    id: str
    pipeline: str
    ref: str | None
    params: dict[str, Any]
    graph: dict[str, Any]
    executor: str
    status: str
    trigger: str
    resumed_from: str | None
    start_time: float
    end_time: float | None
    error: str | None
    steps: dict[str, StepRecord]
    workspace: Workspace = field(repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        return None if self.end_time is None else self.end_time - self.start_time

    def nodes_with(self, *statuses: str) -> list[str]:
        return [n for n, s in self.steps.items() if s.status in statuses]

    @property
    def executed(self) -> list[str]:
        return self.nodes_with(EXECUTED)

    @property
    def cached(self) -> list[str]:
        return self.nodes_with(CACHED, REUSED)

    def value(self, node: str) -> Any:
        """The stored output of ``node``, verified and loaded (tables as Polars)."""
        rec = self.steps.get(node)
        if rec is None:
            raise NotFoundError(f"pipeline run {self.id} has no node {node!r}")
        if rec.output_digest is None or rec.output_kind is None:
            raise NotFoundError(
                f"node {node} of pipeline run {self.id} has no output ({rec.status})"
            )
        return values.load(
            self.workspace.artifacts,
            rec.output_kind,
            rec.output_digest,
            None,
            what=f"output of {node} in pipeline run {self.id}",
        )

    @property
    def output(self) -> Any:
        return self._load(self.graph.get("output"))

    def _load(self, spec: Any) -> Any:
        if spec is None:
            return None
        if isinstance(spec, list):
            return [self._load(s) for s in spec]
        if "ref" in spec and isinstance(spec["ref"], str) and len(spec) == 1:
            return self.value(spec["ref"])
        return {k: self._load(v) for k, v in spec.items()}


def create(
    ws: Workspace,
    run_id: str,
    graph: Graph,
    order: list[str],
    *,
    ref: str | None,
    params: dict[str, Any],
    executor: str,
    trigger: str,
    resumed_from: str | None,
    code_versions: dict[str, str],
) -> None:
    now = clock.now()
    with ws.write_engine.begin() as conn:
        conn.execute(
            insert(pipeline_runs).values(
                id=run_id,
                pipeline=graph.name,
                ref=ref,
                params=params,
                graph=graph.to_json(),
                executor=executor,
                status=RUNNING,
                trigger=trigger,
                resumed_from=resumed_from,
                start_time=now,
                end_time=None,
                error=None,
            )
        )
        conn.execute(
            insert(pipeline_steps),
            [
                {
                    "pipeline_run_id": run_id,
                    "node": node,
                    "step": graph.nodes[node].step.name,
                    "position": i,
                    "run_id": None,
                    "status": PENDING,
                    "code_version": code_versions[node],
                    "cache_key": None,
                    "output_kind": None,
                    "output_digest": None,
                    "output_artifact_id": None,
                    "attempts": 0,
                    "start_time": None,
                    "end_time": None,
                    "error": None,
                }
                for i, node in enumerate(order)
            ],
        )


def update_step(ws: Workspace, pipeline_run_id: str, node: str, /, **changes: Any) -> None:
    with ws.write_engine.begin() as conn:
        conn.execute(
            update(pipeline_steps)
            .where(
                pipeline_steps.c.pipeline_run_id == pipeline_run_id,
                pipeline_steps.c.node == node,
            )
            .values(**changes)
        )


def previous_key(ws: Workspace, pipeline: str, node: str, exclude_run: str) -> CacheKey | None:
    """The key of ``node`` in the latest earlier run of ``pipeline`` where it succeeded:
    what a cache miss is explained against."""
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(pipeline_steps.c.key_parts)
            .join(pipeline_runs, pipeline_runs.c.id == pipeline_steps.c.pipeline_run_id)
            .where(
                pipeline_runs.c.pipeline == pipeline,
                pipeline_runs.c.id != exclude_run,
                pipeline_steps.c.node == node,
                pipeline_steps.c.status.in_(SUCCEEDED),
                pipeline_steps.c.key_parts.is_not(None),
            )
            .order_by(pipeline_runs.c.start_time.desc())
            .limit(1)
        ).all()
    return CacheKey.from_json(rows[0].key_parts) if rows else None


def finish(ws: Workspace, run_id: str, status: str, error: str | None = None) -> None:
    with ws.write_engine.begin() as conn:
        conn.execute(
            update(pipeline_runs)
            .where(pipeline_runs.c.id == run_id)
            .values(status=status, end_time=clock.now(), error=error)
        )
        conn.execute(
            update(pipeline_steps)
            .where(
                pipeline_steps.c.pipeline_run_id == run_id,
                pipeline_steps.c.status.in_((PENDING, "running")),
            )
            .values(status=SKIPPED)
        )


def get(ws: Workspace, run_id: str) -> PipelineRun:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInputError("a pipeline run id is a non-empty string")
    with ws.engine.connect() as conn:
        row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.id == run_id)).first()
        if row is None:
            # Accept an unambiguous prefix, as the CLI shows shortened ids.
            rows = conn.execute(
                select(pipeline_runs).where(pipeline_runs.c.id.startswith(run_id)).limit(2)
            ).all()
            if len(rows) != 1:
                raise NotFoundError(f"no pipeline run {run_id!r}; `loopml pipeline ls` lists them")
            row = rows[0]
        steps = conn.execute(
            select(pipeline_steps)
            .where(pipeline_steps.c.pipeline_run_id == row.id)
            .order_by(pipeline_steps.c.position)
        ).all()
    return _view(ws, row, steps)


def list_runs(ws: Workspace, pipeline: str | None = None, limit: int = 20) -> list[PipelineRun]:
    with ws.engine.connect() as conn:
        q = select(pipeline_runs).order_by(pipeline_runs.c.start_time.desc()).limit(limit)
        if pipeline is not None:
            q = q.where(pipeline_runs.c.pipeline == pipeline)
        rows = conn.execute(q).all()
        ids = [r.id for r in rows]
        steps = conn.execute(
            select(pipeline_steps)
            .where(pipeline_steps.c.pipeline_run_id.in_(ids))
            .order_by(pipeline_steps.c.position)
        ).all()
    by_run: dict[str, list[Any]] = {}
    for s in steps:
        by_run.setdefault(s.pipeline_run_id, []).append(s)
    return [_view(ws, r, by_run.get(r.id, [])) for r in rows]


def _view(ws: Workspace, row: Any, steps: Sequence[Any]) -> PipelineRun:
    deps = {n["name"]: dict(n.get("deps", {})) for n in row.graph.get("nodes", [])}
    records = {}
    for s in steps:
        data = {k: v for k, v in s._mapping.items() if k != "pipeline_run_id"}
        records[s.node] = StepRecord(**data, deps=deps.get(s.node, {}))
    return PipelineRun(
        id=row.id,
        pipeline=row.pipeline,
        ref=row.ref,
        params=dict(row.params),
        graph=dict(row.graph),
        executor=row.executor,
        status=row.status,
        trigger=row.trigger,
        resumed_from=row.resumed_from,
        start_time=row.start_time,
        end_time=row.end_time,
        error=row.error,
        steps=records,
        workspace=ws,
    )
