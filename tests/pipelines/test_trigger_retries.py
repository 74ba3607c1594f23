"""Triggers are at least once: a failed run keeps its trigger, is recorded and retried."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from loopml.cli import scheduler_cmd
from loopml.data.catalog import Catalog
from loopml.pipelines import records, schedules
from loopml.pipelines.scheduler import Scheduler, backoff
from loopml.store.workspace import Workspace
from tests.pipelines import flows

T0 = 1_767_225_600.0


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n, 30, 3600) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff(50, 30, 3600) == 3600
    assert backoff(10_000, 30, 3600) == 3600  # no overflow for a long failing streak


def test_a_trigger_whose_pipeline_fails_to_set_up_is_kept_and_retried(
    workspace: Workspace, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    Catalog(workspace).add("flights", flows._month(1).head(100))
    schedules.add_dataset_trigger(
        workspace,
        "on-flights",
        "tests.pipelines.flows:guarded",
        "flights",
        param="data",
        params={"flag": str(flag)},
    )
    Catalog(workspace).append("flights", flows._month(1).slice(100, 50))
    sched = Scheduler(workspace, retry_base=60, retry_max=600)

    fired = sched.tick(T0)
    assert len(fired) == 1 and not fired[0].ok and fired[0].run is None
    assert "RuntimeError: setup failed" in (fired[0].error or "")
    assert fired[0].failures == 1 and fired[0].retry_at == T0 + 60
    s = schedules.get(workspace, "on-flights")
    assert s.cursor == 1  # the new version is still to be acted on
    assert s.failures == 1 and s.retry_at == T0 + 60 and "setup failed" in (s.last_error or "")

    assert sched.tick(T0 + 30) == []  # backing off
    again = sched.tick(T0 + 61)
    assert again[0].failures == 2 and again[0].retry_at == T0 + 61 + 120

    flag.unlink()  # the cause is fixed: the next attempt runs on the version it missed
    done = sched.tick(T0 + 61 + 121)
    assert len(done) == 1 and done[0].ok and done[0].run is not None
    assert done[0].run.output["flights"] == 150
    assert done[0].reason == "dataset flights:2"
    s = schedules.get(workspace, "on-flights")
    assert (s.cursor, s.failures, s.retry_at, s.last_error) == (2, 0, None, None)
    assert s.last_run_id == done[0].run.id
    assert sched.tick(T0 + 10_000) == []


def test_a_step_failure_also_keeps_the_trigger(any_workspace: Workspace, tmp_path: Path) -> None:
    workspace = any_workspace  # the lease and the cursor on SQLite and PostgreSQL
    flag = tmp_path / "flag"
    flag.touch()
    params = {"counter": str(tmp_path / "c"), "flag": str(flag)}
    schedules.add_event_trigger(
        workspace, "t", "tests.pipelines.flows:failing", "go", params=params
    )
    event = schedules.fire_event(workspace, "go")
    sched = Scheduler(workspace, retry_base=10)
    fired = sched.tick(T0)
    assert fired[0].run is not None and fired[0].run.status == records.FAILED
    assert "failed" in (fired[0].error or "") and "flag" in (fired[0].error or "")
    assert schedules.get(workspace, "t").cursor == event - 1
    flag.unlink()
    fired = sched.tick(T0 + 11)
    assert fired[0].ok and schedules.get(workspace, "t").cursor == event


def test_a_claimed_occurrence_is_leased_so_another_scheduler_waits(
    any_workspace: Workspace, tmp_path: Path
) -> None:
    workspace = any_workspace
    params = {"counter": str(tmp_path / "c"), "failures": 0}
    schedules.add_event_trigger(
        workspace, "t", "tests.pipelines.flows:retrying", "go", params=params
    )
    schedules.fire_event(workspace, "go")
    # A scheduler claims the occurrence and dies before running it.
    dead = Scheduler(workspace, lease_seconds=300)
    assert dead._claim(schedules.get(workspace, "t"), T0) is not None
    other = Scheduler(workspace)
    assert other.tick(T0 + 10) == []  # leased: not run twice at once
    fired = other.tick(T0 + 301)  # the lease expired: run at least once
    assert len(fired) == 1 and fired[0].ok


def test_scheduler_once_reports_a_failure_without_a_traceback(
    loopml_home: Path, tmp_path: Path
) -> None:
    from loopml.api import fluent

    ws = fluent.workspace()
    flag = tmp_path / "flag"
    flag.touch()
    Catalog(ws).add("flights", flows._month(1).head(20))
    schedules.add_dataset_trigger(
        ws,
        "on-flights",
        "tests.pipelines.flows:guarded",
        "flights",
        param="data",
        params={"flag": str(flag)},
    )
    Catalog(ws).append("flights", flows._month(1).slice(20, 5))
    app = typer.Typer()
    app.command()(scheduler_cmd.scheduler)
    result = CliRunner().invoke(app, ["--once"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "on-flights: dataset flights:2 -> failed: RuntimeError: setup failed" in result.output
    assert "1 in a row; retried after" in result.output
    assert "Traceback" not in result.output
    assert schedules.get(ws, "on-flights").cursor == 1
