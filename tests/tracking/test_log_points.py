"""Tracker.log_points: a server's write of a client's points, checked and written at once
in one transaction with the check that the run takes writes, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from loopml.core import clock
from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.store.metadata.tables import metric_chunks, runs
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


@pytest.fixture
def tracker(any_workspace: Workspace) -> Iterator[Tracker]:
    t = Tracker(any_workspace)
    yield t
    t.close()


def _chunks(ws: Workspace, run_id: str) -> int:
    with ws.engine.connect() as conn:
        return len(
            conn.execute(select(metric_chunks.c.id).where(metric_chunks.c.run_id == run_id)).all()
        )


def test_points_are_written_at_once_and_read_back(tracker: Tracker) -> None:
    run = tracker.start_run("flights", capture_environment=False)
    tracker.log_points(
        run.id, [("loss", 0.5, 1, 100.0), ("loss", 0.25, 2, 101.5), ("auc", 0.7, None, None)]
    )
    # Written before log_points returned: another tracker on the same store sees them.
    other = Tracker(tracker.workspace)
    try:
        h = other.metric_history(run.id, "loss")
        assert h.steps.tolist() == [1, 2] and h.values.tolist() == [0.5, 0.25]
        assert h.timestamps.tolist() == [100.0, 101.5]
        assert other.metric_history(run.id, "auc").steps.tolist() == [0]
        assert other.get_run(run.id).metrics == {"loss": 0.25, "auc": 0.7}
    finally:
        other.close()
    run.end()


def test_every_point_is_checked_before_any_is_written(tracker: Tracker) -> None:
    run = tracker.start_run("flights", capture_environment=False)
    bad_points = [
        ("", 1.0, 0, None),
        ("bad\nname", 1.0, 0, None),
        ("loss", float("nan"), 0, None),
        ("loss", "0.5", 0, None),
        ("loss", 1.0, 2**63, None),
        ("loss", 1.0, 1.5, None),
        ("loss", 1.0, 0, float("inf")),
    ]
    for bad in bad_points:
        with pytest.raises(InvalidInputError):
            tracker.log_points(run.id, [("loss", 0.1, 0, None), bad])  # type: ignore[list-item]
    assert _chunks(tracker.workspace, run.id) == 0
    with pytest.raises(InvalidInputError):
        tracker.log_points("", [("loss", 0.1, 0, None)])
    run.end()


def test_an_unknown_or_ended_run_takes_nothing(tracker: Tracker) -> None:
    with pytest.raises(NotFoundError):
        tracker.log_points("no-such-run", [("loss", 0.1, 0, None)])
    run = tracker.start_run("flights", capture_environment=False)
    run.end("failed")
    with pytest.raises(ConflictError, match="failed"):
        tracker.log_points(run.id, [("loss", 0.1, 0, None)])
    with pytest.raises(ConflictError):
        tracker.log_points(run.id, [])
    assert _chunks(tracker.workspace, run.id) == 0


def test_a_write_revives_a_run_read_as_killed(tracker: Tracker) -> None:
    run = tracker.start_run("flights", capture_environment=False)
    tracker.writer.let_go(run)
    # Its process went quiet long ago: it reads as killed until a write comes.
    long_ago = clock.now() - 10 * tracker.store.stale_after
    with tracker.workspace.write_engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run.id).values(heartbeat_at=long_ago))
    assert tracker.get_run(run.id).status == "killed"
    tracker.log_points(run.id, [("loss", 0.1, 0, None)])
    assert tracker.get_run(run.id).status == "running"
    assert _chunks(tracker.workspace, run.id) == 1
