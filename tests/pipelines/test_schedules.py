"""Cron schedules (with an injected clock), dataset and event triggers, the scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.data.catalog import Catalog
from loopml.pipelines import records, schedules
from loopml.pipelines.scheduler import Scheduler
from loopml.store.workspace import Workspace
from tests.pipelines import flows

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_cron_schedule_fires_when_its_time_comes(workspace: Workspace, tmp_path: Path) -> None:
    counter = str(tmp_path / "count")
    schedules.add_cron(
        workspace,
        "nightly",
        "tests.pipelines.flows:retrying",
        "30 2 * * *",
        params={"counter": counter, "failures": 0},
        now=T0,
    )
    assert schedules.get(workspace, "nightly").next_run == T0 + 2.5 * 3600
    clock = FakeClock(T0 + 3600)
    sched = Scheduler(workspace, clock=clock)
    assert sched.tick() == []  # 01:00: not yet

    clock.now = T0 + 2.5 * 3600 + 5  # 02:30:05
    fired = sched.tick()
    assert [f.schedule for f in fired] == ["nightly"]
    run = fired[0].run
    assert run is not None and run.status == "finished" and run.output == "ok after 1"
    assert run.trigger.startswith("schedule:nightly (cron 30 2 * * *")
    assert sched.tick() == []  # the same occurrence never fires twice
    assert schedules.get(workspace, "nightly").next_run == T0 + 86400 + 2.5 * 3600
    assert schedules.get(workspace, "nightly").last_run_id == run.id

    # Three days later, the missed occurrences collapse into one run.
    clock.now = T0 + 4 * 86400 + 3 * 3600
    assert len(sched.tick()) == 1
    assert schedules.get(workspace, "nightly").next_run == T0 + 5 * 86400 + 2.5 * 3600


def test_a_new_dataset_version_triggers_a_run_on_that_version(workspace: Workspace) -> None:
    month = flows._month(1)
    Catalog(workspace).add("flights", month.head(1000))
    schedules.add_dataset_trigger(
        workspace, "on-flights", "tests.pipelines.flows:from_catalog", "flights", param="data"
    )
    sched = Scheduler(workspace)
    assert sched.tick() == []  # the version present at registration does not fire
    Catalog(workspace).append("flights", month.slice(1000, 234))
    fired = sched.tick()
    assert len(fired) == 1 and fired[0].reason == "dataset flights:2"
    run = fired[0].run
    assert run is not None and run.output["flights"] == 1234
    assert run.params["data"]["$dataset"] == "flights:2"
    assert sched.tick() == []


def test_named_events_trigger_runs(workspace: Workspace, tmp_path: Path) -> None:
    counter = str(tmp_path / "count")
    schedules.fire_event(workspace, "drift-detected")  # before registration: ignored
    schedules.add_event_trigger(
        workspace,
        "retrain-on-drift",
        "tests.pipelines.flows:retrying",
        "drift-detected",
        params={"counter": counter, "failures": 0},
    )
    sched = Scheduler(workspace)
    assert sched.tick() == []
    schedules.fire_event(workspace, "drift-detected", {"column": "temp"})
    schedules.fire_event(workspace, "drift-detected")
    schedules.fire_event(workspace, "something-else")
    fired = sched.tick()
    assert len(fired) == 1 and fired[0].reason.startswith("event drift-detected#")
    assert sched.tick() == []


def test_bad_schedules_are_refused_at_registration(workspace: Workspace) -> None:
    ref = "tests.pipelines.flows:retrying"
    with pytest.raises(InvalidInputError, match="not a cron expression"):
        schedules.add_cron(workspace, "x", ref, "every day", params={"counter": "c"})
    with pytest.raises(InvalidInputError, match=r"needs a value for parameter.*counter"):
        schedules.add_cron(workspace, "x", ref, "0 * * * *")
    with pytest.raises(InvalidInputError, match="has no parameter 'nope'"):
        schedules.add_dataset_trigger(
            workspace, "x", "tests.pipelines.flows:from_catalog", "flights", param="nope"
        )
    with pytest.raises(NotFoundError, match="no such module"):
        schedules.add_cron(workspace, "x", "missing_module:p", "0 * * * *")
    schedules.add_cron(workspace, "x", ref, "0 * * * *", params={"counter": "c"})
    with pytest.raises(ConflictError, match="exists"):
        schedules.add_cron(workspace, "x", ref, "0 * * * *", params={"counter": "c"})
    schedules.remove(workspace, "x")
    assert schedules.list_schedules(workspace) == []


def test_sigterm_stops_a_real_scheduler_process_cleanly(tmp_path: Path) -> None:
    ws = Workspace(f"sqlite:///{tmp_path / 'loopml.db'}", str(tmp_path / "artifacts"))
    counter = tmp_path / "count"
    schedules.add_event_trigger(
        ws,
        "on-go",
        "tests.pipelines.flows:retrying",
        "go",
        params={"counter": str(counter), "failures": 0},
    )
    schedules.fire_event(ws, "go")
    env = {
        **os.environ,
        "LOOPML_DB": ws.db_url,
        "LOOPML_ARTIFACTS": ws.artifacts_url,
        "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "import typer; from loopml.cli.scheduler_cmd import scheduler; "
        "app = typer.Typer(); app.command()(scheduler); app(['--poll', '0.2'])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        while not seen or "scheduler started" not in seen[-1]:
            seen.append(proc.stdout.readline())
            assert seen[-1], "".join(seen)  # EOF: the process ended early
        # Wait until the scheduler has run the triggered pipeline, as a long-running
        # process does; then ask it to stop.
        deadline = time.monotonic() + 120
        while (
            not counter.exists()
            or not records.list_runs(ws)[:1]
            or (records.list_runs(ws)[0].status == "running")
        ):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the scheduler never ran the pipeline"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "received SIGTERM" in rest and "scheduler stopped" in rest
    assert "Traceback" not in rest
    assert records.list_runs(ws)[0].status == "finished"
    ws.close()
