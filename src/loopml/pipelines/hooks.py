"""What the runner tells the world while it schedules: the hook points of a pipeline run.

The runner decides what runs where and calls these around each node, as Kedro's runner
calls ``before_node_run`` / ``after_node_run`` / ``on_node_error``; everything that is
written down (tracking runs, lineage, step records, cache entries) is done by an
implementation of ``RunHooks``, the ``recorder``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from loopml.pipelines.cache_key import CacheKey
from loopml.pipelines.graph import Graph, Node
from loopml.pipelines.task import TaskResult

# Why a node executes instead of coming from the cache, as the runner knows it:
# "miss" (no entry under its key: the recorder explains against an earlier key),
# "no-cache" (the run asked for it), "step-cache-off" (@step(cache=False)),
# "missing" / "corrupted" (an entry whose output is gone or damaged), "retry".
Why = Literal["miss", "no-cache", "step-cache-off", "missing", "corrupted", "retry"]


@dataclass(frozen=True)
class CacheHit:
    """An output taken instead of executing: from the cache or from the run resumed."""

    kind: str
    digest: str
    artifact_id: str
    source_run: str | None
    status: str  # records.CACHED or records.REUSED


@dataclass(frozen=True)
class RunInfo:
    ref: str | None
    params: Mapping[str, Any]
    executor: str
    trigger: str
    resumed_from: str | None


class RunHooks(Protocol):
    def before_pipeline(self, graph: Graph, order: list[str], info: RunInfo) -> str:
        """Called once before any node; returns the pipeline run's id."""
        ...

    def before_step(self, node: Node, key: CacheKey, attempt: int, why: Why) -> None: ...

    def on_cache_hit(self, node: Node, key: CacheKey, hit: CacheHit) -> None: ...

    def after_step(self, node: Node, key: CacheKey, result: TaskResult) -> None: ...

    def on_step_error(self, node: Node, result: TaskResult, *, retrying: bool) -> None: ...

    def after_pipeline(self, status: str, message: str | None, detail: str | None) -> None:
        """``status`` is finished, failed or interrupted."""
        ...

    def on_pipeline_error(self, exc: BaseException) -> None:
        """The coordinator itself broke (database gone, Ctrl-C); it re-raises after."""
        ...
