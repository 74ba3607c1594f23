"""Steps done so far, reported through ``loopml.core.progress`` while a pipeline runs.

``Reporting`` wraps the hooks a run was given (the recorder by default) and counts a step
done when it came from the cache or finished, whether it succeeded or finally failed.
"""

from __future__ import annotations

from loopml.core.progress import Progress
from loopml.pipelines.cache_key import CacheKey
from loopml.pipelines.graph import Graph, Node
from loopml.pipelines.hooks import CacheHit, RunHooks, RunInfo, Why
from loopml.pipelines.task import TaskResult

STAGE = "steps"


class Reporting:
    """``RunHooks`` that pass every call on to ``inner`` and report steps done."""

    def __init__(self, inner: RunHooks, progress: Progress) -> None:
        self.inner = inner
        self.progress = progress
        self.total = 0
        self.done: set[str] = set()

    def _step_done(self, node: Node) -> None:
        self.done.add(node.name)
        self.progress(STAGE, len(self.done), self.total)

    def before_pipeline(self, graph: Graph, order: list[str], info: RunInfo) -> str:
        run_id = self.inner.before_pipeline(graph, order, info)
        self.total = len(order)
        self.progress(STAGE, 0, self.total)
        return run_id

    def before_step(self, node: Node, key: CacheKey, attempt: int, why: Why) -> None:
        self.inner.before_step(node, key, attempt, why)

    def on_cache_hit(self, node: Node, key: CacheKey, hit: CacheHit) -> None:
        self.inner.on_cache_hit(node, key, hit)
        self._step_done(node)

    def after_step(self, node: Node, key: CacheKey, result: TaskResult) -> None:
        self.inner.after_step(node, key, result)
        self._step_done(node)

    def on_step_error(self, node: Node, result: TaskResult, *, retrying: bool) -> None:
        self.inner.on_step_error(node, result, retrying=retrying)
        if not retrying:
            self._step_done(node)

    def after_pipeline(self, status: str, message: str | None, detail: str | None) -> None:
        self.inner.after_pipeline(status, message, detail)

    def on_pipeline_error(self, exc: BaseException) -> None:
        self.inner.on_pipeline_error(exc)
