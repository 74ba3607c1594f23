"""monitoring: profiled log sources, day segments, window results, alerts

Revision ID: 0016
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.String(length=32)
DIGEST = sa.String(length=67)


def upgrade() -> None:
    op.create_table(
        "monitor_sources",
        sa.Column("artifact_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("deployment", sa.String(length=250), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("matched", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("processed_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"]),
        sa.PrimaryKeyConstraint("artifact_id"),
    )
    op.create_table(
        "monitor_segments",
        sa.Column("id", ID, nullable=False),
        sa.Column("source_id", ID, nullable=False),
        sa.Column("deployment", sa.String(length=250), nullable=False),
        sa.Column("model", sa.String(length=250), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("first_time", sa.Float(), nullable=False),
        sa.Column("last_time", sa.Float(), nullable=False),
        sa.Column("summary_digest", DIGEST, nullable=False),
        sa.Column("scores_digest", DIGEST, nullable=False),
        sa.Column("labels_digest", DIGEST, nullable=True),
        sa.Column("labelled_rows", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["artifacts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("monitor_segments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitor_segments_deployment_bucket", ["deployment", "bucket"], unique=False
        )
        batch_op.create_index("ix_monitor_segments_model_bucket", ["model", "bucket"], unique=False)
    op.create_table(
        "monitor_results",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.Column("fingerprint", DIGEST, nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("labelled_rows", sa.BigInteger(), nullable=False),
        sa.Column("drift_score", sa.Float(), nullable=True),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("execution_id", ID, nullable=True),
        sa.Column("computed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("monitor_results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitor_results_name_window",
            ["name", "window_start", "window_end"],
            unique=False,
        )
    op.create_table(
        "monitor_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("result_id", ID, nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("rule", sa.String(length=250), nullable=False),
        sa.Column("metric", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.Column("sinks", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["result_id"], ["monitor_results.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("monitor_alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitor_alerts_name_created", ["name", "created_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("monitor_alerts")
    op.drop_table("monitor_results")
    op.drop_table("monitor_segments")
    op.drop_table("monitor_sources")
