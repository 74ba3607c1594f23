"""Where step tasks run: in this process, in local worker processes, or on Ray.

An executor takes tasks whose inputs are ready and hands back results as they finish;
the coordinator (``runner``) decides what is ready, so independent steps run at the same
time whenever the executor has room.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections import deque
from typing import Protocol

from loopml.core.errors import InvalidInputError
from loopml.pipelines.step import Step
from loopml.pipelines.task import StepTask, TaskResult, run_task

EXECUTORS = ("local", "processes", "ray")


class Executor(Protocol):
    name: str
    # Whether tasks must name their step by import path (they leave this process).
    remote: bool

    def submit(self, task: StepTask, step: Step) -> None: ...

    def wait(self) -> list[TaskResult]:
        """Block until at least one submitted task finishes; return all that have."""
        ...

    @property
    def busy(self) -> int: ...

    @property
    def capacity(self) -> int: ...

    def close(self) -> None: ...


class LocalExecutor:
    """One step after another, in this process: no start-up cost, easiest to debug."""

    name = "local"
    remote = False

    def __init__(self) -> None:
        self._done: deque[TaskResult] = deque()

    def submit(self, task: StepTask, step: Step) -> None:
        self._done.append(run_task(task, step.fn))

    def wait(self) -> list[TaskResult]:
        out = list(self._done)
        self._done.clear()
        return out

    @property
    def busy(self) -> int:
        return len(self._done)

    @property
    def capacity(self) -> int:
        return 1

    def close(self) -> None:
        self._done.clear()


class ProcessExecutor:
    """Independent steps in parallel on local worker processes.

    Workers are spawned, not forked: the coordinator holds database connections and
    threads that a forked child must not inherit. They import steps by name.
    """

    name = "processes"
    remote = True

    def __init__(self, max_workers: int | None = None) -> None:
        self._max = max_workers or max(2, os.cpu_count() or 2)
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self._max, mp_context=multiprocessing.get_context("spawn")
        )
        self._futures: dict[cf.Future[TaskResult], str] = {}

    def submit(self, task: StepTask, step: Step) -> None:
        self._futures[self._pool.submit(run_task, task)] = task.node

    def wait(self) -> list[TaskResult]:
        if not self._futures:
            return []
        done, _ = cf.wait(self._futures, return_when=cf.FIRST_COMPLETED)
        results = []
        for fut in done:
            node = self._futures.pop(fut)
            try:
                results.append(fut.result())
            except cf.process.BrokenProcessPool as exc:
                # Spawned workers re-import the __main__ script: an unguarded script that
                # starts a pipeline at import time kills them. Say so.
                results.append(_crashed(node, exc, _MAIN_HINT))
            except Exception as exc:  # the worker process died (killed, out of memory)
                results.append(_crashed(node, exc, ""))
        return results

    @property
    def busy(self) -> int:
        return len(self._futures)

    @property
    def capacity(self) -> int:
        return self._max

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


_MAIN_HINT = (
    " (if you start the pipeline from a script, put the call under "
    '`if __name__ == "__main__":` so worker processes can import the script)'
)


def _crashed(node: str, exc: BaseException, hint: str) -> TaskResult:
    import time

    now = time.time()
    error = f"the worker running {node} died: {exc!r}{hint}"
    return TaskResult(node, False, None, now, now, error=error)


def make_executor(name: str, *, max_workers: int | None, address: str | None) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(max_workers)
    if name == "ray":
        from loopml.pipelines.ray_executor import RayExecutor

        return RayExecutor(address=address, max_parallel=max_workers)
    raise InvalidInputError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
