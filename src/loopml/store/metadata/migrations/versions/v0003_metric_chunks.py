"""metric series as packed chunks; key indexes on params and tags

Revision ID: 0003
Revises: 0002

Existing points are carried over: each (run, key) series becomes one chunk.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    chunks = op.create_table(
        "metric_chunks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("min_step", sa.BigInteger(), nullable=False),
        sa.Column("max_step", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.LargeBinary(), nullable=False),
        sa.Column("timestamps", sa.LargeBinary(), nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_metric_chunks_run_key", "metric_chunks", ["run_id", "key", "id"])
    conn = op.get_bind()
    series = conn.execute(sa.text("SELECT DISTINCT run_id, key FROM metrics")).all()
    for run_id, key in series:
        rows = conn.execute(
            sa.text(
                "SELECT step, timestamp, value FROM metrics WHERE run_id = :r AND key = :k "
                "ORDER BY step, timestamp"
            ),
            {"r": run_id, "k": key},
        ).all()
        data = np.array(rows, dtype=np.float64).reshape(-1, 3)
        steps = np.array([r[0] for r in rows], dtype="<i8")
        conn.execute(
            chunks.insert().values(
                run_id=run_id,
                key=key,
                count=len(rows),
                min_step=int(steps.min()),
                max_step=int(steps.max()),
                steps=steps.tobytes(),
                timestamps=data[:, 1].astype("<f8").tobytes(),
                values=data[:, 2].astype("<f8").tobytes(),
            )
        )
    op.drop_index("ix_metrics_run_key_step", table_name="metrics")
    op.drop_table("metrics")
    op.create_index("ix_params_key", "params", ["key"])
    op.create_index("ix_tags_key", "tags", ["key"])


def downgrade() -> None:
    op.drop_index("ix_tags_key", table_name="tags")
    op.drop_index("ix_params_key", table_name="params")
    metrics = op.create_table(
        "metrics",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_metrics_run_key_step", "metrics", ["run_id", "key", "step"])
    conn = op.get_bind()
    for run_id, key, steps, stamps, values in conn.execute(
        sa.text('SELECT run_id, key, steps, timestamps, "values" FROM metric_chunks')
    ):
        rows = zip(
            np.frombuffer(steps, "<i8").tolist(),
            np.frombuffer(stamps, "<f8").tolist(),
            np.frombuffer(values, "<f8").tolist(),
            strict=True,
        )
        conn.execute(
            metrics.insert(),
            [
                {"run_id": run_id, "key": key, "step": s, "timestamp": t, "value": v}
                for s, t, v in rows
            ],
        )
    op.drop_index("ix_metric_chunks_run_key", table_name="metric_chunks")
    op.drop_table("metric_chunks")
