"""The model registry: models, versions, aliases, their history with gate results, cards."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from loopml.core import names
from loopml.registry.card import render_card
from loopml.registry.promotion import policy
from loopml.server.routes.common import ERRORS, version_number
from loopml.server.state import ServerState, state
from loopml.server.wire import AliasEventOut, CardOut, ModelOut, ModelVersionOut, PolicyOut

router = APIRouter(prefix="/models", tags=["registry"], responses=ERRORS)
St = Annotated[ServerState, Depends(state)]


@router.get("", response_model=list[ModelOut], summary="Registered models")
def list_models(s: St) -> list[ModelOut]:
    return [ModelOut.of(m) for m in s.registry.models()]


@router.get("/{name}", response_model=ModelOut)
def get_model(s: St, name: str) -> ModelOut:
    return ModelOut.of(s.registry.get_model(names.check_name(name, what="model name")))


@router.get("/{name}/versions", response_model=list[ModelVersionOut])
def versions(s: St, name: str) -> list[ModelVersionOut]:
    return [ModelVersionOut.of(v) for v in s.registry.versions(name)]


@router.get("/{name}/versions/{version}", response_model=ModelVersionOut)
def get_version(s: St, name: str, version: str) -> ModelVersionOut:
    return ModelVersionOut.of(s.registry.get_version(name, version_number(version)))


@router.get("/{name}/aliases", response_model=dict[str, int])
def aliases(s: St, name: str) -> dict[str, int]:
    return s.registry.aliases(name)


@router.get("/{name}/history", response_model=list[AliasEventOut])
def history(
    s: St, name: str, alias: Annotated[str | None, Query(max_length=100)] = None
) -> list[AliasEventOut]:
    """Every attempt to move an alias, allowed or refused, with each gate check's result."""
    if alias is not None:
        names.check_alias(alias)
    return [AliasEventOut.of(e) for e in s.registry.history(name, alias)]


@router.get("/{name}/versions/{version}/card", response_model=CardOut)
def card(s: St, name: str, version: str) -> CardOut:
    """The model card as Markdown."""
    return CardOut(markdown=render_card(s.workspace, name, version_number(version)))


@router.get("/{name}/policy", response_model=PolicyOut)
def get_policy(s: St, name: str) -> PolicyOut:
    """The gate every promotion of the model must pass, or null."""
    gate = policy(s.workspace, names.check_name(name, what="model name"))
    return PolicyOut(gate=None if gate is None else gate.to_dict())
