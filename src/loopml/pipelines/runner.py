"""The coordinator: builds the DAG, decides what runs where, and records everything.

For each node whose inputs are ready it computes the cache key (code version + params +
input digests); a verified cache hit (or, on resume, the resumed run's output) is
recorded as cached, anything else becomes a task for the executor. Each step execution
(every attempt, every cached hit) is a tracking run in the pipeline's experiment, linked
to its inputs and outputs in the lineage graph. A failure after the last retry fails the
pipeline run with the traceback recorded; nodes not yet run are marked skipped.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.core import clock
from loopml.core.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from loopml.pipelines import params as params_mod
from loopml.pipelines import records, values
from loopml.pipelines.cache import StepCache
from loopml.pipelines.cache_key import cache_key, canonical_json
from loopml.pipelines.definition import Pipeline
from loopml.pipelines.errors import PipelineFailedError
from loopml.pipelines.executors import EXECUTORS, Executor, make_executor
from loopml.pipelines.graph import Graph, Node
from loopml.pipelines.task import Input, StepRef, StepTask, TaskResult, step_ref
from loopml.store.workspace import Workspace
from loopml.tracking.active_run import FAILED, FINISHED, ActiveRun
from loopml.tracking.tracker import Tracker


@dataclass(frozen=True)
class Output:
    kind: str
    digest: str
    artifact_id: str


@dataclass
class _State:
    outputs: dict[str, Output] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    active: dict[str, ActiveRun] = field(default_factory=dict)
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
) -> records.PipelineRun:
    """Run ``pipe`` with ``params``. Everything that can be checked is checked first."""
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
    runner = _Runner(ws, graph, order, cache=cache, reuse=dict(reuse or {}), refs=refs)
    ex = make_executor(executor, max_workers=max_workers, address=address)
    try:
        return runner.run(
            ex,
            ref=pipe.ref,
            stored_params=stored_params,
            trigger=trigger,
            resumed_from=resumed_from,
            should_stop=should_stop,
            raise_on_failure=raise_on_failure,
        )
    finally:
        ex.close()


def resume(
    ws: Workspace,
    run_id: str,
    pipe: Pipeline | None = None,
    *,
    executor: str | None = None,
    max_workers: int | None = None,
    address: str | None = None,
    raise_on_failure: bool = True,
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
    ) -> None:
        self.ws = ws
        self.graph = graph
        self.order = order
        self.use_cache = cache
        self.reuse = reuse
        self.refs = refs
        self.cache = StepCache(ws)
        self.tracker = Tracker(ws)
        self.state = _State()
        self.run_id = ""
        self.storage_options = dict(getattr(ws.artifacts.fs, "storage_options", {}) or {})

    # the whole run --------------------------------------------------------------
    def run(
        self,
        ex: Executor,
        *,
        ref: str | None,
        stored_params: dict[str, Any],
        trigger: str,
        resumed_from: str | None,
        should_stop: Callable[[], bool] | None,
        raise_on_failure: bool,
    ) -> records.PipelineRun:
        g = self.graph
        prun = self.tracker.start_run(
            g.name,
            name=g.name,
            params={k: params_mod.as_text(v) for k, v in g.params.items()},
            tags={"pipeline": g.name, "pipeline.executor": ex.name, "pipeline.trigger": trigger},
        )
        self.run_id = prun.id
        try:
            records.create(
                self.ws,
                prun.id,
                g,
                self.order,
                ref=ref,
                params=stored_params,
                executor=ex.name,
                trigger=trigger,
                resumed_from=resumed_from,
                code_versions={n: g.nodes[n].step.spec.code_version for n in self.order},
            )
            for name, value in g.params.items():
                artifact_id = getattr(value, "artifact_id", None)
                if isinstance(artifact_id, str) and hasattr(value, "digest"):
                    self.ws.lineage.link(prun.id, artifact_id, "input", role=name)
            stopped = self._loop(ex, should_stop)
        except BaseException as exc:
            # The coordinator itself broke (database gone, Ctrl-C): record, then re-raise.
            for active in self.state.active.values():
                active.end(FAILED, error="the pipeline run was aborted")
            detail = "".join(traceback.format_exception(exc))[-20_000:]
            records.finish(self.ws, prun.id, records.FAILED, detail)
            prun.end(FAILED, error=detail)
            self.tracker.close()
            raise
        st = self.state
        if st.failed is not None:
            failure = st.failure
            message = (
                f"pipeline {g.name} failed at step {st.failed}: "
                f"{failure.error if failure else 'unknown error'}. See `loopml pipeline show "
                f"{prun.id[:12]}`; fix it and `loopml pipeline resume {prun.id[:12]}`"
            )
            records.finish(self.ws, prun.id, records.FAILED, failure.traceback if failure else None)
            prun.end(FAILED, error=message)
        elif stopped:
            records.finish(self.ws, prun.id, records.INTERRUPTED, "stopped before completion")
            prun.end(FAILED, error="interrupted: stopped before completion (resumable)")
        else:
            self._link_outputs(prun)
            records.finish(self.ws, prun.id, records.FINISHED)
            prun.end(FINISHED)
        self.tracker.close()
        result = records.get(self.ws, prun.id)
        if st.failed is not None and raise_on_failure:
            raise PipelineFailedError(
                message,
                run_id=prun.id,
                node=st.failed,
                traceback=failure.traceback if failure else None,
            )
        return result

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
        inputs, literal_params, input_artifacts = self._inputs(node)
        key = cache_key(
            spec.name,
            spec.code_version,
            spec.output_kind,
            literal_params,
            {k: v.digest for k, v in inputs.items()},
        )
        self.state.keys[node.name] = key
        prior = self.reuse.get(node.name)
        if prior is not None and prior.cache_key == key and self._intact(prior):
            assert prior.output_kind and prior.output_digest and prior.output_artifact_id
            out = Output(prior.output_kind, prior.output_digest, prior.output_artifact_id)
            self._record_hit(node, key, out, input_artifacts, records.REUSED, prior.run_id)
            return
        rejected = ""
        if self.use_cache and spec.cache:
            lookup = self.cache.lookup(key)
            if lookup.entry is not None:
                e = lookup.entry
                out = Output(e.output_kind, e.output_digest, e.output_artifact_id)
                self._record_hit(node, key, out, input_artifacts, records.CACHED, e.execution_id)
                return
            rejected = lookup.rejected
        self._submit(ex, node, key, inputs, literal_params, input_artifacts, rejected)

    def _inputs(self, node: Node) -> tuple[dict[str, Input], dict[str, str], dict[str, str]]:
        """(inputs by digest, literal params as canonical JSON, input artifact ids)."""
        from loopml.data.dataset import Dataset

        inputs: dict[str, Input] = {}
        artifacts: dict[str, str] = {}
        literal: dict[str, str] = {}
        for arg, value in node.args.items():
            upstream = node.deps.get(arg)
            if upstream is not None:
                out = self.state.outputs[upstream]
                inputs[arg] = Input(out.kind, out.digest)
                artifacts[arg] = out.artifact_id
            elif isinstance(value, Dataset):
                inputs[arg] = Input("dataset", value.digest)
                artifacts[arg] = value.artifact_id
            else:
                literal[arg] = canonical_json(value, what=f"argument {arg!r} of {node.name}")
        return inputs, literal, artifacts

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

    def _start_run(self, node: Node, key: str, extra: dict[str, str]) -> ActiveRun:
        spec = node.step.spec
        run = self.tracker.start_run(
            self.graph.name,
            name=f"{self.graph.name}.{node.name}",
            params={k: params_mod.as_text(v) for k, v in node.literals.items()},
            tags={
                "pipeline": self.graph.name,
                "pipeline.run_id": self.run_id,
                "pipeline.node": node.name,
                "pipeline.step": spec.name,
                "pipeline.code_version": spec.code_version,
                "pipeline.cache_key": key,
                **extra,
            },
            environment_of=self.run_id,
        )
        return run

    def _record_hit(
        self,
        node: Node,
        key: str,
        out: Output,
        input_artifacts: dict[str, str],
        status: str,
        source_run: str | None,
    ) -> None:
        run = self._start_run(
            node, key, {"pipeline.cached": "true", "pipeline.cached_from": source_run or ""}
        )
        lineage = self.ws.lineage
        for role, artifact_id in input_artifacts.items():
            lineage.link(run.id, artifact_id, "input", role=role)
        lineage.link(run.id, out.artifact_id, "output", role="output")
        run.end(FINISHED)
        now = clock.now()
        records.update_step(
            self.ws,
            self.run_id,
            node.name,
            run_id=run.id,
            status=status,
            cache_key=key,
            output_kind=out.kind,
            output_digest=out.digest,
            output_artifact_id=out.artifact_id,
            start_time=now,
            end_time=now,
        )
        self.state.outputs[node.name] = out

    def _submit(
        self,
        ex: Executor,
        node: Node,
        key: str,
        inputs: dict[str, Input],
        literal_params: dict[str, str],
        input_artifacts: dict[str, str],
        rejected: str,
    ) -> None:
        spec = node.step.spec
        attempt = self.state.attempts.get(node.name, 0) + 1
        self.state.attempts[node.name] = attempt
        extra = {"pipeline.cached": "false", "pipeline.attempt": str(attempt)}
        if rejected:
            extra["pipeline.cache_rejected"] = rejected
        run = self._start_run(node, key, extra)
        for role, artifact_id in input_artifacts.items():
            self.ws.lineage.link(run.id, artifact_id, "input", role=role)
        self.state.active[node.name] = run
        changes: dict[str, Any] = {"run_id": run.id, "status": "running", "attempts": attempt}
        if attempt == 1:
            changes.update(cache_key=key, start_time=clock.now())
        records.update_step(self.ws, self.run_id, node.name, **changes)
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
        spec = node.step.spec
        run = self.state.active.pop(node.name)
        if result.logs:
            blob = self.ws.artifacts.put_bytes(result.logs.encode())
            logs = self.ws.lineage.add_artifact(
                blob.digest, "logs", blob.size, name=f"{self.graph.name}/{node.name}/logs"
            )
            self.ws.lineage.link(run.id, logs.id, "output", role="logs")
        run.log_metric("step_seconds", max(0.0, result.end_time - result.start_time))
        if not result.ok or result.output is None:
            run.end(FAILED, error=result.traceback or result.error)
            attempts = self.state.attempts[node.name]
            if result.retryable and attempts <= spec.retries and self.state.failed is None:
                self._retry(ex, node)
                return
            records.update_step(
                self.ws,
                self.run_id,
                node.name,
                status=records.FAILED,
                end_time=clock.now(),
                error=result.traceback or result.error,
            )
            if self.state.failed is None:
                self.state.failed, self.state.failure = node.name, result
            return
        stored = result.output
        if result.metrics:
            run.log_metrics(result.metrics)
        if stored.artifact_id is not None:
            artifact_id = stored.artifact_id
        else:
            artifact_id = self.ws.lineage.add_artifact(
                stored.digest,
                stored.kind,
                stored.size,
                name=f"{self.graph.name}/{node.name}",
                properties={"pipeline": self.graph.name, "node": node.name, "step": spec.name},
            ).id
        self.ws.lineage.link(run.id, artifact_id, "output", role="output")
        run.end(FINISHED)
        key = self.state.keys[node.name]
        if spec.cache:
            self.cache.record(
                key,
                step=spec.name,
                code_version=spec.code_version,
                output=stored,
                artifact_id=artifact_id,
                execution_id=run.id,
            )
        records.update_step(
            self.ws,
            self.run_id,
            node.name,
            status=records.EXECUTED,
            output_kind=stored.kind,
            output_digest=stored.digest,
            output_artifact_id=artifact_id,
            end_time=clock.now(),
        )
        self.state.outputs[node.name] = Output(stored.kind, stored.digest, artifact_id)

    def _retry(self, ex: Executor, node: Node) -> None:
        inputs, literal_params, input_artifacts = self._inputs(node)
        self._submit(
            ex, node, self.state.keys[node.name], inputs, literal_params, input_artifacts, ""
        )

    def _link_outputs(self, prun: ActiveRun) -> None:
        """The pipeline run's own lineage: the outputs its function returned."""
        seen: set[tuple[str, str]] = set()

        def walk(spec: Any, role: str) -> None:
            from loopml.pipelines.graph import Ref

            if isinstance(spec, Ref):
                out = self.state.outputs.get(spec.node)
                if out is not None and (out.artifact_id, role) not in seen:
                    seen.add((out.artifact_id, role))
                    self.ws.lineage.link(prun.id, out.artifact_id, "output", role=role)
            elif isinstance(spec, dict):
                for k, v in spec.items():
                    walk(v, k)
            elif isinstance(spec, list):
                for i, v in enumerate(spec):
                    walk(v, f"{role}[{i}]")

        walk(self.graph.output, "output")
