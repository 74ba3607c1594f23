"""The HTTP API's wire format: Pydantic models, converted from domain objects here only.

Floats that JSON cannot hold (NaN, infinities) become null.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from loopml.data.dataset import Dataset, DatasetInfo
from loopml.pipelines.records import PipelineRun, StepRecord
from loopml.registry.model_registry import AliasEvent, ModelVersion, RegisteredModel
from loopml.store.lineage import ArtifactRecord, ExecutionRecord, LineageGraph
from loopml.tracking.records import MetricHistory, Run


def finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def finite_list(a: np.ndarray) -> list[float | None]:
    values = a.astype(np.float64)
    out: list[float | None] = values.tolist()
    if not np.isfinite(values).all():
        out = [v if math.isfinite(v) else None for v in values.tolist()]
    return out


def json_safe(x: Any) -> Any:
    """A deep copy of ``x`` with non-finite floats replaced by None."""
    if isinstance(x, float):
        return finite(x)
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong and, where there is one, what to do")
    type: str = Field(description="the error's class, e.g. NotFoundError")


# --- runs --------------------------------------------------------------------------------


class RunOut(BaseModel):
    id: str
    experiment: str
    name: str
    status: str
    start_time: float
    end_time: float | None
    duration: float | None
    params: dict[str, str]
    metrics: dict[str, float | None]
    tags: dict[str, str]
    git_commit: str | None
    git_dirty: bool | None
    environment_digest: str | None
    error: str | None
    created_by: str | None = Field(
        default=None, description="who made it: a token's name, 'anonymous', or an OS user"
    )

    @classmethod
    def of(cls, r: Run) -> RunOut:
        return cls(
            id=r.id,
            experiment=r.experiment,
            name=r.name,
            status=r.status,
            start_time=r.start_time,
            end_time=r.end_time,
            duration=r.duration,
            params=r.params,
            metrics={k: finite(v) for k, v in r.metrics.items()},
            tags=r.tags,
            git_commit=r.git_commit,
            git_dirty=r.git_dirty,
            environment_digest=r.environment_digest,
            error=r.error,
            created_by=r.created_by,
        )


class RunPageOut(BaseModel):
    runs: list[RunOut]
    total: int = Field(description="how many runs the filter matched in all")
    offset: int
    limit: int


class MetricHistoryOut(BaseModel):
    run_id: str
    key: str
    total_points: int
    downsampled: bool = Field(description="true when each point is the mean of a bucket")
    steps: list[int]
    timestamps: list[float | None]
    values: list[float | None]
    min: list[float | None] | None = None
    max: list[float | None] | None = None

    @classmethod
    def of(cls, h: MetricHistory) -> MetricHistoryOut:
        return cls(
            run_id=h.run_id,
            key=h.key,
            total_points=h.total_points,
            downsampled=h.downsampled,
            steps=h.steps.tolist(),
            timestamps=finite_list(h.timestamps),
            values=finite_list(h.values),
            min=None if h.min is None else finite_list(h.min),
            max=None if h.max is None else finite_list(h.max),
        )


class ArtifactOut(BaseModel):
    id: str
    digest: str
    kind: str
    name: str | None
    size: int
    created_at: float
    role: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, a: ArtifactRecord, role: str | None = None) -> ArtifactOut:
        return cls(
            id=a.id,
            digest=a.digest,
            kind=a.kind,
            name=a.name,
            size=a.size,
            created_at=a.created_at,
            role=role,
            properties=json_safe(a.properties),
        )


class TreeFileOut(BaseModel):
    path: str
    digest: str
    size: int


class RunArtifactsOut(BaseModel):
    inputs: list[ArtifactOut]
    outputs: list[ArtifactOut]


class EnvironmentOut(BaseModel):
    digest: str
    python_version: str
    platform: str
    packages: dict[str, str]


class WriteOut(BaseModel):
    ok: bool = True
    id: str | None = None


class EnvironmentIn(BaseModel):
    """What the client's process runs on; the server names it by the digest of this."""

    python_version: str = Field(max_length=100)
    platform: str = Field(max_length=500)
    packages: dict[str, str] = Field(default_factory=dict, max_length=20_000)


class StartRunIn(BaseModel):
    experiment: str = "default"
    name: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = Field(default=None, max_length=64)
    git_dirty: bool | None = Field(default=None, strict=True)
    environment: EnvironmentIn | None = None


class MetricPointIn(BaseModel):
    key: str
    value: float
    step: int = Field(default=0, ge=-(2**63), le=2**63 - 1)
    timestamp: float | None = Field(
        default=None, description="seconds since the epoch; the server's clock when null"
    )


class LogMetricsIn(BaseModel):
    metrics: list[MetricPointIn] = Field(max_length=100_000)


