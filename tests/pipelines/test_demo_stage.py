"""The demo's pipeline stage: every step executes once, then every step is cached."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from loopml.demo.pipeline_stage import run_pipeline_stage
from loopml.store.workspace import Workspace


@pytest.mark.slow
def test_demo_pipeline_runs_then_is_entirely_cached(workspace: Workspace) -> None:
    buf = io.StringIO()
    result = run_pipeline_stage(workspace, Console(file=buf, width=120), max_iter=5)
    steps = ["load", "load_2", "validate", "features", "train", "features_2", "evaluate"]
    assert result.first.executed == steps
    assert result.second.cached == steps and result.second.executed == []
    assert 0.55 < result.second.output["holdout_auc"] < 0.9
    assert result.second.value("validate")["kinds"] is not None
    assert "cached" in buf.getvalue()
