"""Runs: logging, lifecycle, environment and bad input, on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from loopml.core import clock
from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.store.metadata.tables import runs
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


@pytest.fixture
def tracker(any_workspace: Workspace) -> Iterator[Tracker]:
    t = Tracker(any_workspace)
    yield t
    t.close()


def test_run_records_params_metrics_tags_and_status(tracker: Tracker) -> None:
    with tracker.start_run("flights", params={"lr": 0.1}, tags={"team": "ops"}) as run:
        run.log_metric("loss", 0.5, step=1)
        run.log_metric("loss", 0.42, step=2)
        run.log_metrics({"auc": 0.71, "loss": 0.40}, step=3)
        run.log_params({"depth": 6})
        run.set_tags({"team": "platform", "stage": "dev"})
    got = tracker.get_run(run.id)
    assert got.status == "finished"
    assert got.experiment == "flights"
    assert got.params == {"lr": "0.1", "depth": "6"}
    assert got.metrics == {"loss": 0.40, "auc": 0.71}
    assert got.tags == {"team": "platform", "stage": "dev"}
    assert got.end_time is not None and got.end_time >= got.start_time
    history = tracker.metric_history(run.id, "loss")
    assert history.steps.tolist() == [1, 2, 3]
    assert history.values.tolist() == [0.5, 0.42, 0.40]


def test_latest_metric_is_the_highest_step_not_the_last_logged(tracker: Tracker) -> None:
    with tracker.start_run("flights") as run:
        run.log_metric("auc", 0.9, step=10)
        run.log_metric("auc", 0.1, step=2)  # a late, lower step must not win
    assert tracker.get_run(run.id).metrics["auc"] == 0.9


def test_steps_default_to_a_per_metric_counter(tracker: Tracker) -> None:
    with tracker.start_run() as run:
        for v in (3.0, 2.0, 1.0):
            run.log_metric("loss", v)
        run.log_metric("acc", 0.5)
    assert tracker.metric_history(run.id, "loss").steps.tolist() == [0, 1, 2]
    assert tracker.metric_history(run.id, "acc").steps.tolist() == [0]


def test_exception_marks_run_failed_and_keeps_what_was_logged(tracker: Tracker) -> None:
    with pytest.raises(ZeroDivisionError), tracker.start_run("flights") as run:
        run.log_metric("loss", 0.3)
        run.log_params({"depth": 4})
        1 / 0  # noqa: B018
    got = tracker.get_run(run.id)
    assert got.status == "failed"
    assert got.metrics == {"loss": 0.3}
    assert got.params == {"depth": "4"}
    assert got.error is not None and "ZeroDivisionError" in got.error


def test_environment_and_git_state_are_recorded(tracker: Tracker, tmp_path: Path) -> None:
    with tracker.start_run(cwd=str(tmp_path)) as run:
        pass
    got = tracker.get_run(run.id)
    assert got.git_commit is None  # tmp_path is not a git checkout
    assert got.environment_digest is not None
    env = tracker.environment(got.environment_digest)
    assert env["packages"]["numpy"] == np.__version__
    # the same environment is stored once, however many runs use it
    with tracker.start_run() as second:
        pass
    assert tracker.get_run(second.id).environment_digest == got.environment_digest


def test_git_commit_and_dirty_flag(tracker: Tracker, tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    with tracker.start_run(cwd=str(repo)) as clean:
        pass
    (repo / "train.py").write_text("print(2)\n")
    with tracker.start_run(cwd=str(repo)) as dirty:
        pass
    assert tracker.get_run(clean.id).git_commit == head.strip()
    assert tracker.get_run(clean.id).git_dirty is False
    assert tracker.get_run(dirty.id).git_dirty is True


def test_log_artifact_file_and_folder_land_in_the_store(tracker: Tracker, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"model bytes")
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "index.html").write_text("<html></html>")
    with tracker.start_run() as run:
        f = run.log_artifact(tmp_path / "model.pkl")
        d = run.log_artifact(folder)
    store = tracker.workspace.artifacts
    assert store.get_bytes(f.digest) == b"model bytes"
    assert f.kind == "file" and d.kind == "tree"
    assert [e.path for e in store.get_tree(d.digest).entries] == ["index.html"]
    roles = [r for r, _ in tracker.workspace.lineage.artifacts_of(run.id, "output")]
    assert roles == ["model.pkl", "report"]


def test_params_are_write_once(tracker: Tracker) -> None:
    with tracker.start_run(params={"depth": 6}) as run:
        run.log_params({"depth": 6})  # same value: fine
        with pytest.raises(ConflictError, match="depth"):
            run.log_params({"depth": 8})
    assert tracker.get_run(run.id).params == {"depth": "6"}


def test_an_ended_run_refuses_writes(tracker: Tracker) -> None:
    with tracker.start_run() as run:
        pass
    with pytest.raises(ConflictError, match="has ended"):
        run.log_metric("late", 1.0)
    with pytest.raises(ConflictError):
        run.log_params({"x": 1})


@pytest.mark.parametrize(
    "value, message",
    [
        ("0.5", "must be a number"),
        (None, "must be a number"),
        (True, "must be a number"),
        ([1.0], "must be a number"),
        (math.nan, "finite"),
        (math.inf, "finite"),
    ],
)
def test_bad_metric_values_are_refused(tracker: Tracker, value: object, message: str) -> None:
    with tracker.start_run() as run:
        with pytest.raises(InvalidInputError, match=message):
            run.log_metric("loss", value)  # type: ignore[arg-type]
        run.log_metric("loss", np.float32(0.25))  # numpy scalars are numbers
        run.log_metric("count", 3)
    assert tracker.get_run(run.id).metrics == {"loss": 0.25, "count": 3.0}


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("loopml.internal", "reserved"),
        ("a" * 300, "limit"),
        ("drop;table", "characters"),
        (42, "must be a string"),
    ],
)
def test_bad_names_are_refused(tracker: Tracker, name: object, message: str) -> None:
    with tracker.start_run() as run:
        with pytest.raises(InvalidInputError, match=message):
            run.log_metric(name, 1.0)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match=message):
            run.log_params({name: 1})  # type: ignore[dict-item]
        with pytest.raises(InvalidInputError, match=message):
            run.set_tags({name: "x"})  # type: ignore[dict-item]


def test_bad_steps_are_refused(tracker: Tracker) -> None:
    with tracker.start_run() as run:
        with pytest.raises(InvalidInputError, match="integer"):
            run.log_metric("loss", 1.0, step=1.5)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="64 bits"):
            run.log_metric("loss", 1.0, step=2**70)


def test_bad_timestamps_are_refused_before_they_are_queued(tracker: Tracker) -> None:
    # Refused when logged: a point the writer thread cannot pack has no caller to tell.
    with tracker.start_run() as run:
        for bad in ("yesterday", float("nan"), float("inf")):
            with pytest.raises(InvalidInputError, match="timestamp"):
                run.log_metric("loss", 1.0, timestamp=bad)  # type: ignore[arg-type]
        run.log_metric("loss", 1.0, timestamp=1_700_000_000.0)
    history = tracker.metric_history(run.id, "loss")
    assert history.timestamps.tolist() == [1_700_000_000.0]


def test_oversized_param_is_refused_and_no_run_is_left_behind(tracker: Tracker) -> None:
    with pytest.raises(InvalidInputError, match="limit is 6000"):
        tracker.start_run("x", params={"blob": "x" * 10_000})
    assert tracker.search_runs("x") == []


def test_unknown_runs_and_metrics(tracker: Tracker) -> None:
    with pytest.raises(NotFoundError, match="no run"):
        tracker.get_run("f" * 32)
    with pytest.raises(NotFoundError, match="no run"):
        tracker.metric_history("f" * 32, "loss")
    with tracker.start_run() as run:
        run.log_metric("loss", 1.0)
    with pytest.raises(NotFoundError, match="no metric 'acc'"):
        tracker.metric_history(run.id, "acc")
    with pytest.raises(InvalidInputError):
        tracker.get_run("")


def test_large_history_is_read_back_and_downsampled_in_the_database(tracker: Tracker) -> None:
    n = 200_000
    with tracker.start_run() as run:
        for i in range(n):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
    full = tracker.metric_history(run.id, "loss")
    assert len(full) == n and full.total_points == n
    assert full.steps[0] == 0 and full.steps[-1] == n - 1
    assert np.all(np.diff(full.steps) == 1)
    small = tracker.metric_history(run.id, "loss", max_points=500)
    assert small.downsampled and len(small) == 500 and small.total_points == n
    assert small.max is not None and small.min is not None
    assert small.max[0] == 1.0  # the envelope keeps the spike a mean would hide
    assert np.all(small.min <= small.values) and np.all(small.values <= small.max)
    with pytest.raises(InvalidInputError):
        tracker.metric_history(run.id, "loss", max_points=1)


def test_a_run_can_share_another_runs_environment(tracker: Tracker) -> None:
    with (
        tracker.start_run("p") as parent,
        tracker.start_run("p", environment_of=parent.id) as child,
    ):
        pass
    p, c = tracker.get_run(parent.id), tracker.get_run(child.id)
    assert c.environment_digest == p.environment_digest is not None
    assert (c.git_commit, c.git_dirty) == (p.git_commit, p.git_dirty)
    with pytest.raises(NotFoundError, match="environment of"):
        tracker.start_run("p", environment_of="0" * 32)


def _age_heartbeat(ws: Workspace, run_id: str, seconds: float) -> None:
    """What a run whose process died looks like: its last heartbeat ``seconds`` ago."""
    with ws.write_engine.begin() as conn:
        conn.execute(
            update(runs).where(runs.c.id == run_id).values(heartbeat_at=clock.now() - seconds)
        )


def test_runs_with_a_stale_heartbeat_read_as_killed(any_workspace: Workspace) -> None:
    tracker = Tracker(any_workspace, stale_after=600)
    with tracker.start_run("hb", name="done"):
        pass
    alive = tracker.start_run("hb", name="alive")
    dead = tracker.start_run("hb", name="dead")
    dead.log_metric("loss", 0.5)
    _age_heartbeat(any_workspace, dead.id, 3600)
    _age_heartbeat(any_workspace, alive.id, 60)
    statuses = {r.name: r.status for r in tracker.search_runs("hb")}
    assert statuses == {"done": "finished", "alive": "running", "dead": "killed"}
    assert tracker.get_run(dead.id).status == "killed"
    assert [r.name for r in tracker.search_runs(filter="attributes.status = 'killed'")] == ["dead"]
    assert [r.name for r in tracker.search_runs(filter="attributes.status = 'running'")] == [
        "alive"
    ]
    # Staleness is the reader's choice: a more patient reader still sees it running.
    patient = Tracker(any_workspace, stale_after=7200)
    assert patient.get_run(dead.id).status == "running"
    patient.close()
    # A run that ends after all is recorded as it ended.
    dead.end()
    assert tracker.get_run(dead.id).status == "finished"
    alive.end()
    tracker.close()


def test_open_runs_keep_beating(workspace: Workspace) -> None:
    tracker = Tracker(workspace, stale_after=600, heartbeat_interval=0.05)
    run = tracker.start_run("hb")
    _age_heartbeat(workspace, run.id, 3600)
    assert tracker.get_run(run.id).status == "killed"
    deadline = time.monotonic() + 60
    while tracker.get_run(run.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tracker.get_run(run.id).status == "running"
    run.end()
    tracker.close()


def test_dropped_handles_stop_beating_and_attach_beats(workspace: Workspace) -> None:
    tracker = Tracker(workspace, stale_after=600, heartbeat_interval=0.05)
    kept = tracker.start_run("hb", name="kept")
    dropped_id = tracker.start_run("hb", name="dropped").id  # nobody holds the handle
    gc.collect()
    for run_id in (kept.id, dropped_id):
        _age_heartbeat(workspace, run_id, 3600)
    deadline = time.monotonic() + 60
    while tracker.get_run(kept.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    # The kept run beat again (at least one beat pass ran); the dropped one did not.
    assert tracker.get_run(kept.id).status == "running"
    assert tracker.get_run(dropped_id).status == "killed"
    # A write from elsewhere (the server attaches per request) is a sign of life.
    tracker.attach(dropped_id).log_param("resumed", 1)
    assert tracker.get_run(dropped_id).status == "running"
    kept.end()
    with pytest.raises(ConflictError, match="only a running run takes writes"):
        tracker.attach(kept.id)
    tracker.close()


@pytest.mark.parametrize("kwargs", [{"stale_after": 0}, {"heartbeat_interval": 400}])
def test_bad_heartbeat_settings(workspace: Workspace, kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError, match="heartbeat_interval"):
        Tracker(workspace, **kwargs)
