"""Two monitors working on the same labels at once lose none of them.

Each monitor has its own Workspace (its own engine and connections), as two processes
would. The first test interleaves the two deterministically: monitor A joins its file
against the segment as it was, monitor B joins and commits another file into the same
segment, then A writes: the compare-and-swap on the segment's revision refuses A's stale
write, and A's retry joins on top of B's labels. The second runs four in threads. The
third forces, in two threads, the interleaving that used to leave labels pending for
ever: A reads a feedback file before the segment its labels belong to exists, B creates
that segment and joins the same file, A records the file first (nothing matched), and B's
write is refused. The last checks that the label that arrived last wins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select

from loopml.monitor import Monitor, check
from loopml.monitor.labels import Blobs, Conflict, Join, join_file, plan_join, write_join
from loopml.monitor.logs import FEEDBACK_KIND, records
from loopml.monitor.reference import References
from loopml.monitor.segments import ingest_logs
from loopml.serving.feedback import Label, store_labels
from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import monitor_label_joins, monitor_segments, monitor_sources
from loopml.store.workspace import Workspace
from tests.monitoring.conftest import make_workspace
from tests.monitoring.test_windows import DEPLOYMENT, write_day

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _setup(
    tmp_path: Path, flights: pl.DataFrame, url: str | None, files: int, *, profiled: bool = True
) -> tuple[str, str, list[ArtifactRecord], int]:
    """A day of 200 logged rows (in one segment if ``profiled``) and ``files`` feedback
    files that label disjoint requests of it; returns (db url, artifacts root, the files,
    rows labelled)."""
    ws, _, _ = make_workspace(tmp_path, flights, url)
    jan = flights.filter(pl.col("month") == 1).sample(200, seed=8)
    written = write_day(ws, jan, 0, "r")  # 10 requests of 20 rows
    if profiled:
        Monitor(ws).refresh()  # the segment, before any label exists
    ids = sorted(written)
    labelled = 0
    for k in range(files):
        mine = ids[k::files]
        store_labels(ws, DEPLOYMENT, [Label(rid, row, 1) for rid in mine for row in range(20)])
        labelled += 20 * len(mine)
    feedback = records(ws, FEEDBACK_KIND)
    db, root = ws.db_url, ws.artifacts_url
    ws.close()
    return db, root, feedback, labelled


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stale_label_join_is_refused_and_retried_on_top(
    flights: pl.DataFrame, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    db, root, (f1, f2), labelled = _setup(tmp_path, flights, url, 2)
    a, b = Workspace(db, root), Workspace(db, root)
    stale = plan_join(a, f1, Blobs(a))
    assert stale is not None and stale.matched == 100 and len(stale.updates) == 1
    join_file(b, f2, Blobs(b))  # B commits first
    with pytest.raises(Conflict):
        write_join(a, stale)  # written blindly, this would drop B's 100 labels
    assert Monitor(b).check(DEPLOYMENT, refresh=False).labelled_rows == 100  # no A labels
    join_file(a, f1, Blobs(a))  # the retrying path
    w = check(a, DEPLOYMENT)
    assert w.labelled_rows == labelled == 200
    a.close()
    b.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_monitors_in_threads_keep_every_label(
    flights: pl.DataFrame, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    db, root, feedback, labelled = _setup(tmp_path, flights, url, 4)
    spaces = [Workspace(db, root) for _ in feedback]
    start = threading.Barrier(len(feedback), timeout=120)
    failures: list[BaseException] = []

    def join(ws: Workspace, record: ArtifactRecord) -> None:
        try:
            start.wait()
            join_file(ws, record, Blobs(ws))
        except BaseException as exc:  # reported below, with the thread's own traceback
            failures.append(exc)

    threads = [
        threading.Thread(target=join, args=(ws, f)) for ws, f in zip(spaces, feedback, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures
    w = check(spaces[0], DEPLOYMENT)
    assert w.labelled_rows == labelled == 200
    for ws in spaces:
        ws.close()


def _in_turns(steps: list[tuple[int, Callable[[], object]]], threads: int) -> None:
    """Run ``steps`` (thread number, action) in exactly this order, each on its own
    thread: every thread waits for its turn (with a deadline), so the interleaving is
    forced, not hoped for."""
    turn = threading.Condition()
    state = {"next": 0}
    failures: list[BaseException] = []

    def worker(me: int) -> None:
        for index, (who, action) in enumerate(steps):
            if who != me:
                continue
            with turn:
                if not turn.wait_for(lambda i=index: state["next"] == i, timeout=120):
                    failures.append(TimeoutError(f"step {index} never came"))
                    return
            try:
                action()
            except BaseException as exc:
                failures.append(exc)
            with turn:
                state["next"] = index + 1
                turn.notify_all()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not any(w.is_alive() for w in workers)
    assert not failures, failures
    assert state["next"] == len(steps)


@pytest.mark.parametrize("backend", BACKENDS)
def test_labels_read_while_another_monitor_creates_their_segment_are_not_left_pending(
    flights: pl.DataFrame, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    db, root, (feedback,), labelled = _setup(tmp_path, flights, url, 1, profiled=False)
    a, b = Workspace(db, root), Workspace(db, root)
    plans: dict[str, Join | None] = {}
    refused: list[str] = []

    def plan(name: str, ws: Workspace) -> None:
        plans[name] = plan_join(ws, feedback, Blobs(ws))

    def write_refused(name: str, ws: Workspace) -> None:
        planned = plans[name]
        assert planned is not None
        try:
            write_join(ws, planned)
        except Conflict:
            refused.append(name)

    _in_turns(
        [
            (0, lambda: plan("a", a)),  # A reads the file: no segment holds its rows yet
            (1, lambda: ingest_logs(b, References(b))),  # B profiles the log: the segment
            (1, lambda: plan("b", b)),  # B reads the same new file, joined to that segment
            (0, lambda: write_join(a, plans["a"])),  # type: ignore[arg-type]
            (1, lambda: write_refused("b", b)),  # the file is no longer new: refused
            (0, lambda: Monitor(a).refresh()),  # A's next refresh; it created no segment
        ],
        threads=2,
    )
    assert plans["a"] is not None and plans["a"].matched == 0
    assert plans["b"] is not None and plans["b"].matched == labelled
    assert refused == ["b"]  # before the fix, B stopped here and A never joined again
    assert Monitor(b).check(DEPLOYMENT, refresh=False).labelled_rows == labelled == 200
    with b.engine.connect() as conn:
        (pending,) = conn.execute(
            select(monitor_sources.c.pending).where(monitor_sources.c.artifact_id == feedback.id)
        ).one()
        joins = conn.execute(select(monitor_label_joins)).all()
    assert not pending and joins == []  # done, and its bookkeeping gone
    a.close()
    b.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pending_file_is_joined_by_whichever_monitor_refreshes_next(
    flights: pl.DataFrame, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    db, root, (feedback,), labelled = _setup(tmp_path, flights, url, 1, profiled=False)
    a, b = Workspace(db, root), Workspace(db, root)
    first = plan_join(a, feedback, Blobs(a))
    assert first is not None and first.matched == 0
    ingest_logs(b, References(b))  # B's segment, made after A read the file...
    write_join(a, first)  # ...and before A recorded it as pending
    # B's own label phase ran before A's record (nothing pending then); any refresh now
    # joins the file against the segment it has not been joined against.
    assert Monitor(a).check(DEPLOYMENT).labelled_rows == labelled == 200
    a.close()
    b.close()


def test_the_label_that_arrived_last_wins_whatever_order_files_are_joined(
    flights: pl.DataFrame, tmp_path: Path
) -> None:
    ws, _, _ = make_workspace(tmp_path, flights)
    jan = flights.filter(pl.col("month") == 1).sample(40, seed=9)
    rid = sorted(write_day(ws, jan, 0, "r"))[0]
    store_labels(ws, DEPLOYMENT, [Label(rid, 0, 0)])
    store_labels(ws, DEPLOYMENT, [Label(rid, 0, 1)])  # a correction, later
    older, newer = records(ws, FEEDBACK_KIND)
    Monitor(ws).references.get("delay", 1)
    ingest_logs(ws, References(ws))
    blobs = Blobs(ws)
    join_file(ws, newer, blobs)  # e.g. the older file was pending when the newer came
    join_file(ws, older, blobs)
    with ws.engine.connect() as conn:
        (digest,) = conn.execute(select(monitor_segments.c.labels_digest)).one()
    labels = blobs.read(digest, "labels").filter(pl.col("request_id") == rid)
    assert labels["label"].to_list() == ["1"]
    ws.close()
