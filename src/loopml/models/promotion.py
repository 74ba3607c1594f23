"""Promote a version to an alias through a gate; every attempt is recorded either way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loopml.core.errors import ConflictError, InvalidInputError
from loopml.models.evaluation import EvaluationResult, evaluate, save_evaluation
from loopml.models.gates import Gate, GateContext, GateResult
from loopml.models.loaded import LoadedModel
from loopml.models.registry import AliasEvent, ModelVersion, Registry, check_alias
from loopml.store.workspace import Workspace


class PromotionRefusedError(ConflictError):
    """A gate refused a promotion; ``result`` holds every check's verdict."""

    def __init__(self, result: PromotionResult) -> None:
        self.result = result
        super().__init__(result.reason)


@dataclass(frozen=True)
class PromotionResult:
    name: str
    alias: str
    version: int
    from_version: int | None
    allowed: bool
    reason: str
    gate: GateResult | None
    event: AliasEvent


def promote(
    ws: Workspace,
    name: str,
    version: int,
    alias: str = "champion",
    *,
    gate: Gate | None = None,
    data: Any = None,
    reason: str = "",
    dataset_ids: Sequence[str] = (),
) -> PromotionResult:
    """Move ``name@alias`` to ``version`` if ``gate`` passes; record the attempt either way.

    ``data`` is the labelled evaluation table the gate's metric checks score both the
    candidate and the current champion on; ``dataset_ids`` name it in the lineage.
    """
    registry = Registry(ws)
    check_alias(alias)
    candidate = registry.get_version(name, version)
    current = registry.alias_version(name, alias)
    if current == version:
        raise ConflictError(f"{name}@{alias} already points to version {version}")
    if gate is None:
        event = registry.move_alias(
            name,
            alias,
            version,
            action="promote",
            allowed=True,
            reason=reason or "promoted without a gate",
            expected_from=current,
        )
        return PromotionResult(
            name, alias, version, current, event.allowed, event.reason, None, event
        )
    if gate.needs_data and data is None:
        raise InvalidInputError(
            f"gate {gate.name!r} has metric checks: pass the labelled evaluation data "
            f"(with column {gate.target!r}) as data="
        )
    compare_alias = gate.champion_alias or alias
    champion_version = registry.alias_version(name, compare_alias)
    champion = None if champion_version is None else registry.get_version(name, champion_version)
    evaluation_ids: list[str] = []

    def load(mv: ModelVersion) -> LoadedModel:
        return registry.load(mv.ref)

    def run_evaluation(mv: ModelVersion, model: LoadedModel) -> EvaluationResult:
        assert gate is not None and gate.target is not None
        result = evaluate(model, data, gate.target, slice_by=gate.slice_by)
        stored, artifact_id = save_evaluation(
            ws, result, model_artifact_id=mv.artifact_id, dataset_ids=dataset_ids
        )
        evaluation_ids.append(artifact_id)
        return stored

    ctx = GateContext(candidate, champion, load, run_evaluation if data is not None else None, data)
    result = gate.run(ctx)
    if result.passed:
        why = reason or f"gate {gate.name!r} passed all {len(result.checks)} checks"
    else:
        failed = ", ".join(c.description for c in result.failed)
        why = f"gate {gate.name!r} refused {name}:{version} for {alias}: failed {failed}"
        if reason:
            why += f" (requested because: {reason})"
    inputs = [("evaluation", i) for i in evaluation_ids]
    if champion is not None:
        inputs.append(("champion", champion.artifact_id))
    event = registry.move_alias(
        name,
        alias,
        version,
        action="promote",
        allowed=result.passed,
        reason=why,
        expected_from=current,
        gate_result=result.to_dict(),
        inputs=inputs,
    )
    return PromotionResult(
        name, alias, version, current, event.allowed, event.reason, result, event
    )
