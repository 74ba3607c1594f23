"""Runs recorded elsewhere (another tracking tool), written whole in the caller's transaction.

An importer copies a run that has already ended: its own id, times, status, params, tags
and full metric histories. Everything goes in through one connection the caller holds, so
the run is either complete or absent, never half there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, insert, select

from loopml.core.errors import InvalidInputError
from loopml.store.metadata import tables as t
from loopml.store.metadata.tables import executions, latest_metrics, metric_chunks, runs
from loopml.tracking.store import FAILED, FINISHED, KILLED, _experiment_id

ENDED = (FINISHED, FAILED, KILLED)
# Points per stored chunk: a long history becomes several rows of bounded size.
CHUNK_POINTS = 100_000


@dataclass(frozen=True)
class Series:
    """One metric's points; ``timestamps`` in seconds since the epoch."""

    steps: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.steps) == len(self.timestamps) == len(self.values):
            raise InvalidInputError("a series needs as many steps and timestamps as values")


@dataclass(frozen=True)
class RecordedRun:
    id: str
    experiment: str
    name: str
    status: str
    start_time: float
    end_time: float | None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Series] = field(default_factory=dict)
    git_commit: str | None = None


def write_recorded_run(conn: Connection, run: RecordedRun) -> int:
    """Insert ``run`` with everything it holds; the caller's transaction commits it.

    Returns the id of the run's experiment (created if it is new)."""
    if run.status not in ENDED:
        raise InvalidInputError(f"a recorded run has ended as one of {ENDED}, not {run.status!r}")
    exp_id = _experiment_id(conn, run.experiment)
    conn.execute(
        insert(executions).values(
            id=run.id,
            kind="run",
            name=run.name,
            status=run.status,
            start_time=run.start_time,
            end_time=run.end_time,
            properties={},
        )
    )
    conn.execute(
        insert(runs).values(
            id=run.id,
            experiment_id=exp_id,
            git_commit=run.git_commit,
            git_dirty=None,
            environment_digest=None,
            heartbeat_at=run.end_time if run.end_time is not None else run.start_time,
        )
    )
    if run.params:
        conn.execute(
            insert(t.params),
            [{"run_id": run.id, "key": k, "value": v} for k, v in run.params.items()],
        )
    if run.tags:
        conn.execute(
            insert(t.tags), [{"run_id": run.id, "key": k, "value": v} for k, v in run.tags.items()]
        )
    chunks: list[dict[str, Any]] = []
    latest: list[dict[str, Any]] = []
    for key, series in run.metrics.items():
        if not len(series.values):
            continue
        steps = np.asarray(series.steps, dtype="<i8")
        stamps = np.asarray(series.timestamps, dtype="<f8")
        values = np.asarray(series.values, dtype="<f8")
        for lo in range(0, len(steps), CHUNK_POINTS):
            part = slice(lo, lo + CHUNK_POINTS)
            chunks.append(
                {
                    "run_id": run.id,
                    "key": key,
                    "count": len(steps[part]),
                    "min_step": int(steps[part].min()),
                    "max_step": int(steps[part].max()),
                    "steps": steps[part].tobytes(),
                    "timestamps": stamps[part].tobytes(),
                    "values": values[part].tobytes(),
                }
            )
        # The latest point as the metric writer keeps it: highest step, then latest time.
        last = int(np.lexsort((stamps, steps))[-1])
        latest.append(
            {
                "run_id": run.id,
                "key": key,
                "step": int(steps[last]),
                "timestamp": float(stamps[last]),
                "value": float(values[last]),
            }
        )
    if chunks:
        conn.execute(metric_chunks.insert(), chunks)
        conn.execute(latest_metrics.insert(), latest)
    return exp_id


def runs_by_tag(engine: Engine, key: str) -> dict[str, str]:
    """Tag value → run id for every run that carries tag ``key``."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.tags.c.value, t.tags.c.run_id).where(t.tags.c.key == key))
        return {value: run_id for value, run_id in rows}


def run_exists(conn: Connection, run_id: str) -> bool:
    found = conn.execute(select(executions.c.id).where(executions.c.id == run_id)).first()
    return found is not None
