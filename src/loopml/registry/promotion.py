"""Promote a version to an alias through a gate; every attempt is recorded either way.

A model may declare a promotion policy: the gate every promotion must pass. Then a
promotion without that gate is refused unless forced, and a forced one is marked as such
in the alias history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loopml.core.errors import ConflictError, InvalidInputError
from loopml.registry.evaluation import EvaluationResult, evaluate, save_evaluation
from loopml.registry.gates import Gate, GateContext, GateResult
from loopml.registry.loaded import LoadedModel
from loopml.registry.model_registry import AliasEvent, ModelVersion, Registry, check_alias
from loopml.store.workspace import Workspace


class PromotionRefusedError(ConflictError):
    """A gate or the model's policy refused a promotion; ``result`` holds the verdicts."""

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

    @property
    def forced(self) -> bool:
        return self.event.forced


def set_policy(ws: Workspace, name: str, gate: Gate | None) -> None:
    """Require ``gate`` for every promotion of ``name``; ``None`` lifts the requirement."""
    if gate is not None and not isinstance(gate, Gate):
        raise InvalidInputError(f"a promotion policy is a Gate, not {type(gate).__name__}")
    Registry(ws).set_policy(name, gate)


def policy(ws: Workspace, name: str) -> Gate | None:
    """The gate every promotion of ``name`` must pass, or ``None``."""
    document = Registry(ws).policy(name)
    return None if document is None else Gate.from_dict(document)


def promote(
    ws: Workspace,
    name: str,
    version: int,
    alias: str = "champion",
    *,
    gate: Gate | None = None,
    data: Any = None,
    reason: str = "",
    dataset_artifact_ids: Sequence[str] = (),
    force: bool = False,
    created_by: str | None = None,
) -> PromotionResult:
    """Move ``name@alias`` to ``version`` if ``gate`` passes; record the attempt either way.

    ``data`` is the labelled evaluation table the gate's metric checks score both the
    candidate and the current champion on; ``dataset_artifact_ids`` name it in the lineage. When
    the model has a policy, ``gate`` must be the policy's gate, or ``force=True``.
    ``created_by`` says who asked (the workspace's actor by default).
    """
    registry = Registry(ws)
    check_alias(alias)
    candidate = registry.get_version(name, version)
    current = registry.alias_version(name, alias)
    if current == version:
        raise ConflictError(f"{name}@{alias} already points to version {version}")
    required = policy(ws, name)
    forced = False
    if required is not None and (gate is None or gate.to_dict() != required.to_dict()):
        given = "no gate" if gate is None else f"gate {gate.name!r}, which differs from it"
        if not force:
            event = registry.record_refusal(
                name,
                alias,
                version,
                action="promote",
                reason=(
                    f"model {name!r} requires gate {required.name!r} for promotions and this "
                    f"one had {given}; pass gate=<the policy's gate> or force=True"
                ),
                created_by=created_by,
            )
            return PromotionResult(name, alias, version, current, False, event.reason, None, event)
        forced = True
        reason = f"forced past policy gate {required.name!r} with {given}" + (
            f": {reason}" if reason else ""
        )
    if gate is None:
        event = registry.move_alias(
            name,
            alias,
            version,
            action="promote",
            reason=reason or "promoted without a gate",
            expected_from=current,
            forced=forced,
            created_by=created_by,
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
            ws, result, model_artifact_id=mv.artifact_id, dataset_artifact_ids=dataset_artifact_ids
        )
        evaluation_ids.append(artifact_id)
        return stored

    ctx = GateContext(candidate, champion, load, run_evaluation if data is not None else None, data)
    result = gate.run(ctx)
    inputs = [("evaluation", i) for i in evaluation_ids]
    if champion is not None:
        inputs.append(("champion", champion.artifact_id))
    if result.passed:
        event = registry.move_alias(
            name,
            alias,
            version,
            action="promote",
            reason=reason or f"gate {gate.name!r} passed all {len(result.checks)} checks",
            expected_from=current,
            gate_result=result.to_dict(),
            inputs=inputs,
            forced=forced,
            created_by=created_by,
        )
    else:
        failed = ", ".join(c.description for c in result.failed)
        why = f"gate {gate.name!r} refused {name}:{version} for {alias}: failed {failed}"
        if reason:
            why += f" (requested because: {reason})"
        event = registry.record_refusal(
            name,
            alias,
            version,
            action="promote",
            reason=why,
            gate_result=result.to_dict(),
            inputs=inputs,
            created_by=created_by,
        )
    return PromotionResult(
        name, alias, version, current, event.allowed, event.reason, result, event
    )
