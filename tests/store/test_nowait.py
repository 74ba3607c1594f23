"""NoWait (store/metadata/nowait.py): SQLAlchemy Core statements on a SQLite connection
that never waits. It must give what the engine gives for the same statement, and where
it would wait or fail, raise WouldWait having changed nothing."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import bindparam, func, select

from loopml.core.errors import ConflictError, NotFoundError
from loopml.store.metadata import nowait
from loopml.store.metadata.nowait import WouldWait
from loopml.store.metadata.tables import api_tokens, latest_metrics, metric_chunks
from loopml.store.metadata.upsert import upsert
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker

_CHUNKS = metric_chunks.insert()
_COUNT = select(func.count()).select_from(metric_chunks)
_LATEST = select(latest_metrics.c.step, latest_metrics.c.value).where(
    latest_metrics.c.run_id == bindparam("run_id")
)
_ANY_TOKEN = select(api_tokens.c.name.is_(None).label("nameless"), api_tokens.c.scope)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(f"sqlite:///{tmp_path / 'db.sqlite'}", str(tmp_path / "artifacts"))
    yield ws
    ws.close()


def _chunk(run_id: str, step: int) -> dict[str, object]:
    return {
        "run_id": run_id,
        "key": "loss",
        "count": 1,
        "min_step": step,
        "max_step": step,
        "steps": step.to_bytes(8, "little"),
        "timestamps": b"\0" * 8,
        "values": b"\0" * 8,
    }


def _count(ws: Workspace) -> int:
    with ws.engine.connect() as conn:
        return int(conn.execute(_COUNT).scalar_one())


def test_statements_give_what_the_engine_gives(ws: Workspace) -> None:
    with ws.nowait.writing() as conn:
        conn.execute(_CHUNKS, [_chunk("r1", 1), _chunk("r1", 2)])  # executemany
        conn.execute(_CHUNKS, _chunk("r2", 3))
        stmt = upsert(conn, latest_metrics, keys=["run_id", "key"], update=["step", "value"])
        row = {"run_id": "r1", "key": "loss", "step": 5, "timestamp": 1.5, "value": 0.25}
        conn.execute(stmt, row)
        conn.execute(stmt, {**row, "step": 6, "value": 0.5})  # the conflict updates
    assert _count(ws) == 3
    with ws.nowait.reading() as conn:
        mine = conn.execute(_LATEST, {"run_id": "r1"}).first()
        assert conn.execute(_LATEST, {"run_id": "nope"}).first() is None
        assert conn.execute(_COUNT).scalar() == 3
    with ws.engine.connect() as conn:
        theirs = conn.execute(_LATEST, {"run_id": "r1"}).first()
    assert theirs is not None and tuple(mine) == tuple(theirs) == (6, 0.5)
    assert mine.step == 6 and mine.value == 0.5  # rows read by name, as SQLAlchemy's


def test_result_types_are_applied_as_the_engine_applies_them(ws: Workspace) -> None:
    with ws.engine.begin() as conn:
        conn.execute(
            api_tokens.insert(),
            {"name": "ci", "token_hash": "h", "scope": "write", "created_at": 1.0},
        )
    with ws.nowait.reading() as conn:
        row = conn.execute(_ANY_TOKEN).first()
    with ws.engine.connect() as conn:
        expected = conn.execute(_ANY_TOKEN).first()
    assert row == tuple(expected) and row.nameless is False  # a bool, not SQLite's 0


def test_a_held_write_lock_makes_it_refuse_at_once_and_write_nothing(ws: Workspace) -> None:
    other = sqlite3.connect(ws.engine.url.database or "", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(WouldWait), ws.nowait.writing() as conn:
            conn.execute(_CHUNKS, _chunk("r1", 1))
        # Reading does not need the lock (WAL): it goes on while the lock is held.
        with ws.nowait.reading() as conn:
            assert conn.execute(_COUNT).scalar() == 0
        other.execute("COMMIT")
    finally:
        other.close()
    with ws.nowait.writing() as conn:
        conn.execute(_CHUNKS, _chunk("r1", 1))
    assert _count(ws) == 1


def test_an_error_rolls_back_and_a_database_error_becomes_would_wait(ws: Workspace) -> None:
    with pytest.raises(KeyError), ws.nowait.writing() as conn:
        conn.execute(_CHUNKS, _chunk("r1", 1))
        raise KeyError("the caller's own error passes through")
    broken = dict(_chunk("r1", 2), count=None)  # NOT NULL: SQLite refuses it
    with pytest.raises(WouldWait), ws.nowait.writing() as conn:
        conn.execute(_CHUNKS, _chunk("r1", 3))
        conn.execute(_CHUNKS, broken)
    assert _count(ws) == 0  # neither transaction left a row
    with ws.nowait.writing() as conn:  # and the connection is usable again
        conn.execute(_CHUNKS, _chunk("r1", 4))
    assert _count(ws) == 1


def test_another_thread_in_a_transaction_makes_it_refuse(ws: Workspace) -> None:
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with ws.nowait.reading():
            inside.set()
            leave.wait(timeout=60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(timeout=60)
        with pytest.raises(WouldWait), ws.nowait.reading():
            pass
    finally:
        leave.set()
        holder.join(timeout=60)
    with ws.nowait.reading() as conn:
        assert conn.execute(_COUNT).scalar() == 0


def test_without_a_sqlite_file_every_use_would_wait(tmp_path: Path) -> None:
    ws = Workspace("sqlite:///:memory:", str(tmp_path / "artifacts"))
    try:
        with pytest.raises(WouldWait), ws.nowait.reading():
            pass
        tracker = Tracker(ws)
        run = tracker.start_run("e")
        with pytest.raises(WouldWait):
            tracker.log_points(run.id, [("loss", 1.0, 0, None)], wait=False)
        tracker.log_points(run.id, [("loss", 1.0, 0, None)])  # the ordinary way works
        assert len(tracker.metric_history(run.id, "loss")) == 1
        run.end()
        tracker.close()
    finally:
        ws.close()


def test_statements_built_per_call_do_not_grow_the_cache(ws: Workspace) -> None:
    for i in range(nowait.MAX_CACHED * 2):
        with ws.nowait.reading() as conn:
            conn.execute(select(metric_chunks.c.id).where(metric_chunks.c.count == i))
    assert len(ws.nowait._cache) <= nowait.MAX_CACHED


def test_a_write_without_waiting_checks_the_run_as_the_ordinary_write(ws: Workspace) -> None:
    tracker = Tracker(ws)
    try:
        run = tracker.start_run("e")
        tracker.log_points(run.id, [("loss", 0.5, 3, 10.0)], wait=False)
        tracker.log_points(run.id, [("loss", 0.25, 4, 11.0)], wait=False)
        history = tracker.metric_history(run.id, "loss")
        assert list(history.steps) == [3, 4] and list(history.values) == [0.5, 0.25]
        assert tracker.get_run(run.id).metrics["loss"] == 0.25
        run.end()
        with pytest.raises(ConflictError):
            tracker.log_points(run.id, [("loss", 1.0, 5, None)], wait=False)
        with pytest.raises(NotFoundError):
            tracker.log_points("nope", [("loss", 1.0, 5, None)], wait=False)
        assert len(tracker.metric_history(run.id, "loss")) == 2
    finally:
        tracker.close()
