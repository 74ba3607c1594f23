"""pipelines: runs, steps, cache, schedules, events

Revision ID: 0010
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("pipeline", sa.String(length=250), nullable=False),
        sa.Column("ref", sa.String(length=500), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("graph", sa.JSON(), nullable=False),
        sa.Column("executor", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=250), nullable=False),
        sa.Column("resumed_from", ID, nullable=True),
        sa.Column("start_time", sa.Float(), nullable=False),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["id"], ["executions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pipeline_runs_pipeline_start", ["pipeline", "start_time"], unique=False
        )

    op.create_table(
        "pipeline_steps",
        sa.Column("pipeline_run_id", ID, nullable=False),
        sa.Column("node", sa.String(length=250), nullable=False),
        sa.Column("step", sa.String(length=250), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("code_version", sa.String(length=67), nullable=False),
        sa.Column("cache_key", sa.String(length=67), nullable=True),
        sa.Column("output_kind", sa.String(length=20), nullable=True),
        sa.Column("output_digest", sa.String(length=67), nullable=True),
        sa.Column("output_artifact_id", ID, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["output_artifact_id"], ["artifacts.id"]),
        sa.ForeignKeyConstraint(["pipeline_run_id"], ["pipeline_runs.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["executions.id"]),
        sa.PrimaryKeyConstraint("pipeline_run_id", "node"),
    )

    op.create_table(
        "pipeline_cache",
        sa.Column("key", sa.String(length=67), nullable=False),
        sa.Column("step", sa.String(length=250), nullable=False),
        sa.Column("code_version", sa.String(length=67), nullable=False),
        sa.Column("output_kind", sa.String(length=20), nullable=False),
        sa.Column("output_digest", sa.String(length=67), nullable=False),
        sa.Column("output_artifact_id", ID, nullable=False),
        sa.Column("execution_id", ID, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"]),
        sa.ForeignKeyConstraint(["output_artifact_id"], ["artifacts.id"]),
        sa.PrimaryKeyConstraint("key"),
    )

    op.create_table(
        "pipeline_schedules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("pipeline_ref", sa.String(length=500), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("spec", sa.String(length=250), nullable=False),
        sa.Column("param", sa.String(length=250), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("executor", sa.String(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run", sa.Float(), nullable=True),
        sa.Column("cursor", sa.BigInteger(), nullable=True),
        sa.Column("last_run_id", ID, nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )

    op.create_table(
        "pipeline_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pipeline_events", schema=None) as batch_op:
        batch_op.create_index("ix_pipeline_events_name_id", ["name", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pipeline_events", schema=None) as batch_op:
        batch_op.drop_index("ix_pipeline_events_name_id")
    op.drop_table("pipeline_events")
    op.drop_table("pipeline_schedules")
    op.drop_table("pipeline_cache")
    op.drop_table("pipeline_steps")
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_pipeline_runs_pipeline_start")
    op.drop_table("pipeline_runs")
