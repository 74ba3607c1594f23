"""loop lease: one process at a time ticks a loop; the lease expires if its holder dies

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loops", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_holder", sa.String(length=250), nullable=True))
        batch_op.add_column(sa.Column("lease_expires", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("loops", schema=None) as batch_op:
        batch_op.drop_column("lease_expires")
        batch_op.drop_column("lease_holder")
