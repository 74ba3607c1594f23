"""Independent steps in parallel on local processes, and the same pipelines on Ray."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from loopml.pipelines.errors import PipelineFailedError
from loopml.store.workspace import Workspace
from tests.pipelines import flows


def test_independent_steps_run_at_the_same_time_on_worker_processes(
    workspace: Workspace, tmp_path: Path
) -> None:
    # Each ``meet`` step waits for the other to start: run one after the other, the first
    # would time out. Both finishing proves they ran concurrently.
    run = flows.rendezvous.run(
        workspace=workspace, folder=str(tmp_path), executor="processes", max_workers=2
    )
    assert run.status == "finished"
    pid_a, pid_b = run.output
    assert pid_a != pid_b
    assert os.getpid() not in (pid_a, pid_b)
    assert run.executed == ["meet", "meet_2", "pair"]


def test_failures_and_retries_on_worker_processes(workspace: Workspace, tmp_path: Path) -> None:
    run = flows.retrying.run(
        workspace=workspace, counter=str(tmp_path / "c"), failures=1, executor="processes"
    )
    assert run.output == "ok after 2" and run.steps["flaky"].attempts == 2
    (tmp_path / "flag").touch()
    with pytest.raises(PipelineFailedError, match="RuntimeError: flag"):
        flows.failing.run(
            workspace=workspace,
            counter=str(tmp_path / "n"),
            flag=str(tmp_path / "flag"),
            executor="processes",
        )


@pytest.mark.slow
def test_training_on_ray_matches_local_and_shares_the_cache(
    workspace: Workspace, local_ray: Any, tmp_path: Path
) -> None:
    on_ray = flows.training.run(workspace=workspace, depth=3, executor="ray")
    assert on_ray.status == "finished" and on_ray.executor == "ray"
    assert on_ray.executed == ["load", "train", "evaluate"]
    # Steps ran in Ray worker processes, exchanging data through the artifact store.
    assert on_ray.output["rows"] > 20_000
    local = flows.training.run(workspace=workspace, depth=3, cache=False)
    assert local.output == pytest.approx(on_ray.output)
    assert flows.training.run(workspace=workspace, depth=3).executed == []

    parallel = flows.rendezvous.run(workspace=workspace, folder=str(tmp_path), executor="ray")
    pid_a, pid_b = parallel.output
    assert pid_a != pid_b and os.getpid() not in (pid_a, pid_b)