class LogBatchIn(BaseModel):
    """What a client queued for one run; an empty batch only says the client is alive."""

    metrics: list[MetricPointIn] = Field(default_factory=list, max_length=100_000)
    params: dict[str, str] = Field(default_factory=dict, max_length=1000)
    tags: dict[str, str] = Field(default_factory=dict, max_length=1000)


class EndRunIn(BaseModel):
    status: Literal["finished", "failed"] = "finished"
    error: str | None = Field(
        default=None, max_length=20_000, description="why it failed (a traceback)"
    )


# --- datasets ----------------------------------------------------------------------------


class DatasetInfoOut(BaseModel):
    name: str
    description: str
    owner: str | None
    tags: dict[str, str]
    column_descriptions: dict[str, str]
    created_at: float
    updated_at: float
    latest_version: int | None
    num_versions: int
    columns: list[str]

    @classmethod
    def of(cls, d: DatasetInfo) -> DatasetInfoOut:
        return cls(
            name=d.name,
            description=d.description,
            owner=d.owner,
            tags={str(k): str(v) for k, v in d.tags.items()},
            column_descriptions=d.column_descriptions,
            created_at=d.created_at,
            updated_at=d.updated_at,
            latest_version=d.latest_version,
            num_versions=d.num_versions,
            columns=list(d.columns),
        )


class DatasetVersionOut(BaseModel):
    name: str
    version: int
    digest: str
    num_rows: int
    num_columns: int
    created_at: float
    artifact_id: str
    schema_version: int | None
    description: str = Field(description="what this version holds, as given when it was added")
    columns: list[dict[str, str]]
    profile_digest: str | None = None
    created_by: str | None = Field(
        default=None, description="who made it: a token's name, 'anonymous', or an OS user"
    )

    @classmethod
    def of(cls, d: Dataset) -> DatasetVersionOut:
        return cls(
            name=d.name,
            version=d.version,
            digest=d.digest,
            num_rows=d.num_rows,
            num_columns=d.num_columns,
            created_at=d.created_at,
            artifact_id=d.artifact_id,
            schema_version=d.schema_version,
            profile_digest=d.profile_digest,
            description=d.description,
            created_by=d.created_by,
            columns=[
                {"name": str(c.get("name")), "dtype": str(c.get("dtype"))}
                for c in d.properties.get("columns", [])
            ],
        )


class DocumentOut(BaseModel):
    """A structured report (schema, profile, validation, drift) as its own JSON document."""

    document: dict[str, Any]


# --- registry ----------------------------------------------------------------------------


class ModelOut(BaseModel):
    name: str
    description: str
    tags: dict[str, str]
    created_at: float
    latest_version: int | None
    aliases: dict[str, int]

    @classmethod
    def of(cls, m: RegisteredModel) -> ModelOut:
        return cls(
            name=m.name,
            description=m.description,
            tags={k: str(v) for k, v in m.tags.items()},
            created_at=m.created_at,
            latest_version=m.latest_version,
            aliases=m.aliases,
        )


class ModelVersionOut(BaseModel):
    name: str
    version: int
    id: str
    digest: str
    artifact_id: str
    flavor: str
    signature: dict[str, Any]
    run_id: str | None
    dataset_artifact_ids: list[str]
    code_version: str | None
    description: str
    tags: dict[str, str]
    created_at: float
    aliases: list[str]
    created_by: str | None = Field(
        default=None, description="who made it: a token's name, 'anonymous', or an OS user"
    )

    @classmethod
    def of(cls, v: ModelVersion) -> ModelVersionOut:
        return cls(
            name=v.name,
            version=v.version,
            id=v.id,
            digest=v.digest,
            artifact_id=v.artifact_id,
            flavor=v.flavor,
            signature=json_safe(v.signature.to_dict()),
            run_id=v.run_id,
            dataset_artifact_ids=list(v.dataset_artifact_ids),
            code_version=v.code_version,
            description=v.description,
            tags=v.tags,
            created_at=v.created_at,
            aliases=list(v.aliases),
            created_by=v.created_by,
        )


class AliasEventOut(BaseModel):
    id: int
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    allowed: bool
    forced: bool = Field(
        description="true when a promotion policy's required gate was skipped by force"
    )
    reason: str
    gate_result: dict[str, Any] | None
    execution_id: str | None
    created_at: float
    created_by: str | None = Field(
        default=None, description="who made it: a token's name, 'anonymous', or an OS user"
    )

    @classmethod
    def of(cls, e: AliasEvent) -> AliasEventOut:
        return cls(
            id=e.id,
            alias=e.alias,
            action=e.action,
            from_version=e.from_version,
            to_version=e.to_version,
            allowed=e.allowed,
            forced=e.forced,
            reason=e.reason,
            gate_result=None if e.gate_result is None else json_safe(e.gate_result),
            execution_id=e.execution_id,
            created_at=e.created_at,
            created_by=e.created_by,
        )


