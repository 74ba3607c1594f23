"""Everything a pipeline run writes down, called by the runner through its hooks.

Each step execution (every attempt, every cache hit) is a tracking run in the pipeline's
experiment, linked to its inputs and outputs in the lineage graph; each node has a step
record (status, cache key and its decoded parts, why it executed, output); executed
outputs are entered in the step cache. The pipeline run itself is a tracking run linked
to what the pipeline function returned.
"""

from __future__ import annotations

import traceback
from typing import Any

from loopml.core import clock
from loopml.pipelines import params as params_mod
from loopml.pipelines import records
from loopml.pipelines.cache import StepCache
from loopml.pipelines.cache_key import CacheKey, explain
from loopml.pipelines.graph import Graph, Node, Ref
from loopml.pipelines.hooks import CacheHit, RunInfo, Why
from loopml.pipelines.task import TaskResult
from loopml.store.workspace import Workspace
from loopml.tracking.active_run import FAILED, FINISHED, ActiveRun
from loopml.tracking.tracker import Tracker

_WHY_TEXT = {
    "no-cache": "--no-cache",
    "step-cache-off": "the step is not cached (@step(cache=False))",
    "missing": "the cached output was missing from the artifact store",
    "corrupted": "the cached output was corrupted",
    "retry": "retry after a failed attempt",
}


