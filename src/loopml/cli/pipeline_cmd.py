"""``loopml pipeline run|ls|show|resume|schedule|event``."""

from __future__ import annotations

import inspect
import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from loopml.api import fluent
from loopml.cli.console import out
from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.pipelines import records, runner, schedules
from loopml.pipelines.definition import Pipeline
from loopml.pipelines.loader import load_pipeline
from loopml.pipelines.records import PipelineRun

app = typer.Typer(help="Run pipelines and inspect their runs.", no_args_is_help=True)

_STATUS_STYLE = {
    "finished": "green",
    "executed": "green",
    "cached": "cyan",
    "reused": "cyan",
    "failed": "red",
    "interrupted": "yellow",
    "skipped": "dim",
    "pending": "dim",
    "running": "yellow",
}


def parse_params(pairs: list[str], pipe: Pipeline | None = None) -> dict[str, Any]:
    """``depth=8`` -> {"depth": 8}. Values are JSON when they parse as JSON, else text;
    ``name=@flights:3`` is a dataset version from the catalog. A parameter the pipeline
    annotates ``str`` keeps the text as written (``-p tag=007``)."""
    text_params = {n for n, p in pipe.signature.parameters.items() if _is_str(p)} if pipe else set()
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InvalidInputError(
                f"-p {pair!r}: write -p name=value, e.g. -p depth=8 (name must be a Python "
                "identifier)"
            )
        if key in params:
            raise InvalidInputError(f"-p {key} given twice")
        if raw.startswith("@"):
            from loopml.data.catalog import Catalog

            params[key] = Catalog(fluent.workspace()).get(raw[1:])
            continue
        if key in text_params:
            params[key] = raw
            continue
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _is_str(param: inspect.Parameter) -> bool:
    return param.annotation in (str, "str")


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


@app.command("run")
def run(
    ref: Annotated[str, typer.Argument(help="module:pipeline, e.g. flows.training:training")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value (repeatable)")
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", "-x", help="local, processes or ray")
    ] = "local",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="execute every step")] = False,
    max_workers: Annotated[int | None, typer.Option("--max-workers")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address")] = None,
) -> None:
    """Run a pipeline; prints each step's status (executed or cached) and duration."""
    pipe = load_pipeline(ref)
    params = parse_params(param or [], pipe)
    result = runner.run_pipeline(
        fluent.workspace(),
        pipe,
        params,
        executor=executor,
        cache=not no_cache,
        max_workers=max_workers,
        address=address,
        tracker=fluent.tracker(),
    )
    show_run(result)


@app.command("ls")
def list_runs(
    pipeline: Annotated[str | None, typer.Option("--pipeline")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
) -> None:
    """Pipeline runs, newest first."""
    if limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    runs = records.list_runs(fluent.workspace(), pipeline, limit)
    table = Table(title=f"{len(runs)} pipeline run(s)")
    # The id and the step counts are what a reader copies or scans: they never wrap.
    table.add_column("run id", no_wrap=True)
    for col in ("pipeline", "status", "started", "duration"):
        table.add_column(col, overflow="fold")
    table.add_column("steps", no_wrap=True)
    table.add_column("trigger", overflow="fold")
    for r in runs:
        table.add_row(
            r.id[:12],
            r.pipeline,
            _styled(r.status),
            clock.format_ts(r.start_time),
            _secs(r.duration),
            f"{len(r.executed)} executed, {len(r.cached)} cached, {len(r.steps)} total",
            r.trigger,
        )
    out.print(table)


@app.command("show")
def show(
    run_id: Annotated[
        str | None, typer.Argument(help="a pipeline run id (prefix); latest if omitted")
    ] = None,
) -> None:
    """The DAG of a pipeline run with each step's status, cached or executed, and duration."""
    ws = fluent.workspace()
    if run_id is None:
        latest = records.list_runs(ws, None, 1)
        if not latest:
            raise InvalidInputError("no pipeline runs yet; start one with `loopml pipeline run`")
        result = latest[0]
    else:
        result = records.get(ws, run_id)
    show_run(result)


def show_run(result: PipelineRun) -> None:
    title = (
        f"pipeline [bold]{escape(result.pipeline)}[/] run {result.id[:12]}: "
        f"{_styled(result.status)} "
        f"in {_secs(result.duration) or '?'} ({result.executor}; {escape(result.trigger)})"
    )
    tree = Tree(title)
    for node, rec in result.steps.items():
        after = f" <- {', '.join(sorted(set(rec.deps.values())))}" if rec.deps else ""
        attempts = f", {rec.attempts} attempts" if rec.attempts > 1 else ""
        branch = tree.add(
            f"{escape(node + after)}  {_styled(rec.status)} {_secs(rec.duration)}{attempts}"
        )
        if rec.status == records.EXECUTED and rec.reason:
            branch.add(f"[dim]re-ran: {escape(rec.reason)}[/]")
        if rec.error:
            branch.add(f"[red]{escape(rec.error.strip().splitlines()[-1])}[/]")
    out.print(tree)
    if result.params:
        out.print(escape(f"params: {json.dumps(result.params, sort_keys=True)}"))
    if result.status in ("failed", "interrupted"):
        out.print(f"resume with: loopml pipeline resume {result.id[:12]}")


@app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(help="a failed or interrupted pipeline run")],
    executor: Annotated[str | None, typer.Option("--executor", "-x")] = None,
    address: Annotated[str | None, typer.Option("--address")] = None,
) -> None:
    """Re-run a failed run from the failure, reusing the steps that succeeded."""
    result = runner.resume(
        fluent.workspace(), run_id, executor=executor, address=address, tracker=fluent.tracker()
    )
    show_run(result)


