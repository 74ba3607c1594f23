"""run heartbeats, promotion policies, forced promotions

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.Float(), nullable=True))
    with op.batch_alter_table("registered_models") as batch:
        batch.add_column(sa.Column("policy", sa.JSON(), nullable=True))
    with op.batch_alter_table("alias_events") as batch:
        batch.add_column(
            sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("alias_events") as batch:
        batch.drop_column("forced")
    with op.batch_alter_table("registered_models") as batch:
        batch.drop_column("policy")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
