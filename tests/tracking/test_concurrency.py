"""Several processes logging into one workspace at once lose nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker

WRITER = textwrap.dedent(
    """
    import sys
    from loopml.store.workspace import Workspace
    from loopml.tracking.tracker import Tracker
    db, artifacts, worker, n, end = sys.argv[1:6]
    n = int(n)
    tracker = Tracker(Workspace(db, artifacts))
    run = tracker.start_run("concurrent", name=f"worker-{worker}")
    for i in range(n):
        run.log_metric("loss", 1.0 / (i + 1), step=i)
        if i % 1000 == 0:
            run.log_metric("progress", float(i))
    if end == "end":
        run.end()
    print(run.id)
    # with end == "exit": the interpreter exits normally and the exit hook must flush
    """
)


@pytest.mark.slow
def test_four_processes_times_25000_points_lose_nothing(any_workspace: Workspace) -> None:
    n = 25_000
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                any_workspace.db_url,
                any_workspace.artifacts_url,
                str(w),
                str(n),
                "end",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in results]
    tracker = Tracker(any_workspace)
    for out, _ in results:
        run_id = out.strip()
        history = tracker.metric_history(run_id, "loss")
        assert len(history) == n
        assert history.steps.tolist() == list(range(n))
        assert tracker.get_run(run_id).status == "finished"
        assert len(tracker.metric_history(run_id, "progress")) == n // 1000


def test_points_queued_at_normal_exit_are_flushed(workspace: Workspace) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            WRITER,
            workspace.db_url,
            workspace.artifacts_url,
            "0",
            "5000",
            "exit",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    tracker = Tracker(workspace)
    run_id = out.stdout.strip()
    assert len(tracker.metric_history(run_id, "loss")) == 5000
    # the run was never ended: it honestly stays "running"
    assert tracker.get_run(run_id).status == "running"


def test_logging_from_several_threads(workspace: Workspace) -> None:
    import threading

    tracker = Tracker(workspace)
    with tracker.start_run() as run:

        def log(k: str) -> None:
            for i in range(2000):
                run.log_metric(k, float(i), step=i)

        threads = [threading.Thread(target=log, args=(f"m{t}",)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for t in range(4):
        assert len(tracker.metric_history(run.id, f"m{t}")) == 2000
