"""Why a step re-ran: cache keys decode into their parts, and a miss is explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from loopml.cli import pipeline_cmd
from loopml.pipelines.cache import StepCache
from loopml.pipelines.cache_key import CacheKey, explain
from loopml.pipelines.graph import Graph, Node
from loopml.pipelines.hooks import CacheHit, RunInfo, Why
from loopml.pipelines.recorder import Recorder
from loopml.pipelines.runner import run_pipeline
from loopml.pipelines.task import TaskResult
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests.pipelines.usermod import MODULE_V1, reload_module


def test_a_key_decodes_into_its_parts_and_differences_are_named() -> None:
    before = CacheKey("train", "b3:aa", "model", {"depth": "6", "lr": "0.1"}, {"data": "b3:1"})
    now = CacheKey("train", "b3:bb", "model", {"depth": "8", "seed": "1"}, {"data": "b3:2"})
    assert CacheKey.from_json(before.to_json()) == before
    assert CacheKey.from_json(before.to_json()).digest == before.digest  # type: ignore[union-attr]
    assert CacheKey.from_json({"format": "other"}) is None
    assert CacheKey.from_json({"format": before.to_json()["format"], "step": 1}) is None
    assert explain(before, now) == [
        "code of step train changed",
        "param depth 6 -> 8",
        "param lr removed (was 0.1)",
        "param seed added (1)",
        "input data digest changed",
    ]
    assert explain(None, now) == ["no earlier run of this step to reuse"]
    assert "no cache entry" in explain(now, now)[0]


def test_each_executed_step_records_why_it_was_not_cached(
    any_workspace: Workspace, user_module: tuple[Path, str]
) -> None:
    workspace = any_workspace  # key parts as JSON on SQLite and PostgreSQL
    folder, name = user_module
    mod = reload_module(folder, name, MODULE_V1, 1)
    tracker = Tracker(workspace)
    first = run_pipeline(workspace, mod.chain, {}, tracker=tracker)
    assert first.steps["source"].reason == "no earlier run of this step to reuse"

    # The cache entry keeps the key's parts: the key decodes back into them.
    entry = StepCache(workspace).get(first.steps["transform"].cache_key or "")
    assert entry is not None
    decoded = entry.decode()
    assert decoded is not None and decoded.digest == entry.key
    assert decoded.inputs == {"values": first.steps["source"].output_digest}

    changed = run_pipeline(workspace, mod.chain, {"n": 5}, tracker=tracker)
    assert changed.steps["source"].reason == "param n 4 -> 5"
    assert changed.steps["transform"].reason == "input values digest changed"
    assert changed.steps["source"].key_parts == {
        **(first.steps["source"].key_parts or {}),
        "params": {"n": "5"},
    }

    mod = reload_module(
        folder, name, MODULE_V1.replace("return x * SCALE", "return x * SCALE + 1"), 2
    )
    edited = run_pipeline(workspace, mod.chain, {"n": 5}, tracker=tracker)
    assert edited.cached == ["source"]
    assert edited.steps["transform"].reason == "code of step transform changed"
    assert edited.steps["total"].reason == "input values digest changed"

    forced = run_pipeline(workspace, mod.chain, {"n": 5}, cache=False, tracker=tracker)
    assert {r.reason for r in forced.steps.values()} == {"--no-cache"}
    # The reason is also on each step's tracking run.
    step_run = tracker.get_run(forced.steps["total"].run_id or "")
    assert step_run.tags["pipeline.reason"] == "--no-cache"
    tracker.close()


def test_pipeline_show_says_why_each_step_re_ran(
    loopml_home: Path, user_module: tuple[Path, str]
) -> None:
    from loopml.api import fluent

    folder, name = user_module
    mod = reload_module(folder, name, MODULE_V1, 1)
    run_pipeline(fluent.workspace(), mod.chain, {"n": 4})
    again = run_pipeline(fluent.workspace(), mod.chain, {"n": 6})
    app = typer.Typer()
    app.add_typer(pipeline_cmd.app, name="pipeline")
    result = CliRunner().invoke(app, ["pipeline", "show", again.id[:12]], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "re-ran: param n 4 -> 6" in result.output
    assert "re-ran: input values digest changed" in result.output


class _Watching(Recorder):
    """The recorder, plus a log of the hook calls the runner makes."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        self.calls: list[tuple[str, str]] = []

    def before_pipeline(self, graph: Graph, order: list[str], info: RunInfo) -> str:
        self.calls.append(("before_pipeline", info.trigger))
        return super().before_pipeline(graph, order, info)

    def before_step(self, node: Node, key: CacheKey, attempt: int, why: Why) -> None:
        self.calls.append(("before_step", f"{node.name}:{why}"))
        super().before_step(node, key, attempt, why)

    def on_cache_hit(self, node: Node, key: CacheKey, hit: CacheHit) -> None:
        self.calls.append(("on_cache_hit", node.name))
        super().on_cache_hit(node, key, hit)

    def after_step(self, node: Node, key: CacheKey, result: TaskResult) -> None:
        self.calls.append(("after_step", node.name))
        super().after_step(node, key, result)

    def after_pipeline(self, status: str, message: str | None, detail: str | None) -> None:
        self.calls.append(("after_pipeline", status))
        super().after_pipeline(status, message, detail)

    def on_pipeline_error(self, exc: BaseException) -> None:
        self.calls.append(("on_pipeline_error", type(exc).__name__))
        super().on_pipeline_error(exc)


def test_the_runner_reports_through_hooks(
    workspace: Workspace, user_module: tuple[Path, str]
) -> None:
    folder, name = user_module
    mod = reload_module(folder, name, MODULE_V1, 1)
    hooks = _Watching(workspace)
    run_pipeline(workspace, mod.chain, {}, hooks=hooks)
    assert hooks.calls == [
        ("before_pipeline", "manual"),
        ("before_step", "source:miss"),
        ("after_step", "source"),
        ("before_step", "transform:miss"),
        ("after_step", "transform"),
        ("before_step", "total:miss"),
        ("after_step", "total"),
        ("after_pipeline", "finished"),
    ]
    hooks = _Watching(workspace)
    run_pipeline(workspace, mod.chain, {}, hooks=hooks, trigger="again")
    kinds: list[Any] = [c[0] for c in hooks.calls]
    assert kinds == ["before_pipeline", *["on_cache_hit"] * 3, "after_pipeline"]
