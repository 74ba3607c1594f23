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
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
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
    # Last sign of life from the recording process; a running run whose heartbeat is stale
    # is shown as killed.
    Column("heartbeat_at", Float, nullable=True),
    # Who started it (0019): a token's name through the server, else the OS user.
    Column("created_by", String(250), nullable=True),
    # With the id in the index, a search probes it for (experiment, id) without reading
    # the table.
    Index("ix_runs_experiment_id", "experiment_id", "id"),
)

# A filter on a param or tag reads (key, value, run id) straight from the *_key_value_run
# index. SQLite only: PostgreSQL caps a B-tree entry at about 2.7 kB while a param may hold
# 6,000 characters, and its planner, which keeps statistics, does well with the key index.
SQLITE_ONLY_INDEXES = frozenset({"ix_params_key_value_run", "ix_tags_key_value_run"})

params = Table(
    "params",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_params_key", "key"),
    Index("ix_params_key_value_run", "key", "value", "run_id").ddl_if(dialect="sqlite"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_tags_key", "key"),
    Index("ix_tags_key_value_run", "key", "value", "run_id").ddl_if(dialect="sqlite"),
)

# The full time series, stored as packed column chunks: one row per (run, key) per
# flushed batch, holding little-endian int64 steps and float64 timestamps and values.
# A row per point costs a B-tree insert and SQLAlchemy parameter handling per point;
# a chunk costs one of each per batch (see bench/tracking).
metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ID, nullable=False),
    Column("key", String(250), nullable=False),
    Column("count", Integer, nullable=False),
    Column("min_step", BigInteger, nullable=False),
    Column("max_step", BigInteger, nullable=False),
    Column("steps", LargeBinary, nullable=False),
    Column("timestamps", LargeBinary, nullable=False),
    Column("values", LargeBinary, nullable=False),
    Index("ix_metric_chunks_run_key", "run_id", "key", "id"),
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
    Index("ix_latest_metrics_key_value_run", "key", "value", "run_id"),
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
    # Retention (``loopml gc``) reads the oldest artifacts of a kind (0013).
    Index("ix_artifacts_kind_created", "kind", "created_at"),
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
    Column("tags", JSON, nullable=False),  # {name: value}, as on runs and models (0013)
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
    # What this version holds, given when it was added (0013); the catalog entry's own
    # description is in ``datasets``.
    Column("description", Text, nullable=True),
    # Who added it (0019): a token's name through the server, else the OS user.
    Column("created_by", String(250), nullable=True),
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
    # The gate every promotion of this model must pass (a Gate as a mapping), or none.
    Column("policy", JSON, nullable=True),
    # The highest version number it ever had: a deleted version's number is not reused.
    Column("last_version", Integer, nullable=True),
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
    # Who registered it (0019): a token's name through the server, else the OS user.
    Column("created_by", String(250), nullable=True),
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
    # A promotion that skipped the model's policy gate with force=True.
    Column("forced", Boolean, nullable=False, server_default=false()),
    # Who asked for the move (0019): a token's name through the server, else the OS user.
    Column("created_by", String(250), nullable=True),
    Index("ix_alias_events_model_alias", "model_id", "alias", "created_at"),
)

# --- pipelines ---------------------------------------------------------------------------

# One row a pipeline run; ``id`` is the pipeline run's own tracking run. ``ref`` is the
# "module:attribute" the pipeline was imported from, so resume and the scheduler can
# rebuild it; ``graph`` is the DAG as built (nodes, steps, dependencies) for ``show``.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", ID, ForeignKey("executions.id"), primary_key=True),
    Column("pipeline", String(250), nullable=False),
    Column("ref", String(500), nullable=True),
    Column("params", JSON, nullable=False),
    Column("graph", JSON, nullable=False),
    Column("executor", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("trigger", String(250), nullable=False),
    Column("resumed_from", ID, nullable=True),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_pipeline_runs_pipeline_start", "pipeline", "start_time"),
)

