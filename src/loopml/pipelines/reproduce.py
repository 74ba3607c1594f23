"""Re-execute a recorded pipeline run and show whether its outputs come back bit for bit.

The run is rebuilt from what was recorded (the pipeline's import reference, its params,
the digests of the catalog datasets it read) and executed without the cache in a scratch
workspace, a temporary metadata database and artifact store, so nothing is written to the
user's workspace. Each recorded output digest is compared with the new one; for a
difference, the first reason found is given, checked in this order:

1. the cache key differs from the recorded one: the step's code, a parameter or an input
   changed since (``cache_key.explain``);
2. the key is the same but a fresh execution on the same inputs gives yet another output:
   a seed is not fixed (a model whose ``random_state`` is None), or the step or the
   model library's format is not deterministic;
3. the recorded environment differs from this one: the packages whose versions differ.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.pipelines import params as params_mod
from loopml.pipelines import records
from loopml.pipelines.cache_key import CacheKey, explain
from loopml.pipelines.definition import Pipeline
from loopml.pipelines.loader import load_pipeline
from loopml.pipelines.runner import run_pipeline
from loopml.pipelines.task import Input, StepRef, StepTask, run_task
from loopml.store.workspace import Workspace
from loopml.tracking import environment
from loopml.tracking.tracker import Tracker

SEED_PARAMS = ("random_state", "seed", "random_seed")


@dataclass(frozen=True)
class OutputCheck:
    """One output of the recorded run: its recorded and new digest, and why they differ."""

    node: str
    kind: str | None
    recorded: str | None
    new: str | None
    reason: str | None = None

    @property
    def same(self) -> bool:
        return self.recorded is not None and self.recorded == self.new


@dataclass(frozen=True)
class Reproduction:
    """What ``reproduce`` found. ``ok`` only when every output came back identical."""

    pipeline_run: str
    pipeline: str
    node: str | None  # set when a single step run was reproduced
    status: str  # the re-execution's status: finished or failed
    outputs: tuple[OutputCheck, ...]
    # Packages whose versions differ, as "name recorded -> current" ("+name 1.0" only
    # here, "-name 1.0" only in the record); empty when the environments are the same.
    environment: tuple[str, ...] = ()
    error: str | None = None
    scratch: str | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == records.FINISHED and all(o.same for o in self.outputs)


def environment_diff(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """The packages whose versions differ between two package sets, by name."""
    diff = []
    for name in sorted(set(recorded) | set(current)):
        old, new = recorded.get(name), current.get(name)
        if old == new:
            continue
        if old is None:
            diff.append(f"+{name} {new}")
        elif new is None:
            diff.append(f"-{name} {old}")
        else:
            diff.append(f"{name} {old} -> {new}")
    return diff


def reproduce(
    ws: Workspace,
    run_id: str,
    *,
    executor: str = "local",
    pipeline: Pipeline | None = None,
    tracker: Tracker | None = None,
    keep_scratch: bool = False,
) -> Reproduction:
    """Re-execute pipeline run ``run_id`` (or the pipeline step run ``run_id``) and compare.

    ``pipeline`` is the pipeline to run when the recorded import reference cannot be
    imported here; ``keep_scratch`` leaves the scratch workspace on disk to inspect."""
    old, node = _target(ws, run_id, tracker)
    if old.status != records.FINISHED and node is None:
        raise InvalidInputError(
            f"pipeline run {old.id[:12]} is {old.status}; only a finished run has outputs to "
            "reproduce (reproduce one of its succeeded steps by its step run id)"
        )
    if pipeline is None:
        if not old.ref:
            raise InvalidInputError(f"pipeline run {old.id} has no import reference to rebuild")
        pipeline = load_pipeline(old.ref)
    if pipeline.name != old.pipeline:
        raise InvalidInputError(
            f"pipeline run {old.id} is of pipeline {old.pipeline}, not {pipeline.name}"
        )
    env_diff = tuple(_environment_diff(ws, old.id, tracker))
    folder = tempfile.mkdtemp(prefix="loopml-reproduce-")
    scratch = Workspace(f"sqlite:///{Path(folder) / 'loopml.db'}", str(Path(folder, "artifacts")))
    try:
        params = _scratch_params(ws, scratch, old.params)
        new = run_pipeline(
            scratch,
            pipeline,
            params,
            executor=executor,
            cache=False,
            trigger=f"reproduce:{old.id}",
            raise_on_failure=False,
        )
        nodes = [node] if node is not None else _compared_nodes(old)
        ctx = _Context(scratch, pipeline, params, old, new, env_diff)
        checks = tuple(_check(ctx, n) for n in nodes)
        error = None
        if new.status != records.FINISHED:
            failed = new.nodes_with(records.FAILED)
            error = f"the re-execution {new.status}" + (f" at step {failed[0]}" if failed else "")
        return Reproduction(
            old.id,
            old.pipeline,
            node,
            new.status,
            checks,
            env_diff,
            error,
            folder if keep_scratch else None,
        )
    finally:
        scratch.close()
        if not keep_scratch:
            shutil.rmtree(folder, ignore_errors=True)


def _target(
    ws: Workspace, run_id: str, tracker: Tracker | None
) -> tuple[records.PipelineRun, str | None]:
    """(the pipeline run, the node when ``run_id`` is one step's tracking run)."""
    try:
        return records.get(ws, run_id), None
    except NotFoundError:
        pass
    t = tracker or Tracker(ws)
    try:
        run = t.get_run(run_id)
    except NotFoundError:
        raise NotFoundError(
            f"no pipeline run or run {run_id!r}; `loopml pipeline ls` and `loopml runs ls` "
            "list them"
        ) from None
    finally:
        if tracker is None:
            t.close()
    parent, node = run.tags.get("pipeline.run_id"), run.tags.get("pipeline.node")
    if not parent or not node:
        raise InvalidInputError(
            f"run {run_id} was not made by a pipeline step: loopml can re-execute pipeline "
            "runs and their steps, whose code and inputs it recorded"
        )
    old = records.get(ws, parent)
    step = old.steps.get(node)
    if step is None or not step.succeeded:
        raise InvalidInputError(f"step {node} of pipeline run {parent[:12]} has no output")
    return old, node


def _compared_nodes(old: records.PipelineRun) -> list[str]:
    return [n for n, s in old.steps.items() if s.output_digest is not None]


def _environment_diff(ws: Workspace, run_id: str, tracker: Tracker | None) -> list[str]:
    t = tracker or Tracker(ws)
    try:
        digest = t.get_run(run_id).environment_digest
        if digest is None:
            return ["the recorded run has no environment to compare"]
        recorded = t.environment(digest)
    except NotFoundError:
        return ["the recorded environment is missing"]
    finally:
        if tracker is None:
            t.close()
    current = environment.python_environment()
    diff = environment_diff(dict(recorded["packages"]), current.packages)
    if recorded["python_version"] != current.python_version:
        diff.insert(0, f"python {recorded['python_version']} -> {current.python_version}")
    return diff


def _scratch_params(ws: Workspace, scratch: Workspace, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded params, with each catalog dataset copied into the scratch store (by
    the digest recorded, verified) so the re-execution reads exactly the recorded input."""
    from loopml.data.dataset import Dataset

    out = params_mod.decode(ws, stored)
    for name, value in list(out.items()):
        if not isinstance(value, Dataset):
            continue
        recorded = stored[name].get("digest") if isinstance(stored[name], dict) else None
        if recorded is not None and recorded != value.digest:
            raise InvalidInputError(
                f"parameter {name}: dataset {value.ref} now has digest {value.digest}, the "
                f"run read {recorded}; the recorded input is gone"
            )
        tree = ws.artifacts.get_tree(value.digest, what=value.ref)
        for entry in tree.entries:
            scratch.artifacts.put_file(ws.artifacts.local_path(entry.digest, what=value.ref))
        copied = scratch.artifacts.put_manifest(list(tree.entries))
        node = scratch.lineage.add_artifact(copied.digest, "dataset", copied.size, name=value.ref)
        out[name] = dataclasses.replace(value, artifact_id=node.id, workspace=scratch)
    return out


@dataclass(frozen=True)
class _Context:
    scratch: Workspace
    pipeline: Pipeline
    params: dict[str, Any]
    old: records.PipelineRun
    new: records.PipelineRun
    env_diff: tuple[str, ...]


def _check(ctx: _Context, node: str) -> OutputCheck:
    was, now = ctx.old.steps[node], ctx.new.steps.get(node)
    kind = was.output_kind
    if now is None:
        return OutputCheck(node, kind, was.output_digest, None, "the pipeline has no such step now")
    check = OutputCheck(node, kind, was.output_digest, now.output_digest)
    if check.same:
        return check
    if now.output_digest is None:
        last = (now.error or "").strip().splitlines() or [now.status]
        return dataclasses.replace(check, reason=f"the step {now.status}: {last[-1]}")
    return dataclasses.replace(check, reason=_reason(ctx, node))


def _reason(ctx: _Context, node: str) -> str:
    was, now = ctx.old.steps[node], ctx.new.steps[node]
    before, after = CacheKey.from_json(was.key_parts), CacheKey.from_json(now.key_parts)
    if before is None and was.code_version != now.code_version:
        return f"code of step {now.step} changed since the recorded run"
    if before is not None and after is not None and before.digest != after.digest:
        first = explain(before, after)[0]
        if first.startswith("code of step"):
            return f"{first} since the recorded run"
        if first.startswith("input "):
            arg = first.split()[1]
            upstream = now.deps.get(arg)
            if upstream is not None:
                return f"{first} (its producer, step {upstream}, differs)"
        return first
    seed = _unfixed_seed(ctx.scratch, now)
    if seed is not None:
        return seed
    if _differs_again(ctx, node):
        flavor_note = _flavor_note(ctx.scratch, now)
        if flavor_note is not None:
            return f"non-deterministic flavor: {flavor_note}"
        return (
            "seed not fixed or the step is not deterministic: two executions on the same "
            "inputs gave different outputs"
        )
    env = ctx.env_diff
    if env:
        more = f" and {len(env) - 5} more" if len(env) > 5 else ""
        return f"environment differs: {', '.join(env[:5])}{more}"
    flavor_note = _flavor_note(ctx.scratch, now)
    if flavor_note is not None:
        return f"non-deterministic flavor: {flavor_note}"
    return "the same code, params, inputs and environment gave another output"


def _unfixed_seed(scratch: Workspace, step: records.StepRecord) -> str | None:
    if step.output_kind != "model" or step.output_digest is None:
        return None
    from loopml.registry.artifact import read_metadata

    params = read_metadata(scratch.artifacts, step.output_digest).params
    for name in SEED_PARAMS:
        if name in params and params[name] is None:
            return f"seed not fixed: the model's {name} is None"
    return None


def _flavor_note(scratch: Workspace, step: records.StepRecord) -> str | None:
    if step.output_kind != "model" or step.output_digest is None:
        return None
    from loopml.registry import flavors
    from loopml.registry.artifact import read_metadata

    meta = read_metadata(scratch.artifacts, step.output_digest)
    note = getattr(flavors.get(meta.flavor), "determinism", None)
    return f"{meta.flavor}: {note}" if isinstance(note, str) and note else None


def _differs_again(ctx: _Context, node: str) -> bool:
    """Execute ``node`` once more on the inputs of the re-execution: a different output
    means the step itself does not give the same bytes twice."""
    step = ctx.new.steps[node]
    spec_node = ctx.pipeline.build(**ctx.params).nodes[node]
    inputs = {}
    for arg, upstream in spec_node.deps.items():
        up = ctx.new.steps[upstream]
        if up.output_kind is None or up.output_digest is None:
            return False
        inputs[arg] = Input(up.output_kind, up.output_digest)
    from loopml.data.dataset import Dataset

    literals = {}
    for arg, value in spec_node.literals.items():
        if isinstance(value, Dataset):
            inputs[arg] = Input("dataset", value.digest)
        else:
            literals[arg] = value
    fn = spec_node.step.fn
    task = StepTask(
        node=node,
        step=StepRef(fn.__module__, fn.__qualname__, None),
        code_version=spec_node.step.spec.code_version,
        output_kind=spec_node.step.spec.output_kind,
        artifacts_url=ctx.scratch.artifacts.url,
        storage_options={},
        inputs=inputs,
        literals=literals,
    )
    result = run_task(task, fn)
    if not result.ok or result.output is None:
        raise LoopmlError(f"step {node} failed when executed again: {result.error}")
    return result.output.digest != step.output_digest
