"""Two ``loopml loop run`` processes on one loop: one ticks, the other is told who does;
a holder that stops releases the lease at once, one that is killed loses it when it runs
out. Real processes against one SQLite workspace (PostgreSQL runs the same statements)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopml.core.errors import NotFoundError
from loopml.retraining.loop import Loop
from loopml.retraining.records import LoopBusyError, LoopStore
from loopml.store.workspace import Workspace
from tests.retraining import flows
from tests.retraining.conftest import DEADLINE

REPO = Path(__file__).resolve().parents[2]
LOOP_MODULE = """
import loopml as lm
from tests.retraining import flows

loop = lm.Loop(
    "delay",
    flows.retrain,
    triggers=[lm.monitoring.NewLabels(min_rows=10)],
    name="leased",
    pipeline_params={"months": [1, 7]},
    lease_ttl=3,
)
"""


@pytest.fixture
def project(ws: Workspace, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "myloop.py").write_text(LOOP_MODULE)
    env = {
        **os.environ,
        "LOOPML_DB": ws.db_url,
        "LOOPML_ARTIFACTS": ws.artifacts_url,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "COLUMNS": "250",
    }
    env.pop("LOOPML_HOME", None)
    return folder, env


def _loop_run(project: tuple[Path, dict[str, str]], *args: str) -> subprocess.Popen[str]:
    folder, env = project
    return subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "loop", "run", "myloop:loop", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until_ticked(store: LoopStore, holder: subprocess.Popen[str]) -> str:
    """Until the holder has ticked once; its lease's holder name."""
    deadline = time.monotonic() + DEADLINE
    while True:
        lease = _lease(store)
        if lease is not None and store.decisions("leased"):
            assert f"pid {holder.pid} " in lease
            return lease
        assert holder.poll() is None, holder.communicate()
        assert time.monotonic() < deadline, "the first process never ticked"
        time.sleep(0.1)


def _lease(store: LoopStore) -> str | None:
    try:
        found = store.lease("leased")
    except Exception:  # the loop's row does not exist yet
        return None
    return None if found is None else found[0]


def _second(project: tuple[Path, dict[str, str]]) -> subprocess.CompletedProcess[str]:
    proc = _loop_run(project, "--ticks", "1")
    out, err = proc.communicate(timeout=DEADLINE)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_one_process_ticks_a_loop_the_other_says_who(
    project: tuple[Path, dict[str, str]], ws: Workspace
) -> None:
    store = LoopStore(ws)
    first = _loop_run(project, "--every", "1h")
    try:
        holder = _until_ticked(store, first)
        ticks = len(store.decisions("leased"))

        refused = _second(project)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"loop 'leased' is being ticked by {holder}" in " ".join(refused.stderr.split())
        assert "Traceback" not in refused.stderr
        assert len(store.decisions("leased")) == ticks  # the second one did nothing

        # In-process too: a Loop object is refused while the other process holds it.
        other = Loop(ws, "delay", flows.retrain, name="leased", lease_ttl=3)
        with pytest.raises(LoopBusyError, match="is being ticked by pid"):
            other.tick()
        assert len(store.decisions("leased")) == ticks

        # A holder that stops gives the lease up at once.
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=DEADLINE)
        assert first.returncode == 0
        assert _lease(store) is None
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()

    # A holder that is killed keeps it until it runs out; then another process takes over.
    killed = _loop_run(project, "--every", "1h")
    try:
        holder = _until_ticked(store, killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=DEADLINE)
    assert _lease(store) == holder  # not released: the process never got to
    deadline = time.monotonic() + DEADLINE
    while _lease(store) is not None:
        assert time.monotonic() < deadline, "the dead holder's lease never ran out"
        time.sleep(0.2)
    took_over = _second(project)
    assert took_over.returncode == 0, took_over.stdout + took_over.stderr
    assert "tick" in took_over.stdout and _lease(store) is None


def test_the_lease_on_sqlite_and_postgresql(any_workspace: Workspace) -> None:
    store = LoopStore(any_workspace)
    store.ensure("nightly", "delay", {}, {})
    store.ensure("nightly", "delay", {}, {})  # idempotent
    store.acquire("nightly", "pid 1 on a", ttl=60)
    store.acquire("nightly", "pid 1 on a", ttl=60)  # the holder renews
    with pytest.raises(LoopBusyError, match=r"'nightly' is being ticked by pid 1 on a"):
        store.acquire("nightly", "pid 2 on b", ttl=60)
    assert store.lease("nightly") is not None
    store.release("nightly", "pid 2 on b")  # not its lease: nothing happens
    assert store.lease("nightly") is not None
    store.release("nightly", "pid 1 on a")
    assert store.lease("nightly") is None
    store.acquire("nightly", "pid 2 on b", ttl=-1)  # a lease that has already run out
    assert store.lease("nightly") is None
    store.acquire("nightly", "pid 1 on a", ttl=60)
    with pytest.raises(NotFoundError, match="no loop named 'other'"):
        store.acquire("other", "pid 1 on a", ttl=60)
