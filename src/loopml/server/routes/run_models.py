"""A model a remote client fitted and uploaded, recorded as an output of its run (what
``lm.autolog()`` saves in remote mode). The tree is checked as a load would check it —
every file present and intact, the metadata valid, the flavor known — before any row
names it; nothing uploaded is unpickled here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from loopml.api.autolog.data import DataDigest
from loopml.api.autolog.recording import NAME_PATTERN, record_model, record_training_data
from loopml.core import hashing
from loopml.registry.artifact import check_stored
from loopml.server.routes.common import ERRORS, WRITE_ERRORS
from loopml.server.state import ServerState, state
from loopml.server.wire import ArtifactOut

router = APIRouter(responses=ERRORS)
St = Annotated[ServerState, Depends(state)]


class RunModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digest: str = Field(max_length=200, description="the uploaded model tree's manifest digest")
    class_name: str = Field(
        default="", max_length=500, description="the fitted object's class, for people to read"
    )
    source: str = Field(default="client", max_length=50, pattern=r"^[A-Za-z0-9_.-]*$")


@router.post(
    "/runs/{run_id}/models",
    response_model=ArtifactOut,
    responses=WRITE_ERRORS,
    tags=["runs"],
    summary="Record an uploaded model as an output of a run",
)
def log_run_model(s: St, run_id: str, body: RunModelIn) -> ArtifactOut:
    """Record the uploaded model tree ``digest`` as the ``model`` output of the running run
    ``run_id``, as a local fit's autologged model is recorded."""
    run = s.tracker.attach(run_id)  # 404 for no such run, 409 for one that has ended
    saved = check_stored(
        s.workspace.artifacts,
        hashing.check_digest(body.digest),
        what=f"the model uploaded for run {run.id}",
    )
    record = record_model(s.workspace, run.id, saved, body.class_name, source=body.source)
    return ArtifactOut.of(record, "model")


class ColumnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=1000)
    type: str = Field(max_length=200)


class TrainingDataIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_digest: str = Field(max_length=200, description="the data's content digest")
    rows: int = Field(ge=0, le=2**63 - 1)
    columns: list[ColumnIn] = Field(max_length=100_000)
    has_target: bool
    role: str = Field(default="training_data", min_length=1, max_length=250, pattern=NAME_PATTERN)


@router.post(
    "/runs/{run_id}/training-data",
    response_model=ArtifactOut,
    responses=WRITE_ERRORS,
    tags=["runs"],
    summary="Record a fit's training data (its digest and shape) as an input of a run",
)
def log_training_data(s: St, run_id: str, body: TrainingDataIn) -> ArtifactOut:
    """Record data a remote client fitted on, by its content digest, rows and columns (the
    data itself stays with the client), as an input of the running run ``run_id`` in
    ``role``, as a local fit's autolog records it."""
    run = s.tracker.attach(run_id)  # 404 for no such run, 409 for one that has ended
    d = DataDigest(
        hashing.check_digest(body.content_digest),
        body.rows,
        [c.model_dump() for c in body.columns],
        body.has_target,
    )
    record = record_training_data(s.workspace, run.id, d, body.role)
    return ArtifactOut.of(record, body.role)
