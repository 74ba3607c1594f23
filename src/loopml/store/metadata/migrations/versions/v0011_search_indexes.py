"""search indexes: covering indexes for run filters

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_runs_experiment", table_name="runs")
    op.create_index("ix_runs_experiment_id", "runs", ["experiment_id", "id"])
    op.drop_index("ix_latest_metrics_key_value", table_name="latest_metrics")
    op.create_index("ix_latest_metrics_key_value_run", "latest_metrics", ["key", "value", "run_id"])
    # PostgreSQL caps a B-tree entry at about 2.7 kB; params and tags may be longer.
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_params_key_value_run", "params", ["key", "value", "run_id"])
        op.create_index("ix_tags_key_value_run", "tags", ["key", "value", "run_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_tags_key_value_run", table_name="tags")
        op.drop_index("ix_params_key_value_run", table_name="params")
    op.drop_index("ix_latest_metrics_key_value_run", table_name="latest_metrics")
    op.create_index("ix_latest_metrics_key_value", "latest_metrics", ["key", "value"])
    op.drop_index("ix_runs_experiment_id", table_name="runs")
    op.create_index("ix_runs_experiment", "runs", ["experiment_id"])
