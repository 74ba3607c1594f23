"""Steps as Ray tasks. Ray is imported here only, so ``import loopml`` never loads it.

Tasks exchange data through the artifact store (by digest), never Ray's object store,
so with an S3 artifact store the same pipeline runs across the machines of a cluster.
"""

from __future__ import annotations

from typing import Any

from loopml.core.errors import ConfigError
from loopml.pipelines.step import Step
from loopml.pipelines.task import StepTask, TaskResult, run_task


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor='ray' needs Ray: pip install 'loopml[ray]'") from None
    return ray


class RayExecutor:
    name = "ray"
    remote = True

    def __init__(self, *, address: str | None = None, max_parallel: int | None = None) -> None:
        ray = _ray()
        if not ray.is_initialized():
            # A running local instance or the given cluster; Ray starts one if neither.
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        self._ray = ray
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._max = max_parallel or max(1, cpus)
        self._pending: dict[Any, str] = {}

    def submit(self, task: StepTask, step: Step) -> None:
        self._pending[self._remote.remote(task)] = task.node

    def wait(self) -> list[TaskResult]:
        if not self._pending:
            return []
        ready, _ = self._ray.wait(list(self._pending), num_returns=1)
        results = []
        for ref in ready:
            node = self._pending.pop(ref)
            try:
                results.append(self._ray.get(ref))
            except Exception as exc:  # the worker died or the task could not be shipped
                import time

                now = time.time()
                results.append(
                    TaskResult(node, False, None, now, now, error=f"Ray task {node} failed: {exc}")
                )
        return results

    @property
    def busy(self) -> int:
        return len(self._pending)

    @property
    def capacity(self) -> int:
        return self._max

    def close(self) -> None:
        for ref in list(self._pending):
            self._ray.cancel(ref, force=True)
        self._pending.clear()
