"""Runs: search with the filter language, one run, metric histories, artifacts, writes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from loopml.server.routes.common import ERRORS, WRITE_ERRORS, who
from loopml.server.state import ServerState, state
from loopml.server.wire import (
    ArtifactOut,
    EndRunIn,
    EnvironmentOut,
    LogBatchIn,
    LogMetricsIn,
    MetricHistoryOut,
    RunArtifactsOut,
    RunOut,
    RunPageOut,
    StartRunIn,
    WriteOut,
)
from loopml.tracking import environment, validation
from loopml.tracking.active_run import ActiveRun
from loopml.tracking.tracker import MAX_PAGE

router = APIRouter(prefix="/runs", tags=["runs"], responses=ERRORS)
St = Annotated[ServerState, Depends(state)]
MAX_CHART_POINTS = 10_000


@router.get("", response_model=RunPageOut, summary="Search runs")
def search_runs(
    s: St,
    experiment: Annotated[list[str] | None, Query(max_length=100)] = None,
    filter: Annotated[str | None, Query(max_length=2000, examples=["metrics.auc > 0.7"])] = None,
    order_by: Annotated[str | None, Query(max_length=500, examples=["metrics.auc desc"])] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> RunPageOut:
    """Runs matching ``filter`` (``metrics.auc > 0.7 and params.depth = '6'``), newest first
    unless ``order_by`` says otherwise; ``total`` counts every match."""
    page = s.tracker.runs_page(
        experiment=experiment or None,
        filter=filter,
        order_by=order_by,
        offset=offset,
        limit=limit,
    )
    return RunPageOut(
        runs=[RunOut.of(r) for r in page.runs], total=page.total, offset=offset, limit=limit
    )


@router.get("/experiments", response_model=list[str], summary="Experiment names")
def experiments(s: St) -> list[str]:
    return s.tracker.experiments()


@router.get("/{run_id}", response_model=RunOut, summary="One run")
def get_run(s: St, run_id: str) -> RunOut:
    return RunOut.of(s.tracker.get_run(run_id))


@router.get("/{run_id}/metrics/history", response_model=MetricHistoryOut, summary="A metric")
def metric_history(
    s: St,
    run_id: str,
    key: Annotated[str, Query(min_length=1, max_length=250)],
    max_points: Annotated[int | None, Query(ge=2, le=MAX_CHART_POINTS)] = None,
) -> MetricHistoryOut:
    """The metric's series in step order; with ``max_points``, bucketed (mean, min, max)."""
    return MetricHistoryOut.of(s.tracker.metric_history(run_id, key, max_points=max_points))


@router.get("/{run_id}/artifacts", response_model=RunArtifactsOut, summary="Inputs and outputs")
def run_artifacts(s: St, run_id: str) -> RunArtifactsOut:
    s.tracker.get_run(run_id)
    lineage = s.workspace.lineage
    return RunArtifactsOut(
        inputs=[ArtifactOut.of(a, role) for role, a in lineage.artifacts_of(run_id, "input")],
        outputs=[ArtifactOut.of(a, role) for role, a in lineage.artifacts_of(run_id, "output")],
    )


@router.get("/{run_id}/environment", response_model=EnvironmentOut | None)
def run_environment(s: St, run_id: str) -> EnvironmentOut | None:
    """The Python version, platform and packages the run recorded (null if none)."""
    run = s.tracker.get_run(run_id)
    if run.environment_digest is None:
        return None
    env = s.tracker.environment(run.environment_digest)
    return EnvironmentOut(
        digest=env["digest"],
        python_version=env["python_version"],
        platform=env["platform"],
        packages={str(k): str(v) for k, v in dict(env["packages"] or {}).items()},
    )


# --- writes ------------------------------------------------------------------------------


def _active(s: ServerState, run_id: str) -> ActiveRun:
    return s.tracker.attach(run_id)


@router.post("", response_model=WriteOut, responses=WRITE_ERRORS, summary="Start a run")
def start_run(s: St, body: StartRunIn, request: Request) -> WriteOut:
    """Start a run, recorded as made by the request's token (``anonymous`` without one)."""
    run = s.tracker.start_run(
        body.experiment,
        name=body.name,
        params=body.params,
        tags=body.tags,
        capture_environment=False,
        created_by=who(request),
        environment_info=None
        if body.environment is None
        else environment.environment_of(
            body.environment.python_version, body.environment.platform, body.environment.packages
        ),
        git=None
        if body.git_commit is None
        else environment.GitState(body.git_commit, body.git_dirty),
    )
    return WriteOut(id=run.id)


@router.post("/{run_id}/metrics", response_model=WriteOut, responses=WRITE_ERRORS)
def log_metrics(s: St, run_id: str, body: LogMetricsIn) -> WriteOut:
    """Append a batch of metric points; written before the answer."""
    active = _active(s, run_id)
    for p in body.metrics:
        active.log_metric(p.key, p.value, step=p.step, timestamp=p.timestamp)
    s.tracker.writer.flush()
    return WriteOut(id=run_id)


@router.post("/{run_id}/tags", response_model=WriteOut, responses=WRITE_ERRORS)
def set_tags(s: St, run_id: str, body: dict[str, str]) -> WriteOut:
    _active(s, run_id).set_tags(body)
    return WriteOut(id=run_id)


@router.post("/{run_id}/batch", response_model=WriteOut, responses=WRITE_ERRORS)
def log_batch(s: St, run_id: str, body: LogBatchIn) -> WriteOut:
    """Params, tags and metric points of one run, all checked before any is written; the
    points are written before the answer. An empty batch is the client's heartbeat."""
    for p in body.metrics:
        validation.check_name(p.key, "metric")
        validation.check_metric_value(p.key, p.value)
        if p.timestamp is not None:
            validation.check_metric_value(f"{p.key} (its timestamp)", p.timestamp)
    for k, v in body.tags.items():
        validation.tag_text(validation.check_name(k, "tag"), v)
    active = _active(s, run_id)
    if body.params:
        active.log_params(body.params)
    if body.tags:
        active.set_tags(body.tags)
    if body.metrics:
        for p in body.metrics:
            active.log_metric(p.key, p.value, step=p.step, timestamp=p.timestamp)
        s.tracker.writer.flush()
    return WriteOut(id=run_id)


@router.post("/{run_id}/end", response_model=WriteOut, responses=WRITE_ERRORS)
def end_run(s: St, run_id: str, body: EndRunIn) -> WriteOut:
    _active(s, run_id).end(body.status, error=body.error)
    return WriteOut(id=run_id)
