"""``@lm.step``, ``@lm.pipeline``, ``lm.run``/``lm.resume`` on the configured workspace.

@lm.step
def load(month_from: int, month_to: int) -> lm.Dataset: ...

@lm.pipeline
def training(depth: int = 6):
    return evaluate(train(load(1, 2), depth=depth))

training.run(depth=8)                 # executor="processes" or "ray" to fan out
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, overload

from loopml.api.fluent import tracker as _tracker
from loopml.api.fluent import workspace as _workspace
from loopml.pipelines import definition, records, runner, schedules
from loopml.pipelines.errors import PipelineFailedError as PipelineFailedError
from loopml.pipelines.loader import load_pipeline
from loopml.pipelines.records import PipelineRun as PipelineRun
from loopml.pipelines.reproduce import OutputCheck as OutputCheck
from loopml.pipelines.reproduce import Reproduction as Reproduction
from loopml.pipelines.step import Step as Step
from loopml.pipelines.step import step as step
from loopml.pipelines.types import Dataset as Dataset
from loopml.pipelines.types import Model as Model
from loopml.store.workspace import Workspace


class Pipeline(definition.Pipeline):
    """A pipeline whose ``run`` defaults to the workspace the configuration names."""

    def run(
        self,
        *,
        workspace: Workspace | None = None,
        executor: str = "local",
        cache: bool = True,
        max_workers: int | None = None,
        address: str | None = None,
        trigger: str = "manual",
        **params: Any,
    ) -> PipelineRun:
        # On the configured workspace, runs share its one tracker; a workspace passed in
        # gets a tracker for the run.
        return runner.run_pipeline(
            workspace or _workspace(),
            self,
            params,
            executor=executor,
            cache=cache,
            max_workers=max_workers,
            address=address,
            trigger=trigger,
            tracker=_tracker() if workspace is None else None,
        )


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Make ``fn`` a pipeline: ``@lm.pipeline`` or ``@lm.pipeline(name="training")``."""

    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name)

    return wrap(fn) if fn is not None else wrap


def run(
    pipeline: definition.Pipeline | str,
    /,
    *,
    executor: str = "local",
    cache: bool = True,
    max_workers: int | None = None,
    address: str | None = None,
    **params: Any,
) -> PipelineRun:
    """Run a pipeline (or a ``"module:pipeline"`` reference) with ``params``."""
    pipe = load_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    return runner.run_pipeline(
        _workspace(),
        pipe,
        params,
        executor=executor,
        cache=cache,
        max_workers=max_workers,
        address=address,
        tracker=_tracker(),
    )


def resume(
    run_id: str,
    pipeline: definition.Pipeline | None = None,
    *,
    executor: str | None = None,
    max_workers: int | None = None,
    address: str | None = None,
) -> PipelineRun:
    """Re-run a failed or interrupted pipeline run, reusing the steps that succeeded."""
    return runner.resume(
        _workspace(),
        run_id,
        pipeline,
        executor=executor,
        max_workers=max_workers,
        address=address,
        tracker=_tracker(),
    )


def reproduce(run_id: str, *, executor: str = "local", keep_scratch: bool = False) -> Reproduction:
    """Re-execute a recorded pipeline run (or one step's run) from its recorded code,
    params and input digests, without the cache, in a scratch workspace; the record says,
    output by output, whether the digest came back and, if not, the first reason found."""
    from loopml.pipelines.reproduce import reproduce as reproduce_run

    return reproduce_run(
        _workspace(), run_id, executor=executor, tracker=_tracker(), keep_scratch=keep_scratch
    )


def get_pipeline_run(run_id: str) -> PipelineRun:
    return records.get(_workspace(), run_id)


def pipeline_runs(pipeline: str | None = None, limit: int = 20) -> list[PipelineRun]:
    return records.list_runs(_workspace(), pipeline, limit)


def fire_event(name: str, payload: Mapping[str, Any] | None = None) -> int:
    """Raise event ``name``; the scheduler runs the pipelines that trigger on it."""
    return schedules.fire_event(_workspace(), name, payload)


def schedule(
    pipeline: str,
    *,
    name: str,
    cron: str | None = None,
    on_dataset: str | None = None,
    param: str | None = None,
    on_event: str | None = None,
    params: Mapping[str, Any] | None = None,
    executor: str = "local",
) -> schedules.Schedule:
    """Schedule ``"module:pipeline"``: exactly one of ``cron``, ``on_dataset`` (with
    ``param``, the pipeline parameter that receives the new version) or ``on_event``."""
    from loopml.core.errors import InvalidInputError

    given = [x for x in (cron, on_dataset, on_event) if x is not None]
    if len(given) != 1:
        raise InvalidInputError("give exactly one of cron=, on_dataset= or on_event=")
    ws = _workspace()
    if cron is not None:
        return schedules.add_cron(ws, name, pipeline, cron, params=params, executor=executor)
    if on_dataset is not None:
        if param is None:
            raise InvalidInputError(
                "on_dataset= needs param=, the pipeline parameter that receives the version"
            )
        return schedules.add_dataset_trigger(
            ws, name, pipeline, on_dataset, param=param, params=params, executor=executor
        )
    assert on_event is not None
    return schedules.add_event_trigger(
        ws, name, pipeline, on_event, params=params, executor=executor
    )


# The names ``import loopml as lm`` exposes: ``lm.run`` alone would not say what it runs.
run_pipeline = run
resume_pipeline = resume
