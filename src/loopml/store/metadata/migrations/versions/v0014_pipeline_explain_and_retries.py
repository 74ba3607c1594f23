"""pipelines: decodable cache keys, why a step re-ran, trigger failures and backoff

Revision ID: 0014
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_steps") as batch:
        batch.add_column(sa.Column("key_parts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
    with op.batch_alter_table("pipeline_cache") as batch:
        batch.add_column(sa.Column("key_parts", sa.JSON(), nullable=True))
    with op.batch_alter_table("pipeline_schedules") as batch:
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("retry_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_schedules") as batch:
        batch.drop_column("last_error")
        batch.drop_column("retry_at")
        batch.drop_column("failures")
    with op.batch_alter_table("pipeline_cache") as batch:
        batch.drop_column("key_parts")
    with op.batch_alter_table("pipeline_steps") as batch:
        batch.drop_column("reason")
        batch.drop_column("key_parts")
