"""retraining loop: loop state and every decision with its reasons

Revision ID: 0017
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0013"
branch_labels = None
depends_on = None

ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "loops",
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("model", sa.String(length=250), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "loop_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("loop", sa.String(length=250), nullable=False),
        sa.Column("tick", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("execution_id", ID, nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["loop"], ["loops.name"]),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("loop_decisions", schema=None) as batch_op:
        batch_op.create_index("ix_loop_decisions_loop_id", ["loop", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("loop_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_loop_decisions_loop_id")
    op.drop_table("loop_decisions")
    op.drop_table("loops")
