"""data: a description per dataset version, dataset tags as a mapping, artifacts by kind

Revision ID: 0013
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0018"
branch_labels = None
depends_on = None

_datasets = sa.table("datasets", sa.column("id", sa.Integer()), sa.column("tags", sa.JSON()))


def upgrade() -> None:
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
    op.create_index("ix_artifacts_kind_created", "artifacts", ["kind", "created_at"])
    # Tags were a list of names; they become {name: ""}, the shape runs and models use.
    conn = op.get_bind()
    for row in conn.execute(sa.select(_datasets.c.id, _datasets.c.tags)).all():
        if isinstance(row.tags, list):
            tags = {str(t): "" for t in row.tags}
            conn.execute(_datasets.update().where(_datasets.c.id == row.id).values(tags=tags))


def downgrade() -> None:
    conn = op.get_bind()
    for row in conn.execute(sa.select(_datasets.c.id, _datasets.c.tags)).all():
        if isinstance(row.tags, dict):
            conn.execute(
                _datasets.update().where(_datasets.c.id == row.id).values(tags=list(row.tags))
            )
    op.drop_index("ix_artifacts_kind_created", table_name="artifacts")
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_column("description")