class RegisterIn(BaseModel):
    """A model tree the client uploaded (``PUT /blobs/{digest}`` for each file and the
    manifest), recorded as the next version."""

    digest: str = Field(description="the model tree's digest (b3:...)", max_length=67)
    run_id: str | None = Field(default=None, max_length=64)
    dataset_artifact_ids: list[str] = Field(default_factory=list, max_length=1000)
    code_version: str | None = Field(default=None, max_length=100)
    description: str = Field(default="", max_length=20_000)
    tags: dict[str, str] = Field(default_factory=dict, max_length=1000)


class AddDatasetIn(BaseModel):
    """A table the client uploaded as one Parquet blob (``PUT /blobs/{digest}``), added as
    the next version of the dataset (or the existing one, for identical content)."""

    digest: str = Field(description="the Parquet file's digest (b3:...)", max_length=67)
    description: str | None = Field(default=None, max_length=20_000)
    owner: str | None = Field(default=None, max_length=250)
    tags: list[str] | dict[str, str] | None = Field(default=None, max_length=1000)
    column_descriptions: dict[str, str] | None = Field(default=None, max_length=10_000)
    schema_yaml: str | None = Field(
        default=None, max_length=5_000_000, description="a curated schema, as its YAML file"
    )


class AppendDatasetIn(BaseModel):
    """A batch the client uploaded as one Parquet blob, appended to the latest version."""

    digest: str = Field(description="the Parquet file's digest (b3:...)", max_length=67)
    description: str | None = Field(default=None, max_length=20_000)


class UpdateDatasetIn(BaseModel):
    """Edits to a catalog entry; what is left out stays as it is."""

    description: str | None = Field(default=None, max_length=20_000)
    owner: str | None = Field(default=None, max_length=250)
    tags: list[str] | dict[str, str] | None = Field(default=None, max_length=1000)
    column_descriptions: dict[str, str] | None = Field(default=None, max_length=10_000)


class SaveSchemaIn(BaseModel):
    yaml: str = Field(description="the schema as its YAML file holds it", max_length=5_000_000)
    note: str | None = Field(default=None, max_length=2000)


class SchemaVersionOut(BaseModel):
    version: int
    digest: str = Field(description="the YAML document's digest, downloadable at /blobs/")
    created_at: float
    note: str | None


class VerifyReportOut(BaseModel):
    versions: int = Field(description="dataset versions walked")
    blobs: int
    bytes: int
    problems: list[str]
    ok: bool


class RunArtifactIn(BaseModel):
    """An uploaded file (a blob) or folder (a tree manifest) recorded as a run's output."""

    digest: str = Field(max_length=67)
    kind: Literal["file", "tree"]
    name: str = Field(max_length=250, description="the artifact's name, e.g. notes.txt")


class PromoteIn(BaseModel):
    version: int = Field(ge=1, le=2**31 - 1)
    reason: str = Field(default="", max_length=2000)
    gate: dict[str, Any] | None = Field(
        default=None, description="a gate definition, as its YAML file holds it"
    )
    data: str | None = Field(
        default=None,
        max_length=300,
        description="the labelled evaluation data: a dataset of the catalog, e.g. flights:3",
    )
    force: bool = Field(default=False, strict=True)


class PromotionOut(BaseModel):
    allowed: bool
    reason: str
    from_version: int | None
    event: AliasEventOut


class RollbackIn(BaseModel):
    reason: str = Field(default="", max_length=2000)


class PolicyIn(BaseModel):
    gate: dict[str, Any] | None = Field(
        description="the gate every promotion must pass, as its YAML file holds it; null "
        "lifts the requirement"
    )


class PolicyOut(BaseModel):
    gate: dict[str, Any] | None = Field(description="the required gate, or null for none")


class EvaluateIn(BaseModel):
    """Score a registered model on a labelled dataset of the catalog, on the server."""

    model: str = Field(max_length=300, description="name@alias, name:3 or name")
    data: str = Field(max_length=300, description="a dataset of the catalog, e.g. holdout:2")
    target: str = Field(max_length=1000, description="the label column of data")
    slice_by: list[str] = Field(default_factory=list, max_length=20)
    run_id: str | None = Field(
        default=None, max_length=64, description="the run the evaluation is recorded under"
    )


class EvaluationOut(BaseModel):
    evaluation: dict[str, Any] = Field(description="the stored evaluation record")
    digest: str
    artifact_id: str


