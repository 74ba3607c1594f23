"""The demo's training pipeline (``loopml.demo.run:delay_training``, which the loop
retrains through): every step executes once, then every step is cached."""

from __future__ import annotations

import pytest

from loopml.demo.replay import month_start
from loopml.demo.run import delay_training
from loopml.pipelines.runner import run_pipeline
from loopml.store.workspace import Workspace


@pytest.mark.slow
def test_demo_pipeline_runs_then_is_entirely_cached(workspace: Workspace) -> None:
    params = {"until": month_start(2)}  # January
    first = run_pipeline(workspace, delay_training, params)
    second = run_pipeline(workspace, delay_training, params)
    steps = ["history_until", "fit"]
    assert first.executed == steps
    assert second.cached == steps and second.executed == []
    data = second.output["data"]
    assert data.height > 20_000 and set(data["month"].unique()) == {1}
    assert hasattr(second.output["model"], "predict_proba")
