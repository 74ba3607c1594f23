"""created by: who made each run, model version, alias move and dataset version

The token's name for writes through the team server ("anonymous" when it has no tokens),
the OS user for local writes; null for rows written before this revision.

Revision ID: 0019
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0017"
branch_labels = None
depends_on = None

TABLES = ("runs", "model_versions", "alias_events", "dataset_versions")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("created_by", sa.String(length=250), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("created_by")
