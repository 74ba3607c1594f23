"""last version: the highest version number a registered model ever had

Deleting a model's newest version must not free its number for the next registration: a
number names one model for good (MLflow's registry never reuses one either).

Revision ID: 0021
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_version", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registered_models", schema=None) as batch_op:
        batch_op.drop_column("last_version")
