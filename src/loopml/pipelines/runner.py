"""The coordinator: builds the DAG and decides what runs where. It only schedules.

For each node whose inputs are ready it computes the cache key (code version + params +
input digests); a verified cache hit (or, on resume, the resumed run's output) is taken,
anything else becomes a task for the executor. A failed task is retried as its step
allows; a failure after the last retry stops the run. Everything that is written down
about the run is done by the hooks it calls (``hooks.RunHooks``; the ``recorder`` by
default), as Kedro's runner calls its hooks around each node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.core.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from loopml.core.progress import Progress
from loopml.pipelines import params as params_mod
from loopml.pipelines import records, values
from loopml.pipelines.cache import StepCache
from loopml.pipelines.cache_key import CacheKey, canonical_json
from loopml.pipelines.definition import Pipeline
from loopml.pipelines.errors import PipelineFailedError
from loopml.pipelines.executors import EXECUTORS, Executor, make_executor
from loopml.pipelines.graph import Graph, Node
from loopml.pipelines.hooks import CacheHit, RunHooks, RunInfo, Why
from loopml.pipelines.progress import Reporting
from loopml.pipelines.recorder import Recorder
from loopml.pipelines.task import Input, StepRef, StepTask, TaskResult, step_ref
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


@dataclass(frozen=True)
class Output:
    kind: str
    digest: str


@dataclass
class _State:
    outputs: dict[str, Output] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    keys: dict[str, CacheKey] = field(default_factory=dict)
    failed: str | None = None
    failure: TaskResult | None = None


def run_pipeline(
    ws: Workspace,
    pipe: Pipeline,
    params: Mapping[str, Any],
    *,
    executor: str = "local",
    cache: bool = True,
    max_workers: int | None = None,
    address: str | None = None,
    trigger: str = "manual",
    reuse: Mapping[str, records.StepRecord] | None = None,
    resumed_from: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    raise_on_failure: bool = True,
    tracker: Tracker | None = None,
    hooks: RunHooks | None = None,
    progress: Progress | None = None,
) -> records.PipelineRun:
    """Run ``pipe`` with ``params``. Everything that can be checked is checked first.

    ``tracker`` is the caller's tracker for ``ws`` (one per workspace use); ``hooks``
    replaces the default recorder; ``progress`` hears ("steps", done, total)."""
    if executor not in EXECUTORS:
        raise InvalidInputError(
            f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}"
        )
    if max_workers is not None and (isinstance(max_workers, bool) or max_workers < 1):
        raise InvalidInputError("max_workers must be a positive whole number")
    graph = pipe.build(**params)
    order = graph.order()
    stored_params = params_mod.encode(graph.params, pipeline=pipe.name)
    refs: dict[str, StepRef] = {}
    if executor != "local":
        refs = {n: step_ref(graph.nodes[n].step.fn) for n in order}
    ex = make_executor(executor, max_workers=max_workers, address=address)
    run_hooks: RunHooks = hooks if hooks is not None else Recorder(ws, tracker)
    if progress is not None:
        run_hooks = Reporting(run_hooks, progress)
    runner = _Runner(
        ws,
        graph,
        order,
        cache=cache,
        reuse=dict(reuse or {}),
        refs=refs,
        hooks=run_hooks,
    )
    try:
        run_id = runner.run(
            ex,
            RunInfo(pipe.ref, stored_params, ex.name, trigger, resumed_from),
            should_stop=should_stop,
        )
    finally:
        ex.close()
    result = records.get(ws, run_id)
    st = runner.state
    if st.failed is not None and raise_on_failure:
        raise PipelineFailedError(
            runner.message,
            run_id=run_id,
            node=st.failed,
            traceback=st.failure.traceback if st.failure else None,
        )
    return result


def resume(
    ws: Workspace,
    run_id: str,
    pipe: Pipeline | None = None,
    *,
    executor: str | None = None,
    max_workers: int | None = None,
    address: str | None = None,
    raise_on_failure: bool = True,
    tracker: Tracker | None = None,
    progress: Progress | None = None,
) -> records.PipelineRun:
    """Run a failed or interrupted pipeline run again from where it stopped: nodes that
    succeeded are reused (when their key is unchanged), the rest run."""
    old = records.get(ws, run_id)
    if old.status not in (records.FAILED, records.INTERRUPTED):
        raise ConflictError(
            f"pipeline run {old.id} is {old.status}; only failed or interrupted runs resume"
        )
    if pipe is None:
        if not old.ref:
            raise InvalidInputError(f"pipeline run {old.id} has no import reference to rebuild")
        from loopml.pipelines.loader import load_pipeline

        pipe = load_pipeline(old.ref)
    if pipe.name != old.pipeline:
        raise InvalidInputError(
            f"pipeline run {old.id} is of pipeline {old.pipeline}, not {pipe.name}"
        )
    reuse = {n: s for n, s in old.steps.items() if s.succeeded}
    return run_pipeline(
        ws,
        pipe,
        params_mod.decode(ws, old.params),
        executor=executor or old.executor,
        max_workers=max_workers,
        address=address,
        trigger=f"resume:{old.id}",
        reuse=reuse,
        resumed_from=old.id,
        raise_on_failure=raise_on_failure,
        tracker=tracker,
        progress=progress,
    )


class _Runner:
    def __init__(
        self,
        ws: Workspace,
        graph: Graph,
        order: list[str],
        *,
        cache: bool,
        reuse: dict[str, records.StepRecord],
        refs: dict[str, StepRef],
        hooks: RunHooks,
    ) -> None:
        self.ws = ws
        self.graph = graph
        self.order = order
        self.use_cache = cache
        self.reuse = reuse
        self.refs = refs
        self.hooks = hooks
        self.cache = StepCache(ws)
        self.state = _State()
        self.message = ""
        self.storage_options = dict(getattr(ws.artifacts.fs, "storage_options", {}) or {})

    # the whole run --------------------------------------------------------------
    def run(self, ex: Executor, info: RunInfo, *, should_stop: Callable[[], bool] | None) -> str:
        run_id = self.hooks.before_pipeline(self.graph, self.order, info)
        try:
            stopped = self._loop(ex, should_stop)
        except BaseException as exc:
            self.hooks.on_pipeline_error(exc)
            raise
        st = self.state
        if st.failed is not None:
            failure = st.failure
            self.message = (
                f"pipeline {self.graph.name} failed at step {st.failed}: "
                f"{failure.error if failure else 'unknown error'}. See `loopml pipeline show "
                f"{run_id[:12]}`; fix it and `loopml pipeline resume {run_id[:12]}`"
            )
            detail = failure.traceback if failure else None
            self.hooks.after_pipeline(records.FAILED, self.message, detail)
        elif stopped:
            self.hooks.after_pipeline(
                records.INTERRUPTED,
                "interrupted: stopped before completion (resumable)",
                "stopped before completion",
            )
        else:
            self.hooks.after_pipeline(records.FINISHED, None, None)
        return run_id

    def _loop(self, ex: Executor, should_stop: Callable[[], bool] | None) -> bool:
        st = self.state
        pending = list(self.order)
        stopped = False
        while True:
            progressed = True
            while progressed and st.failed is None and not stopped:
                progressed = False
                for name in list(pending):
                    if should_stop is not None and should_stop():
                        stopped = True
                        break
                    if ex.busy >= ex.capacity:
                        break
                    node = self.graph.nodes[name]
                    if all(d in st.outputs for d in node.deps.values()):
                        pending.remove(name)
                        self._start(ex, node)
                        progressed = True
            if not ex.busy:
                return stopped
            for result in ex.wait():
                self._finish(ex, result)

    # one node -------------------------------------------------------------------
    def _start(self, ex: Executor, node: Node) -> None:
        spec = node.step.spec
        inputs, literal_params = self._inputs(node)
        key = CacheKey(
            spec.name,
            spec.code_version,
            spec.output_kind,
            literal_params,
            {k: v.digest for k, v in inputs.items()},
        )
        self.state.keys[node.name] = key
        prior = self.reuse.get(node.name)
        if prior is not None and prior.cache_key == key.digest and self._intact(prior):
            assert prior.output_kind and prior.output_digest and prior.output_artifact_id
            hit = CacheHit(
                prior.output_kind,
                prior.output_digest,
                prior.output_artifact_id,
                prior.run_id,
                records.REUSED,
            )
            self._take(node, key, hit)
            return
        why: Why = "no-cache" if not self.use_cache else "step-cache-off"
        if self.use_cache and spec.cache:
            lookup = self.cache.lookup(key.digest)
            if lookup.entry is not None:
                e = lookup.entry
                hit = CacheHit(
                    e.output_kind,
                    e.output_digest,
                    e.output_artifact_id,
                    e.execution_id,
                    records.CACHED,
                )
                self._take(node, key, hit)
                return
            why = "corrupted" if lookup.rejected == "corrupted" else "miss"
            if lookup.rejected == "missing":
                why = "missing"
        self._submit(ex, node, inputs, why)

    def _take(self, node: Node, key: CacheKey, hit: CacheHit) -> None:
        self.hooks.on_cache_hit(node, key, hit)
        self.state.outputs[node.name] = Output(hit.kind, hit.digest)

    def _inputs(self, node: Node) -> tuple[dict[str, Input], dict[str, str]]:
        """(inputs by digest, literal params as canonical JSON)."""
        from loopml.data.dataset import Dataset

        inputs: dict[str, Input] = {}
        literal: dict[str, str] = {}
        for arg, value in node.args.items():
            upstream = node.deps.get(arg)
            if upstream is not None:
                out = self.state.outputs[upstream]
                inputs[arg] = Input(out.kind, out.digest)
            elif isinstance(value, Dataset):
                inputs[arg] = Input("dataset", value.digest)
            else:
                literal[arg] = canonical_json(value, what=f"argument {arg!r} of {node.name}")
        return inputs, literal

    def _intact(self, prior: records.StepRecord) -> bool:
        if not (prior.output_kind and prior.output_digest and prior.output_artifact_id):
            return False
        try:
            values.verify(
                self.ws.artifacts, prior.output_kind, prior.output_digest, what=prior.node
            )
        except NotFoundError:
            return False
        except (IntegrityError, InvalidInputError):
            values.purge_corrupted(self.ws.artifacts, prior.output_kind, prior.output_digest)
            return False
        return True

    def _submit(self, ex: Executor, node: Node, inputs: dict[str, Input], why: Why) -> None:
        spec = node.step.spec
        attempt = self.state.attempts.get(node.name, 0) + 1
        self.state.attempts[node.name] = attempt
        self.hooks.before_step(node, self.state.keys[node.name], attempt, why)
        task = StepTask(
            node=node.name,
            step=self.refs.get(node.name)
            or StepRef(node.step.fn.__module__, node.step.fn.__qualname__, None),
            code_version=spec.code_version,
            output_kind=spec.output_kind,
            artifacts_url=self.ws.artifacts.url,
            storage_options=self.storage_options,
            inputs=inputs,
            literals={k: v for k, v in node.literals.items()},
            delay=spec.retry_delay if attempt > 1 else 0.0,
        )
        ex.submit(task, node.step)

    def _finish(self, ex: Executor, result: TaskResult) -> None:
        node = self.graph.nodes[result.node]
        st = self.state
        if not result.ok or result.output is None:
            retrying = (
                result.retryable
                and st.attempts[node.name] <= node.step.spec.retries
                and st.failed is None
            )
            self.hooks.on_step_error(node, result, retrying=retrying)
            if retrying:
                self._submit(ex, node, self._inputs(node)[0], "retry")
            elif st.failed is None:
                st.failed, st.failure = node.name, result
            return
        self.hooks.after_step(node, st.keys[node.name], result)
        st.outputs[node.name] = Output(result.output.kind, result.output.digest)
