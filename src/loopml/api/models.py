"""``lm.models``: the model registry on the configured workspace.

mv = lm.models.register("delay-model", model, X_train, run=run, datasets=[ds])
lm.models.promote("delay-model", mv.version, alias="champion", gate=gate, data=holdout)
lm.models.load("delay-model@champion").predict(df)
lm.models.rollback("delay-model", alias="champion")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loopml.api.fluent import remote_registry, tracker, workspace
from loopml.core.errors import InvalidInputError
from loopml.core.names import check_name
from loopml.data.catalog import Catalog
from loopml.registry import card as _card
from loopml.registry.artifact import wrap
from loopml.registry.evaluation import EvaluationResult, save_evaluation
from loopml.registry.evaluation import evaluate as _evaluate
from loopml.registry.gates import (
    Check,
    Gate,
    NoWorseThanChampion,
    SchemaCompatible,
    SliceThreshold,
    SmokeTest,
    Threshold,
)
from loopml.registry.loaded import LoadedModel
from loopml.registry.model_registry import AliasEvent, ModelVersion, RegisteredModel, Registry
from loopml.registry.onnx_export import export_onnx
from loopml.registry.promotion import PromotionRefusedError, PromotionResult
from loopml.registry.promotion import policy as _policy
from loopml.registry.promotion import promote as _promote
from loopml.registry.promotion import set_policy as _set_policy

__all__ = [
    "AliasEvent",
    "Gate",
    "LoadedModel",
    "ModelVersion",
    "NoWorseThanChampion",
    "PromotionRefusedError",
    "PromotionResult",
    "RegisteredModel",
    "SchemaCompatible",
    "SliceThreshold",
    "SmokeTest",
    "Threshold",
    "card",
    "evaluate",
    "export_onnx",
    "gate",
    "get",
    "history",
    "list_models",
    "load",
    "policy",
    "promote",
    "register",
    "rollback",
    "set_policy",
    "versions",
]


def _registry() -> Registry:
    return Registry(workspace())


def _run_id(run: Any) -> str | None:
    if run is None or isinstance(run, str):
        return run
    run_id = getattr(run, "id", None)
    if not isinstance(run_id, str):
        raise InvalidInputError(f"run= takes a run (or its id), not {type(run).__name__}")
    return run_id


def _dataset_artifact_ids(datasets: Iterable[Any] | None) -> list[str]:
    out = []
    for ds in datasets or ():
        artifact_id = ds if isinstance(ds, str) else getattr(ds, "artifact_id", None)
        if not isinstance(artifact_id, str):
            raise InvalidInputError(
                f"datasets= takes dataset versions (or their artifact ids), not {type(ds).__name__}"
            )
        out.append(artifact_id)
    return out


def register(
    name: str,
    model: Any,
    X: Any = None,
    *,
    run: Any = None,
    datasets: Iterable[Any] | None = None,
    flavor: str | None = None,
    code_version: str | None = None,
    description: str = "",
    tags: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Register ``model`` as the next version of ``name``.

    ``X`` (training data or a sample) gives the signature and input example; ``run`` and
    ``datasets`` are recorded as the version's lineage. ``code_version`` defaults to the
    run's git commit.
    """
    run_id = _run_id(run)
    remote = remote_registry()
    if remote is not None:
        return remote.register(
            name,
            model,
            X,
            flavor=flavor,
            run_id=run_id,
            dataset_artifact_ids=_dataset_artifact_ids(datasets),
            code_version=code_version,
            description=description,
            tags=tags,
        )
    if run_id is not None and code_version is None:
        code_version = tracker().code_version(run_id)
    return _registry().register(
        name,
        model,
        X,
        flavor=flavor,
        run_id=run_id,
        dataset_artifact_ids=_dataset_artifact_ids(datasets),
        code_version=code_version,
        description=description,
        tags=tags,
    )


def load(ref: str) -> LoadedModel:
    """``"name@alias"``, ``"name:3"`` or ``"name"`` (latest), loaded from verified bytes."""
    remote = remote_registry()
    return _registry().load(ref) if remote is None else remote.load(ref)


def get(ref: str) -> ModelVersion:
    remote = remote_registry()
    return _registry().resolve(ref) if remote is None else remote.resolve(ref)


def versions(name: str) -> list[ModelVersion]:
    remote = remote_registry()
    return _registry().versions(name) if remote is None else remote.versions(name)


def list_models() -> list[RegisteredModel]:
    remote = remote_registry()
    return _registry().models() if remote is None else remote.models()


def history(name: str, alias: str | None = None) -> list[AliasEvent]:
    remote = remote_registry()
    return _registry().history(name, alias) if remote is None else remote.history(name, alias)


