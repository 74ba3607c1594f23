"""The metadata schema. Alembic migrations under ``migrations/`` create exactly this.

Times are float seconds since the epoch (UTC). Ids are uuid4 hex strings, shared by
executions and artifacts so that lineage edges can point at either.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

ID = String(32)

experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

# Every recorded execution: runs, pipeline steps, evaluations, promotions, monitor checks.
executions = Table(
    "executions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("name", String(250), nullable=True),
    Column("status", String(20), nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("properties", JSON, nullable=False),
    Index("ix_executions_kind_start", "kind", "start_time"),
)

environments = Table(
    "environments",
    metadata,
    Column("digest", String(67), primary_key=True),
    Column("python_version", String(40), nullable=False),
    Column("platform", String(120), nullable=False),
    Column("packages", JSON, nullable=False),
)

# A run is an execution of kind "run"; this table holds what only runs have.
runs = Table(
    "runs",
    metadata,
    Column("id", ID, ForeignKey("executions.id"), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("git_commit", String(64), nullable=True),
    Column("git_dirty", Boolean, nullable=True),
    Column("environment_digest", String(67), ForeignKey("environments.digest"), nullable=True),
    Index("ix_runs_experiment", "experiment_id"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

# The full time series. No primary key: rows are append-only and read by (run, key, step).
metrics = Table(
    "metrics",
    metadata,
    Column("run_id", ID, nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_metrics_run_key_step", "run_id", "key", "step"),
)

# One row per (run, key): the value at the highest step, kept current by every flush so
# that searching and sorting runs by a metric never scans the time series.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_latest_metrics_key_value", "key", "value"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("digest", String(67), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("name", String(500), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("properties", JSON, nullable=False),
    Index("ix_artifacts_digest", "digest"),
)

# Lineage edges: an artifact is an input to, or an output of, an execution.
events = Table(
    "events",
    metadata,
    Column("execution_id", ID, ForeignKey("executions.id"), nullable=False),
    Column("artifact_id", ID, ForeignKey("artifacts.id"), nullable=False),
    Column("type", String(10), nullable=False),
    Column("role", String(250), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("execution_id", "artifact_id", "type", "role", name="uq_events_edge"),
    Index("ix_events_artifact", "artifact_id"),
)

# --- data catalog ------------------------------------------------------------------------

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("owner", String(250), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("column_descriptions", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# A version is immutable. ``digest`` is the tree of its Parquet files; ``artifact_id`` is
# the lineage node that runs and pipeline steps link to.
dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(67), nullable=False),
    Column("artifact_id", ID, ForeignKey("artifacts.id"), nullable=False),
    Column("profile_digest", String(67), nullable=True),
    Column("schema_version", Integer, nullable=True),
    Column("num_rows", BigInteger, nullable=False),
    Column("num_columns", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("properties", JSON, nullable=False),
    UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_version"),
    Index("ix_dataset_versions_digest", "digest"),
)

# Curated schemas, versioned per dataset; the document itself is an artifact (YAML).
dataset_schemas = Table(
    "dataset_schemas",
    metadata,
    Column("dataset_id", Integer, ForeignKey("datasets.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(67), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("note", Text, nullable=True),
)

# --- model registry ----------------------------------------------------------------------

registered_models = Table(
    "registered_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(67), nullable=False),
    Column("artifact_id", ID, ForeignKey("artifacts.id"), nullable=False),
    Column("flavor", String(40), nullable=False),
    Column("signature", JSON, nullable=False),
    Column("run_id", ID, nullable=True),
    Column("description", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id"), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Every attempt to move an alias, allowed or refused: the audit trail of production.
alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("action", String(20), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("allowed", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("gate_result", JSON, nullable=True),
    Column("execution_id", ID, ForeignKey("executions.id"), nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_alias_events_model_alias", "model_id", "alias", "created_at"),
)