class BlobsIn(BaseModel):
    digests: list[str] = Field(max_length=100_000)


class BlobsOut(BaseModel):
    missing: list[str]
    max_bytes: int | None = Field(
        default=None, description="the largest blob this server takes in one upload"
    )


class BlobOut(BaseModel):
    digest: str
    size: int


class CardOut(BaseModel):
    markdown: str


# --- lineage -----------------------------------------------------------------------------


class NodeOut(BaseModel):
    id: str
    node: Literal["artifact", "execution"]
    kind: str
    name: str | None
    status: str | None = None
    digest: str | None = None
    time: float
    # The rest of the node's record, so that a client can rebuild the graph it came from.
    size: int | None = None
    end_time: float | None = None
    error: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class EdgeOut(BaseModel):
    source: str
    target: str
    type: str
    role: str


class LineageOut(BaseModel):
    root: str
    direction: str
    nodes: list[NodeOut]
    edges: list[EdgeOut]

    @classmethod
    def of(cls, g: LineageGraph, direction: str) -> LineageOut:
        nodes = [
            NodeOut(
                id=a.id,
                node="artifact",
                kind=a.kind,
                name=a.name,
                digest=a.digest,
                time=a.created_at,
                size=a.size,
                properties=json_safe(a.properties),
            )
            for a in g.artifacts.values()
        ] + [execution_node(e) for e in g.executions.values()]
        nodes.sort(key=lambda n: n.time)
        return cls(
            root=g.root,
            direction=direction,
            nodes=nodes,
            edges=[
                EdgeOut(source=e.source, target=e.target, type=e.type, role=e.role) for e in g.edges
            ],
        )


def execution_node(e: ExecutionRecord) -> NodeOut:
    return NodeOut(
        id=e.id,
        node="execution",
        kind=e.kind,
        name=e.name,
        status=e.status,
        time=e.start_time,
        end_time=e.end_time,
        error=e.error,
        properties=json_safe(e.properties),
    )


# --- pipelines ---------------------------------------------------------------------------


class StepOut(BaseModel):
    node: str
    step: str
    position: int
    status: str
    cache_hit: bool
    attempts: int
    run_id: str | None
    cache_key: str | None
    output_kind: str | None
    output_artifact_id: str | None
    start_time: float | None
    end_time: float | None
    duration: float | None
    error: str | None
    deps: dict[str, str]
    reason: str | None = Field(
        description="for a step that ran, why the cache did not answer it (null for a hit)"
    )
    key_parts: dict[str, Any] | None = Field(
        description="the cache key decoded: step, code, output kind, params and input digests"
    )

    @classmethod
    def of(cls, s: StepRecord) -> StepOut:
        return cls(
            node=s.node,
            step=s.step,
            position=s.position,
            status=s.status,
            cache_hit=s.status in ("cached", "reused"),
            attempts=s.attempts,
            run_id=s.run_id,
            cache_key=s.cache_key,
            output_kind=s.output_kind,
            output_artifact_id=s.output_artifact_id,
            start_time=s.start_time,
            end_time=s.end_time,
            duration=s.duration,
            error=s.error,
            deps=s.deps,
            reason=s.reason,
            key_parts=None if s.key_parts is None else json_safe(s.key_parts),
        )


class PipelineRunOut(BaseModel):
    id: str
    pipeline: str
    ref: str | None
    params: dict[str, Any]
    executor: str
    status: str
    trigger: str
    resumed_from: str | None
    start_time: float
    end_time: float | None
    duration: float | None
    error: str | None
    cache_hits: int
    steps: list[StepOut]

    @classmethod
    def of(cls, p: PipelineRun) -> PipelineRunOut:
        steps = [StepOut.of(s) for s in sorted(p.steps.values(), key=lambda s: s.position)]
        return cls(
            id=p.id,
            pipeline=p.pipeline,
            ref=p.ref,
            params=json_safe(p.params),
            executor=p.executor,
            status=p.status,
            trigger=p.trigger,
            resumed_from=p.resumed_from,
            start_time=p.start_time,
            end_time=p.end_time,
            duration=p.duration,
            error=p.error,
            cache_hits=sum(s.cache_hit for s in steps),
            steps=steps,
        )


# --- monitoring --------------------------------------------------------------------------


class MonitoringStatusOut(BaseModel):
    available: bool
    detail: str
    events: list[NodeOut]
    alerts: list[dict[str, Any]] = Field(
        default_factory=list, description="stored alerts, newest first, with window and values"
    )


class MonitoringHistoryOut(BaseModel):
    name: str
    window: str
    rows: list[dict[str, Any]]


def nodes_of(records: Iterable[ExecutionRecord]) -> list[NodeOut]:
    return [execution_node(e) for e in records]