class Recorder:
    """``RunHooks`` that record a run in tracking, lineage and the pipeline tables.

    ``tracker`` is the caller's (one per workspace use); without one the recorder makes
    its own and closes it when the run ends.
    """

    def __init__(self, ws: Workspace, tracker: Tracker | None = None) -> None:
        self.ws = ws
        self._own_tracker = tracker is None
        self.tracker = tracker if tracker is not None else Tracker(ws)
        self.cache = StepCache(ws)
        self.run_id = ""
        self._graph: Graph | None = None
        self._prun: ActiveRun | None = None
        self._active: dict[str, ActiveRun] = {}
        self._artifacts: dict[str, str] = {}  # node -> lineage id of its output

    @property
    def graph(self) -> Graph:
        assert self._graph is not None, "before_pipeline was not called"
        return self._graph

    # the pipeline run ---------------------------------------------------------------
    def before_pipeline(self, graph: Graph, order: list[str], info: RunInfo) -> str:
        self._graph = graph
        prun = self.tracker.start_run(
            graph.name,
            name=graph.name,
            params={k: params_mod.as_text(v) for k, v in graph.params.items()},
            tags={
                "pipeline": graph.name,
                "pipeline.executor": info.executor,
                "pipeline.trigger": info.trigger,
            },
        )
        self._prun, self.run_id = prun, prun.id
        try:
            records.create(
                self.ws,
                prun.id,
                graph,
                order,
                ref=info.ref,
                params=dict(info.params),
                executor=info.executor,
                trigger=info.trigger,
                resumed_from=info.resumed_from,
                code_versions={n: graph.nodes[n].step.spec.code_version for n in order},
            )
            for name, value in graph.params.items():
                artifact_id = getattr(value, "artifact_id", None)
                if isinstance(artifact_id, str) and hasattr(value, "digest"):
                    self.ws.lineage.link(prun.id, artifact_id, "input", role=name)
        except BaseException as exc:
            self.on_pipeline_error(exc)
            raise
        return prun.id

    def after_pipeline(self, status: str, message: str | None, detail: str | None) -> None:
        assert self._prun is not None
        if status == records.FINISHED:
            self._link_outputs(self._prun)
            records.finish(self.ws, self.run_id, records.FINISHED)
            self._prun.end(FINISHED)
        else:
            records.finish(self.ws, self.run_id, status, detail)
            self._prun.end(FAILED, error=message)
        self._close()

    def on_pipeline_error(self, exc: BaseException) -> None:
        for active in self._active.values():
            active.end(FAILED, error="the pipeline run was aborted")
        self._active.clear()
        detail = "".join(traceback.format_exception(exc))[-20_000:]
        if self._prun is not None:
            records.finish(self.ws, self.run_id, records.FAILED, detail)
            self._prun.end(FAILED, error=detail)
        self._close()

    def _close(self) -> None:
        if self._own_tracker:
            self.tracker.close()

    # one node ---------------------------------------------------------------------
    def _input_artifacts(self, node: Node) -> dict[str, str]:
        from loopml.data.dataset import Dataset

        found: dict[str, str] = {}
        for arg, value in node.args.items():
            if isinstance(value, Ref):
                found[arg] = self._artifacts[value.node]
            elif isinstance(value, Dataset):
                found[arg] = value.artifact_id
        return found

    def _start_run(self, node: Node, key: CacheKey, extra: dict[str, str]) -> ActiveRun:
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
                "pipeline.cache_key": key.digest,
                **extra,
            },
            environment_of=self.run_id,
        )
        for role, artifact_id in self._input_artifacts(node).items():
            self.ws.lineage.link(run.id, artifact_id, "input", role=role)
        return run

    def on_cache_hit(self, node: Node, key: CacheKey, hit: CacheHit) -> None:
        run = self._start_run(
            node, key, {"pipeline.cached": "true", "pipeline.cached_from": hit.source_run or ""}
        )
        self.ws.lineage.link(run.id, hit.artifact_id, "output", role="output")
        run.end(FINISHED)
        now = clock.now()
        records.update_step(
            self.ws,
            self.run_id,
            node.name,
            run_id=run.id,
            status=hit.status,
            cache_key=key.digest,
            key_parts=key.to_json(),
            output_kind=hit.kind,
            output_digest=hit.digest,
            output_artifact_id=hit.artifact_id,
            start_time=now,
            end_time=now,
        )
        self._artifacts[node.name] = hit.artifact_id

    def before_step(self, node: Node, key: CacheKey, attempt: int, why: Why) -> None:
        extra = {"pipeline.cached": "false", "pipeline.attempt": str(attempt)}
        if why in ("missing", "corrupted"):
            extra["pipeline.cache_rejected"] = why
        changes: dict[str, Any] = {"status": "running", "attempts": attempt}
        if attempt == 1:
            reason = self._reason(node, key, why)
            extra["pipeline.reason"] = reason[:5000]
            changes.update(
                cache_key=key.digest, key_parts=key.to_json(), reason=reason, start_time=clock.now()
            )
        run = self._start_run(node, key, extra)
        self._active[node.name] = run
        records.update_step(self.ws, self.run_id, node.name, run_id=run.id, **changes)

    def _reason(self, node: Node, key: CacheKey, why: Why) -> str:
        if why != "miss":
            return _WHY_TEXT[why]
        before = records.previous_key(self.ws, self.graph.name, node.name, self.run_id)
        return "; ".join(explain(before, key))

    def _finish_run(self, node: Node, result: TaskResult) -> ActiveRun:
        run = self._active.pop(node.name)
        if result.logs:
            blob = self.ws.artifacts.put_bytes(result.logs.encode())
            logs = self.ws.lineage.add_artifact(
                blob.digest, "logs", blob.size, name=f"{self.graph.name}/{node.name}/logs"
            )
            self.ws.lineage.link(run.id, logs.id, "output", role="logs")
        run.log_metric("step_seconds", max(0.0, result.end_time - result.start_time))
        return run

    def on_step_error(self, node: Node, result: TaskResult, *, retrying: bool) -> None:
        run = self._finish_run(node, result)
        run.end(FAILED, error=result.traceback or result.error)
        if not retrying:
            records.update_step(
                self.ws,
                self.run_id,
                node.name,
                status=records.FAILED,
                end_time=clock.now(),
                error=result.traceback or result.error,
            )

    def after_step(self, node: Node, key: CacheKey, result: TaskResult) -> None:
        spec = node.step.spec
        stored = result.output
        assert stored is not None
        run = self._finish_run(node, result)
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
        if spec.cache:
            self.cache.record(
                key.digest,
                step=spec.name,
                code_version=spec.code_version,
                output=stored,
                artifact_id=artifact_id,
                execution_id=run.id,
                key_parts=key.to_json(),
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
        self._artifacts[node.name] = artifact_id

    def _link_outputs(self, prun: ActiveRun) -> None:
        """The pipeline run's own lineage: the outputs its function returned."""
        seen: set[tuple[str, str]] = set()

        def walk(spec: Any, role: str) -> None:
            if isinstance(spec, Ref):
                artifact_id = self._artifacts.get(spec.node)
                if artifact_id is not None and (artifact_id, role) not in seen:
                    seen.add((artifact_id, role))
                    self.ws.lineage.link(prun.id, artifact_id, "output", role=role)
            elif isinstance(spec, dict):
                for k, v in spec.items():
                    walk(v, k)
            elif isinstance(spec, list):
                for i, v in enumerate(spec):
                    walk(v, f"{role}[{i}]")

        walk(self.graph.output, "output")
