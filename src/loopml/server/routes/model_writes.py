"""Registry writes beyond registering and promoting: rollbacks, promotion policies and
evaluations, so that remote mode offers what ``lm.models`` offers locally.

Each is recorded as made by the request's token (``anonymous`` without tokens). An
evaluation loads and runs a model someone uploaded, so with tokens in use it needs an
``admin`` token, as a gated promotion does; rollbacks and policies need ``write``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from loopml.core import names
from loopml.data.catalog import Catalog
from loopml.registry.evaluation import evaluate, save_evaluation
from loopml.registry.gates import Gate
from loopml.registry.promotion import set_policy
from loopml.server import tokens
from loopml.server.auth import bearer
from loopml.server.routes.common import ERRORS, WRITE_ERRORS, who
from loopml.server.state import ServerState, state
from loopml.server.wire import (
    AliasEventOut,
    EvaluateIn,
    EvaluationOut,
    PolicyIn,
    PolicyOut,
    RollbackIn,
)

router = APIRouter(responses=ERRORS, tags=["registry"])
St = Annotated[ServerState, Depends(state)]


def require_admin(s: ServerState, request: Request, what: str) -> None:
    """Refuse (403) a token below ``admin`` when tokens are in use."""
    info = tokens.authenticate(s.workspace, bearer(request))
    if info is not None and not tokens.allows(info.scope, "admin"):
        raise tokens.ForbiddenError(
            f"token {info.name!r} has scope {info.scope!r}; {what} runs the uploaded model "
            "on the server, which needs an 'admin' token"
        )


@router.post(
    "/models/{name}/aliases/{alias}/rollback",
    response_model=AliasEventOut,
    responses=WRITE_ERRORS,
    summary="Roll an alias back",
)
def rollback(s: St, name: str, alias: str, body: RollbackIn, request: Request) -> AliasEventOut:
    """Point ``name@alias`` back at the version it held before its latest promotion."""
    names.check_name(name, what="model name")
    names.check_alias(alias)
    event = s.registry.rollback(name, alias, reason=body.reason, created_by=who(request))
    return AliasEventOut.of(event)


@router.put(
    "/models/{name}/policy",
    response_model=PolicyOut,
    responses=WRITE_ERRORS,
    summary="Set or lift the promotion policy",
)
def put_policy(s: St, name: str, body: PolicyIn) -> PolicyOut:
    """Require ``gate`` for every promotion of ``name``; null lifts the requirement."""
    names.check_name(name, what="model name")
    gate = None if body.gate is None else Gate.from_dict(body.gate)
    set_policy(s.workspace, name, gate)
    return PolicyOut(gate=None if gate is None else gate.to_dict())


@router.post(
    "/evaluations",
    response_model=EvaluationOut,
    responses=WRITE_ERRORS,
    summary="Evaluate a registered model",
)
def evaluate_model(s: St, body: EvaluateIn, request: Request) -> EvaluationOut:
    """Score a registered model on a labelled dataset of the catalog and store the result,
    linked to the model, the dataset and (with ``run_id``) the run."""
    names.parse_ref(body.model, "model reference")
    names.parse_ref(body.data, "dataset reference", allow_alias=False)
    require_admin(s, request, "an evaluation")
    mv = s.registry.resolve(body.model)
    ds = Catalog(s.workspace).get(body.data)
    loaded = s.registry.load(mv.ref)
    result = evaluate(loaded, ds.to_polars(), body.target, slice_by=body.slice_by)
    stored, artifact_id = save_evaluation(
        s.workspace,
        result,
        model_artifact_id=mv.artifact_id,
        dataset_artifact_ids=[ds.artifact_id],
        run_id=body.run_id,
        created_by=who(request),
    )
    assert stored.digest is not None
    return EvaluationOut(evaluation=stored.to_dict(), digest=stored.digest, artifact_id=artifact_id)