def promote(
    name: str,
    version: int,
    alias: str = "champion",
    *,
    gate: Gate | str | Path | None = None,
    data: Any = None,
    datasets: Iterable[Any] | None = None,
    reason: str = "",
    raise_on_refusal: bool = True,
    force: bool = False,
) -> PromotionResult:
    """Move ``name@alias`` to ``version`` if ``gate`` passes on ``data``.

    ``gate`` is a :class:`Gate`, a YAML file path or YAML text. When the model has a
    promotion policy (:func:`set_policy`), ``gate`` must be that gate unless ``force=True``;
    a forced promotion is marked as such in the history. The attempt is recorded either
    way. A refusal raises :class:`PromotionRefusedError` (its ``.result`` holds every
    check) unless ``raise_on_refusal=False``. In remote mode the server runs the gate and
    ``data`` names a dataset of its catalog (``"holdout:2"``).
    """
    if gate is not None and not isinstance(gate, Gate):
        gate = Gate.load(gate)
    remote = remote_registry()
    if remote is not None:
        if datasets:
            raise InvalidInputError(
                "in remote mode data= names the evaluation dataset itself; drop datasets="
            )
        result = remote.promote(
            name, version, alias, gate=gate, data=data, reason=reason, force=force
        )
        if not result.allowed and raise_on_refusal:
            raise PromotionRefusedError(result)
        return result
    result = _promote(
        workspace(),
        name,
        version,
        alias,
        gate=gate,
        data=data,
        reason=reason,
        dataset_artifact_ids=_dataset_artifact_ids(datasets),
        force=force,
    )
    if not result.allowed and raise_on_refusal:
        raise PromotionRefusedError(result)
    return result


def set_policy(name: str, gate: Gate | str | Path | None) -> None:
    """Require ``gate`` (a Gate, YAML file or YAML text) for every promotion of ``name``;
    ``None`` lifts the requirement."""
    check_name(name, what="model name")
    if gate is not None and not isinstance(gate, Gate):
        gate = Gate.load(gate)
    remote = remote_registry()
    if remote is not None:
        remote.set_policy(name, gate)
        return
    _set_policy(workspace(), name, gate)


def policy(name: str) -> Gate | None:
    """The gate every promotion of ``name`` must pass, or ``None``."""
    remote = remote_registry()
    return _policy(workspace(), name) if remote is None else remote.policy(name)


def rollback(name: str, alias: str = "champion", *, reason: str = "") -> AliasEvent:
    """Point ``name@alias`` back at the version it held before its latest promotion."""
    remote = remote_registry()
    if remote is not None:
        return remote.rollback(name, alias, reason=reason)
    return _registry().rollback(name, alias, reason=reason)


def evaluate(
    model: Any,
    data: Any,
    target: str,
    *,
    slice_by: str | Sequence[str] = (),
    run: Any = None,
    datasets: Iterable[Any] | None = None,
) -> EvaluationResult:
    """Evaluate a registered model (by reference) or a fitted one on labelled ``data``: a
    table, or a dataset of the catalog by reference (``"holdout:2"``).

    The result is stored as an artifact; with ``run`` its metrics are logged on the run.
    In remote mode the server evaluates: ``model`` is a registered model's reference and
    ``data`` names a labelled dataset of its catalog (``"holdout:2"``).
    """
    remote = remote_registry()
    if remote is not None:
        if not isinstance(model, str):
            raise InvalidInputError(
                "in remote mode the server evaluates a registered model: pass its reference "
                "(e.g. 'delay-model@challenger'), not a fitted model"
            )
        if not isinstance(data, str):
            raise InvalidInputError(
                "in remote mode data= names a labelled dataset of the server's catalog (e.g. "
                "'holdout:3'); add the table with lm.datasets.add first"
            )
        if datasets:
            raise InvalidInputError(
                "in remote mode data= names the evaluation dataset itself; drop datasets="
            )
        slices = [slice_by] if isinstance(slice_by, str) else list(slice_by)
        stored = remote.evaluate(model, data, target, slice_by=slices, run_id=_run_id(run))
        if run is not None and not isinstance(run, str):
            run.log_metrics(stored.run_metrics())
        return stored
    ws = workspace()
    dataset_artifact_ids = _dataset_artifact_ids(datasets)
    if isinstance(data, str):  # a dataset of the catalog, as in remote mode
        ds = Catalog(ws).get(data)
        data, dataset_artifact_ids = ds.to_polars(), [*dataset_artifact_ids, ds.artifact_id]
    model_artifact_id = None
    if isinstance(model, str):
        mv = Registry(ws).resolve(model)
        model_artifact_id = mv.artifact_id
        loaded = Registry(ws).load(mv.ref)
    elif isinstance(model, LoadedModel):
        loaded = model
    else:
        loaded = wrap(model)
    result = _evaluate(loaded, data, target, slice_by=slice_by)
    stored, _ = save_evaluation(
        ws,
        result,
        model_artifact_id=model_artifact_id,
        dataset_artifact_ids=dataset_artifact_ids,
        run_id=_run_id(run),
    )
    if run is not None and not isinstance(run, str):
        run.log_metrics(stored.run_metrics())
    return stored


def gate(
    *checks: Check,
    target: str | None = None,
    name: str = "gate",
    champion_alias: str | None = None,
) -> Gate:
    """``lm.models.gate(Threshold("roc_auc", min=0.7), SmokeTest(), target="delayed")``."""
    return Gate(tuple(checks), target=target, name=name, champion_alias=champion_alias)


def card(ref: str) -> str:
    """The Markdown model card of the version ``ref`` names."""
    remote = remote_registry()
    if remote is not None:
        return remote.card(ref)
    mv = _registry().resolve(ref)
    return _card.render_card(workspace(), mv.name, mv.version)