# One row a node of a pipeline run: how it ended (executed, cached, reused, failed,
# skipped), its tracking run, its cache key and where its output is.
pipeline_steps = Table(
    "pipeline_steps",
    metadata,
    Column("pipeline_run_id", ID, ForeignKey("pipeline_runs.id"), primary_key=True),
    Column("node", String(250), primary_key=True),
    Column("step", String(250), nullable=False),
    Column("position", Integer, nullable=False),
    Column("run_id", ID, ForeignKey("executions.id"), nullable=True),
    Column("status", String(20), nullable=False),
    Column("code_version", String(67), nullable=False),
    Column("cache_key", String(67), nullable=True),
    Column("output_kind", String(20), nullable=True),
    Column("output_digest", String(67), nullable=True),
    Column("output_artifact_id", ID, ForeignKey("artifacts.id"), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("start_time", Float, nullable=True),
    Column("end_time", Float, nullable=True),
    Column("error", Text, nullable=True),
    # The decoded cache key (step, code, kind, params, inputs) and why the step executed
    # rather than coming from the cache ("param depth 6 -> 8", "--no-cache").
    Column("key_parts", JSON, nullable=True),
    Column("reason", Text, nullable=True),
)

# The step cache: key -> output. Only metadata; the outputs themselves are artifacts, and
# an entry whose artifact is gone or corrupted is ignored and overwritten (Hamilton-style).
pipeline_cache = Table(
    "pipeline_cache",
    metadata,
    Column("key", String(67), primary_key=True),
    Column("step", String(250), nullable=False),
    Column("code_version", String(67), nullable=False),
    Column("output_kind", String(20), nullable=False),
    Column("output_digest", String(67), nullable=False),
    Column("output_artifact_id", ID, ForeignKey("artifacts.id"), nullable=False),
    Column("execution_id", ID, ForeignKey("executions.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("key_parts", JSON, nullable=True),
)

# Cron schedules and triggers (a new dataset version, a named event). ``cursor`` is the
# last dataset version or event id acted on; ``next_run`` the next cron time. Claims are
# conditional updates on these, so two schedulers never fire the same occurrence twice.
pipeline_schedules = Table(
    "pipeline_schedules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False, unique=True),
    Column("pipeline_ref", String(500), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("spec", String(250), nullable=False),
    Column("param", String(250), nullable=True),
    Column("params", JSON, nullable=False),
    Column("executor", String(20), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("next_run", Float, nullable=True),
    Column("cursor", BigInteger, nullable=True),
    Column("last_run_id", ID, nullable=True),
    Column("created_at", Float, nullable=False),
    # A trigger that failed is retried (at least once): how often in a row, when next.
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("retry_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
)

pipeline_events = Table(
    "pipeline_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_pipeline_events_name_id", "name", "id"),
)

# --- monitoring ----------------------------------------------------------------------------

# Prediction-log and feedback artifacts the monitor has read. A log file is read once:
# its rows become segments below and the file is never opened again. A feedback file whose
# labels matched no logged row yet stays ``pending`` and is joined against new segments.
monitor_sources = Table(
    "monitor_sources",
    metadata,
    Column("artifact_id", ID, ForeignKey("artifacts.id"), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("deployment", String(250), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("matched", BigInteger, nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("processed_at", Float, nullable=False),
)

# The rows of one log file that fall in one UTC day (by event time, else answer time), for
# one model version: mergeable profiles of inputs and outputs, validation counts, and a
# compact blob of (request_id, row, prediction, proba) that labels are joined against.
monitor_segments = Table(
    "monitor_segments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("source_id", ID, ForeignKey("artifacts.id"), nullable=False),
    Column("deployment", String(250), nullable=False),
    Column("model", String(250), nullable=False),
    Column("version", Integer, nullable=False),
    Column("bucket", Float, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("first_time", Float, nullable=False),
    Column("last_time", Float, nullable=False),
    Column("summary_digest", String(67), nullable=False),
    Column("scores_digest", String(67), nullable=False),
    Column("labels_digest", String(67), nullable=True),
    Column("labelled_rows", BigInteger, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_monitor_segments_deployment_bucket", "deployment", "bucket"),
    Index("ix_monitor_segments_model_bucket", "model", "bucket"),
)

# The segments a still-pending feedback file has been joined against. A pending file is
# joined again against every segment of its deployment not listed here, at every refresh,
# whichever monitor created the segment: so labels whose rows were being profiled by
# another monitor while their file was first read are matched on a later join, never
# left pending. Rows go when the file has matched all its labels.
monitor_label_joins = Table(
    "monitor_label_joins",
    metadata,
    Column("feedback_id", ID, ForeignKey("artifacts.id"), primary_key=True),
    Column("segment_id", ID, ForeignKey("monitor_segments.id"), primary_key=True),
    Column("matched", BigInteger, nullable=False),
)

# Requests answered with an error, counted per error file, deployment, model (null when
# the request failed before a model was chosen), UTC day, status and error class.
monitor_errors = Table(
    "monitor_errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", ID, ForeignKey("artifacts.id"), nullable=False),
    Column("deployment", String(250), nullable=False),
    Column("model", String(250), nullable=True),
    Column("bucket", Float, nullable=False),
    Column("status", Integer, nullable=False),
    Column("error", String(100), nullable=False),
    Column("count", BigInteger, nullable=False),
    Index("ix_monitor_errors_deployment_bucket", "deployment", "bucket"),
    Index("ix_monitor_errors_model_bucket", "model", "bucket"),
)

# One computed window (a check, or a row of a history): its figures and a fingerprint of
# the segments (and their label revisions) it was computed from, so an unchanged window
# is read back instead of recomputed.
monitor_results = Table(
    "monitor_results",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(250), nullable=False),
    Column("version", Integer, nullable=True),
    Column("window_start", Float, nullable=False),
    Column("window_end", Float, nullable=False),
    Column("fingerprint", String(67), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("labelled_rows", BigInteger, nullable=False),
    Column("drift_score", Float, nullable=True),
    Column("figures", JSON, nullable=False),
    Column("execution_id", ID, nullable=True),
    Column("computed_at", Float, nullable=False),
    Index("ix_monitor_results_name_window", "name", "window_start", "window_end"),
)

# Every alert raised: the rule, the value against its limit, the window, where it was sent.
monitor_alerts = Table(
    "monitor_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("result_id", ID, ForeignKey("monitor_results.id"), nullable=False),
    Column("name", String(250), nullable=False),
    Column("rule", String(250), nullable=False),
    Column("metric", String(250), nullable=False),
    Column("value", Float, nullable=True),
    Column("threshold", Float, nullable=False),
    Column("window_start", Float, nullable=False),
    Column("window_end", Float, nullable=False),
    Column("sinks", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_monitor_alerts_name_created", "name", "created_at"),
)

# --- team server -------------------------------------------------------------------------

# Bearer tokens of ``loopml server``. Only a SHA-256 of each token is kept: tokens are 256
# random bits, so a slow password hash would add nothing but latency to every request.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False, unique=True),
    Column("scope", String(10), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
)

# Every write request the server accepted or refused after authentication: who did what.
api_writes = Table(
    "api_writes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_name", String(250), nullable=True),
    Column("method", String(10), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("status", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_api_writes_created", "created_at"),
)

# --- the retraining loop -------------------------------------------------------------------

# One row a loop: the model it looks after and its current state (phase, candidate, the
# champion it replaced, last retrain), updated by each tick under a version check so two
# tickers never act on the same state twice. Times in ``state`` are event times.
loops = Table(
    "loops",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("model", String(250), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("state", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Who ticks the loop now ("pid 123 on host (token)") and until when (wall clock): a
    # holder renews it while it runs, and a dead holder's lease runs out.
    Column("lease_holder", String(250), nullable=True),
    Column("lease_expires", Float, nullable=True),
)

# Every decision a loop took (trigger, retrain, gate, canary verdict, promotion, rollback,
# hold) with its reasons. ``at`` is the loop's clock (event time in a replay),
# ``created_at`` the wall time it was recorded; each is also an execution in the lineage.
loop_decisions = Table(
    "loop_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("loop", String(250), ForeignKey("loops.name"), nullable=False),
    Column("tick", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("reasons", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("execution_id", ID, ForeignKey("executions.id"), nullable=True),
    Column("at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_loop_decisions_loop_id", "loop", "id"),
)