@app.command("schedule")
def schedule(
    ref: Annotated[str, typer.Argument(help="module:pipeline")],
    name: Annotated[str, typer.Option("--name", help="a name for this schedule")],
    cron: Annotated[str | None, typer.Option("--cron", help="e.g. '0 3 * * *' (UTC)")] = None,
    on_dataset: Annotated[str | None, typer.Option("--on-dataset")] = None,
    dataset_param: Annotated[
        str | None, typer.Option("--param-for-dataset", help="parameter receiving the version")
    ] = None,
    on_event: Annotated[str | None, typer.Option("--on-event")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p")] = None,
    executor: Annotated[str, typer.Option("--executor", "-x")] = "local",
) -> None:
    """Run a pipeline on a cron schedule, on new versions of a dataset, or on an event."""
    ws = fluent.workspace()
    params = parse_params(param or [], load_pipeline(ref))
    given = [x for x in (cron, on_dataset, on_event) if x is not None]
    if len(given) != 1:
        raise InvalidInputError("give exactly one of --cron, --on-dataset or --on-event")
    if cron is not None:
        s = schedules.add_cron(ws, name, ref, cron, params=params, executor=executor)
    elif on_dataset is not None:
        if dataset_param is None:
            raise InvalidInputError("--on-dataset needs --param-for-dataset")
        s = schedules.add_dataset_trigger(
            ws, name, ref, on_dataset, param=dataset_param, params=params, executor=executor
        )
    else:
        assert on_event is not None
        s = schedules.add_event_trigger(ws, name, ref, on_event, params=params, executor=executor)
    out.print(f"schedule {s.name}: {s.kind} {s.spec} -> {s.pipeline_ref}")


@app.command("schedules")
def list_schedules() -> None:
    """Schedules and triggers, with their next run or last-seen version/event."""
    table = Table(title="schedules")
    for col in ("name", "pipeline", "kind", "spec", "next / cursor", "last run", "failures"):
        table.add_column(col, overflow="fold")
    for s in schedules.list_schedules(fluent.workspace()):
        nxt = clock.format_ts(s.next_run) if s.kind == "cron" else str(s.cursor or 0)
        failures = ""
        if s.failures:
            last = (s.last_error or "").strip().splitlines() or [""]
            failures = f"{s.failures}, retry {clock.format_ts(s.retry_at)}: {last[-1]}"
        table.add_row(
            *(escape(v) for v in (s.name, s.pipeline_ref, s.kind, s.spec, nxt)),
            (s.last_run_id or "")[:12],
            escape(failures),
        )
    out.print(table)


@app.command("event")
def event(name: Annotated[str, typer.Argument(help="the event to raise")]) -> None:
    """Raise a named event; the scheduler runs the pipelines triggered by it."""
    event_id = schedules.fire_event(fluent.workspace(), name)
    out.print(f"event {name} #{event_id} raised")
