"""monitoring: which segments each pending feedback file was joined against

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "monitor_label_joins",
        sa.Column("feedback_id", ID, nullable=False),
        sa.Column("segment_id", ID, nullable=False),
        sa.Column("matched", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["feedback_id"], ["artifacts.id"]),
        sa.ForeignKeyConstraint(["segment_id"], ["monitor_segments.id"]),
        sa.PrimaryKeyConstraint("feedback_id", "segment_id"),
    )
    # Monitors before this joined a pending file against the segments that existed then
    # (as far as they knew): record that, so those joins are not repeated.
    op.execute(
        "INSERT INTO monitor_label_joins (feedback_id, segment_id, matched) "
        "SELECT s.artifact_id, g.id, 0 FROM monitor_sources s "
        "JOIN monitor_segments g ON g.deployment = s.deployment "
        "WHERE s.kind = 'feedback' AND s.pending"
    )


def downgrade() -> None:
    op.drop_table("monitor_label_joins")
