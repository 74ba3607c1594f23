"""What remote clients write besides runs and datasets: content-addressed blobs, model
registrations and promotions. Each is recorded as made by the request's token
(``anonymous`` without).

A client uploads a model as the files of its tree plus the tree's manifest, each to
``PUT /blobs/{digest}`` (the server hashes what it receives and refuses a mismatch), then
registers the tree's digest; the server checks the tree as a load would before any row
points at it. Promotions run their gate on the server, which loads the candidate model:
with tokens in use a gate needs an ``admin`` token, since a write token alone must not
make the server run code someone uploaded.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from loopml.core import hashing, names
from loopml.core.errors import InvalidInputError
from loopml.data.catalog import Catalog
from loopml.registry.artifact import check_stored
from loopml.registry.gates import Gate
from loopml.registry.promotion import promote
from loopml.server.routes.common import ERRORS, WRITE_ERRORS, require_admin, who
from loopml.server.state import ServerState, state
from loopml.server.uploads import store_body
from loopml.server.wire import (
    AliasEventOut,
    ArtifactOut,
    BlobOut,
    BlobsIn,
    BlobsOut,
    ErrorBody,
    ModelVersionOut,
    PromoteIn,
    PromotionOut,
    RegisterIn,
    RunArtifactIn,
)

router = APIRouter(responses=ERRORS)
St = Annotated[ServerState, Depends(state)]


@router.post("/missing-blobs", response_model=BlobsOut, tags=["blobs"])
def missing_blobs(s: St, body: BlobsIn) -> BlobsOut:
    """Which of ``digests`` the artifact store lacks: what a client still has to upload."""
    store = s.workspace.artifacts
    return BlobsOut(
        missing=[
            d for d in dict.fromkeys(body.digests) if not store.exists(hashing.check_digest(d))
        ],
        max_bytes=s.max_upload_bytes,
    )


@router.put(
    "/blobs/{digest}",
    response_model=BlobOut,
    responses={**WRITE_ERRORS, 413: {"model": ErrorBody, "description": "larger than allowed"}},
    tags=["blobs"],
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def put_blob(s: St, digest: str, request: Request) -> BlobOut:
    """Store the request body under ``digest`` after checking that it hashes to it. The
    body streams to a temp file while it is hashed (memory stays flat), and is moved into
    place only when complete and matching: a refused, aborted or mismatched upload
    leaves nothing. Bodies over the server's cap (``LOOPML_MAX_UPLOAD_BYTES``) get a 413."""
    hashing.check_digest(digest)
    blob = await store_body(request, s.workspace.artifacts, s.max_upload_bytes, digest)
    return BlobOut(digest=blob.digest, size=blob.size)


@router.get(
    "/blobs/{digest}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
    tags=["blobs"],
)
def get_blob(s: St, digest: str) -> FileResponse:
    """The bytes stored under ``digest``, verified against it first."""
    local = s.workspace.artifacts.local_path(hashing.check_digest(digest))
    return FileResponse(local, media_type="application/octet-stream")


@router.post(
    "/runs/{run_id}/artifacts",
    response_model=ArtifactOut,
    responses=WRITE_ERRORS,
    tags=["runs"],
    summary="Attach an uploaded file or folder to a run",
)
def log_artifact(s: St, run_id: str, body: RunArtifactIn) -> ArtifactOut:
    """Record the uploaded blob (``kind: file``) or tree manifest (``kind: tree``) as an
    output of the running run ``run_id``, named ``name``; a tree's files must all be
    uploaded and its paths plain relative paths. It is then listed and downloaded with the
    run's artifacts like one logged locally."""
    run = s.tracker.attach(run_id)
    record = run.log_stored_artifact(hashing.check_digest(body.digest), body.kind, body.name)
    return ArtifactOut.of(record, record.name)


@router.post(
    "/models/{name}/versions",
    response_model=ModelVersionOut,
    responses=WRITE_ERRORS,
    tags=["registry"],
    summary="Register an uploaded model",
)
def register(s: St, name: str, body: RegisterIn, request: Request) -> ModelVersionOut:
    """Record the uploaded model tree ``digest`` as the next version of ``name``."""
    model = names.check_name(name, what="model name")
    # A tree a client uploaded is checked as a load would check it before any row names it.
    saved = check_stored(
        s.workspace.artifacts,
        hashing.check_digest(body.digest),
        what=f"the model uploaded as {model!r}",
    )
    mv = s.registry.register_saved(
        model,
        saved,
        run_id=body.run_id,
        dataset_artifact_ids=body.dataset_artifact_ids,
        code_version=body.code_version,
        description=body.description,
        tags=body.tags,
        created_by=who(request),
    )
    return ModelVersionOut.of(mv)


@router.post(
    "/models/{name}/aliases/{alias}",
    response_model=PromotionOut,
    responses=WRITE_ERRORS,
    tags=["registry"],
    summary="Promote a version",
)
def promote_version(
    s: St, name: str, alias: str, body: PromoteIn, request: Request
) -> PromotionOut:
    """Move ``name@alias`` to ``version`` if the gate passes; the attempt is recorded
    either way (a refusal is a 200 with ``allowed: false``)."""
    names.check_name(name, what="model name")
    names.check_alias(alias)
    gate = None if body.gate is None else Gate.from_dict(body.gate)
    if gate is not None:
        require_admin(s.workspace, request, "a gate runs the uploaded model on the server, which")
    data, dataset_artifact_ids = None, []
    if body.data is not None:
        if gate is None:
            raise InvalidInputError("data is the gate's evaluation data: pass a gate with it")
        ds = Catalog(s.workspace).get(body.data)
        data, dataset_artifact_ids = ds.to_polars(), [ds.artifact_id]
    result = promote(
        s.workspace,
        name,
        body.version,
        alias,
        gate=gate,
        data=data,
        reason=body.reason,
        dataset_artifact_ids=dataset_artifact_ids,
        force=body.force,
        created_by=who(request),
    )
    return PromotionOut(
        allowed=result.allowed,
        reason=result.reason,
        from_version=result.from_version,
        event=AliasEventOut.of(result.event),
    )
