"""monitoring: failed requests counted per deployment, model, day, status and error

Revision ID: 0023
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0021"
branch_labels = None
depends_on = None

ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "monitor_errors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_id", ID, nullable=False),
        sa.Column("deployment", sa.String(length=250), nullable=False),
        sa.Column("model", sa.String(length=250), nullable=True),
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=100), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["artifacts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("monitor_errors", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitor_errors_deployment_bucket", ["deployment", "bucket"], unique=False
        )
        batch_op.create_index("ix_monitor_errors_model_bucket", ["model", "bucket"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("monitor_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_errors_model_bucket")
        batch_op.drop_index("ix_monitor_errors_deployment_bucket")
    op.drop_table("monitor_errors")
