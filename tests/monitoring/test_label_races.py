"""Two monitors joining labels into the same segment at once lose neither side's labels.

Each monitor has its own Workspace (its own engine and connections), as two processes
would. The first test interleaves the two deterministically: monitor A joins its file
against the segment as it was, monitor B joins and commits another file into the same
segment, then A writes: the compare-and-swap on the segment's revision refuses A's stale
write, and A's retry joins on top of B's labels. The second runs the two in threads.
"""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import pytest

from loopml.monitor import Monitor, check
from loopml.monitor.labels import Blobs, Conflict, _join_file, plan_join, write_join
from loopml.monitor.logs import FEEDBACK_KIND, records
from loopml.serving.feedback import Label, store_labels
from loopml.store.lineage import ArtifactRecord
from loopml.store.workspace import Workspace
from tests.monitoring.conftest import make_workspace
from tests.monitoring.test_windows import DEPLOYMENT, write_day

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _setup(
    tmp_path: Path, flights: pl.DataFrame, url: str | None, files: int
) -> tuple[str, str, list[ArtifactRecord], int]:
    """A day of 200 logged rows in one segment and ``files`` feedback files that label
    disjoint requests of it; returns (db url, artifacts root, the files, rows labelled)."""
    ws, _, _ = make_workspace(tmp_path, flights, url)
    jan = flights.filter(pl.col("month") == 1).sample(200, seed=8)
    written = write_day(ws, jan, 0, "r")  # 10 requests of 20 rows
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
    stale = plan_join(a, f1, Blobs(a), only=None, matched_before=None)
    assert stale.matched == 100 and len(stale.updates) == 1
    _join_file(b, f2, Blobs(b), only=None, matched_before=None)  # B commits first
    with pytest.raises(Conflict):
        write_join(a, stale)  # written blindly, this would drop B's 100 labels
    assert Monitor(b).check(DEPLOYMENT, refresh=False).labelled_rows == 100  # no A labels
    _join_file(a, f1, Blobs(a), only=None, matched_before=None)  # the retrying path
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
            _join_file(ws, record, Blobs(ws), only=None, matched_before=None)
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
