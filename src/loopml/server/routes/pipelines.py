"""Pipeline runs: their DAG, each step's status, duration and cache hit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from loopml.core import names
from loopml.pipelines import records
from loopml.server.routes.common import ERRORS
from loopml.server.state import ServerState, state
from loopml.server.wire import PipelineRunOut

router = APIRouter(prefix="/pipelines", tags=["pipelines"], responses=ERRORS)
St = Annotated[ServerState, Depends(state)]


@router.get("/runs", response_model=list[PipelineRunOut], summary="Pipeline runs, newest first")
def pipeline_runs(
    s: St,
    pipeline: Annotated[str | None, Query(max_length=250)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[PipelineRunOut]:
    if pipeline is not None:
        names.check_name(pipeline, what="pipeline name")
    return [PipelineRunOut.of(p) for p in records.list_runs(s.workspace, pipeline, limit)]


@router.get("/runs/{run_id}", response_model=PipelineRunOut)
def pipeline_run(s: St, run_id: str) -> PipelineRunOut:
    """One pipeline run; any unambiguous prefix of its id."""
    return PipelineRunOut.of(records.get(s.workspace, run_id))
