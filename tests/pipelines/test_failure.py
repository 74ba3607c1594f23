"""A failing step fails the run with its traceback; resume continues; retries retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.errors import ConflictError
from loopml.pipelines import records, runner
from loopml.pipelines.errors import PipelineFailedError
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests.pipelines import flows


def test_failure_records_the_traceback_and_resume_reuses_what_succeeded(
    workspace: Workspace, tmp_path: Path
) -> None:
    counter, flag = tmp_path / "count", tmp_path / "flag"
    flag.touch()
    with pytest.raises(PipelineFailedError, match="failed at step fragile") as info:
        flows.failing.run(workspace=workspace, counter=str(counter), flag=str(flag))
    err = info.value
    assert err.node == "fragile"
    assert err.traceback is not None and "RuntimeError: flag" in err.traceback

    failed = records.get(workspace, err.run_id)
    assert failed.status == "failed"
    assert failed.steps["numbers"].status == "executed"
    assert failed.steps["fragile"].status == "failed"
    assert "RuntimeError" in (failed.steps["fragile"].error or "")
    assert failed.steps["double"].status == "skipped"
    tracker = Tracker(workspace)
    step_run = tracker.get_run(failed.steps["fragile"].run_id or "")
    assert step_run.status == "failed" and "RuntimeError: flag" in (step_run.error or "")
    pipeline_run = tracker.get_run(failed.id)
    assert pipeline_run.status == "failed" and "fragile" in (pipeline_run.error or "")
    tracker.close()

    flag.unlink()  # "fix" the step
    resumed = runner.resume(workspace, failed.id)
    assert resumed.status == "finished"
    assert resumed.resumed_from == failed.id
    # numbers has cache=False, yet it is not executed again: resume reuses it.
    assert resumed.steps["numbers"].status == "reused"
    assert resumed.executed == ["fragile", "double"]
    assert counter.read_text() == "1"
    assert resumed.output == 2 * sum(range(5))

    with pytest.raises(ConflictError, match="only failed or interrupted runs resume"):
        runner.resume(workspace, resumed.id)


def test_a_failed_run_is_returned_not_raised_when_asked(
    workspace: Workspace, tmp_path: Path
) -> None:
    (tmp_path / "flag").touch()
    run = runner.run_pipeline(
        workspace,
        flows.failing,
        {"counter": str(tmp_path / "c"), "flag": str(tmp_path / "flag")},
        raise_on_failure=False,
    )
    assert run.status == "failed" and run.nodes_with("failed") == ["fragile"]


def test_retries_rerun_a_failing_step_each_attempt_a_run(
    workspace: Workspace, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    run = flows.retrying.run(workspace=workspace, counter=str(counter), failures=2)
    assert run.status == "finished" and run.output == "ok after 3"
    assert run.steps["flaky"].attempts == 3
    tracker = Tracker(workspace)
    attempts = tracker.search_runs("retrying", filter="tags.pipeline.node = 'flaky'")
    assert sorted((r.tags["pipeline.attempt"], r.status) for r in attempts) == [
        ("1", "failed"),
        ("2", "failed"),
        ("3", "finished"),
    ]
    assert all("ConnectionError" in (r.error or "") for r in attempts if r.status == "failed")
    tracker.close()


def test_retries_exhausted_fail_the_pipeline(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(PipelineFailedError, match="attempt 3 failed"):
        flows.retrying.run(workspace=workspace, counter=str(tmp_path / "c"), failures=5)
    assert (tmp_path / "c").read_text() == "3"  # 1 try + 2 retries


def test_a_stop_request_interrupts_between_steps_and_resume_finishes(
    workspace: Workspace, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    run = runner.run_pipeline(
        workspace,
        flows.failing,
        {"counter": str(counter), "flag": str(tmp_path / "no-flag")},
        should_stop=counter.exists,  # stop as soon as the first step has run
    )
    assert run.status == "interrupted"
    assert run.steps["numbers"].status == "executed"
    assert run.nodes_with("skipped") == ["fragile", "double"]
    resumed = runner.resume(workspace, run.id)
    assert resumed.status == "finished" and resumed.executed == ["fragile", "double"]


def test_cache_failure_resume_and_schedules_on_each_metadata_backend(
    any_workspace: Workspace, tmp_path: Path
) -> None:
    from loopml.pipelines import schedules
    from loopml.pipelines.scheduler import Scheduler

    ws = any_workspace
    flag = tmp_path / "flag"
    flag.touch()
    params = {"counter": str(tmp_path / "c"), "flag": str(flag)}
    failed = runner.run_pipeline(ws, flows.failing, params, raise_on_failure=False)
    assert failed.status == "failed"
    flag.unlink()
    resumed = runner.resume(ws, failed.id[:10])  # an id prefix is enough
    assert resumed.status == "finished" and resumed.executed == ["fragile", "double"]
    assert flows.failing.run(workspace=ws, **params).cached == ["fragile", "double"]
    schedules.add_event_trigger(ws, "t", "tests.pipelines.flows:failing", "go", params=params)
    schedules.fire_event(ws, "go")
    fired = Scheduler(ws).tick()
    assert len(fired) == 1 and fired[0].run is not None and fired[0].run.status == "finished"
