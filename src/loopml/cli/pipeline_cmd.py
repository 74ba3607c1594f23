"""``loopml pipeline run|ls|show|resume|schedule|event``."""

from __future__ import annotations

import inspect
import json
from typing import Annotated, Any

import typer
from rich.tree import Tree

from loopml.api import fluent
from loopml.cli import tables
from loopml.cli.console import bars, esc, lit, out, plural
from loopml.cli.workspace_guard import require_workspace
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
    return f"[{style}]{esc(status)}[/]" if style else esc(status)


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


@app.command("run")
def run(
    ref: Annotated[str, typer.Argument(help="module:pipeline, e.g. flows.training:training.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="name=value, e.g. depth=8 (repeatable)."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", "-x", help="Where steps run: local, processes or ray.")
    ] = "local",
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Execute every step, even unchanged ones.")
    ] = False,
    max_workers: Annotated[
        int | None, typer.Option("--max-workers", help="Steps run at once (processes, ray).")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="A Ray cluster's address.")
    ] = None,
) -> None:
    """Run a pipeline; prints each step's status (executed or cached) and duration."""
    pipe = load_pipeline(ref)
    params = parse_params(param or [], pipe)
    with bars(f"running pipeline {esc(ref)} ({esc(executor)})") as progress:
        result = runner.run_pipeline(
            fluent.workspace(),
            pipe,
            params,
            executor=executor,
            cache=not no_cache,
            max_workers=max_workers,
            address=address,
            tracker=fluent.tracker(),
            progress=progress,
        )
    show_run(result)


@app.command("ls")
def list_runs(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Only runs of this pipeline.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most this many.")] = 20,
) -> None:
    """Pipeline runs, newest first."""
    if limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    require_workspace(listing=True)
    runs = records.list_runs(fluent.workspace(), pipeline, limit)
    table = tables.table(plural(len(runs), "pipeline run"))
    # The id and the step counts are what a reader copies or scans: they never wrap.
    tables.fixed(table, "run id")
    tables.text(table, "pipeline")
    tables.fixed(table, "status")
    tables.fixed(table, "started")
    tables.fixed(table, "duration", justify="right")
    tables.fixed(table, "steps")
    tables.text(table, "trigger")
    for r in runs:
        table.add_row(
            r.id[:12],
            lit(r.pipeline),
            _styled(r.status),
            clock.format_ts(r.start_time)[5:16],
            _secs(r.duration),
            f"{len(r.executed)} ran, {len(r.cached)} cached",
            lit(r.trigger),
        )
    out.print(table)


@app.command("show")
def show(
    run_id: Annotated[
        str | None, typer.Argument(help="A pipeline run id (or prefix); the latest if omitted.")
    ] = None,
) -> None:
    """The DAG of a pipeline run with each step's status, cached or executed, and duration."""
    require_workspace(missing=f"no pipeline run {run_id!r}" if run_id else "no pipeline runs yet")
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
        f"pipeline [bold]{esc(result.pipeline)}[/] run {result.id[:12]}: "
        f"{_styled(result.status)} in {_secs(result.duration) or '?'} "
        f"({esc(result.executor)}; {esc(result.trigger)})"
    )
    tree = Tree(title)
    for node, rec in result.steps.items():
        after = f" <- {', '.join(sorted(set(rec.deps.values())))}" if rec.deps else ""
        attempts = f", {rec.attempts} attempts" if rec.attempts > 1 else ""
        line = f"{esc(node + after)}  {_styled(rec.status)} {_secs(rec.duration)}{attempts}"
        branch = tree.add(line)
        if rec.status == records.EXECUTED and rec.reason:
            branch.add(f"[dim]re-ran: {esc(rec.reason)}[/]")
        if rec.error:
            lines = rec.error.strip().splitlines() or [""]
            branch.add(f"[red]{esc(lines[-1])}[/]")
    out.print(tree)
    if result.params:
        out.print(lit(f"params: {json.dumps(result.params, sort_keys=True)}"))
    if result.status in ("failed", "interrupted"):
        out.print(f"resume with: loopml pipeline resume {result.id[:12]}")


@app.command("resume")
def resume(
    run_id: Annotated[str, typer.Argument(help="A failed or interrupted pipeline run.")],
    executor: Annotated[
        str | None,
        typer.Option("--executor", "-x", help="Where steps run (default: as before)."),
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="A Ray cluster's address.")
    ] = None,
) -> None:
    """Re-run a failed run from the failure, reusing the steps that succeeded."""
    with bars(f"resuming pipeline run {esc(run_id)}") as progress:
        result = runner.resume(
            fluent.workspace(),
            run_id,
            executor=executor,
            address=address,
            tracker=fluent.tracker(),
            progress=progress,
        )
    show_run(result)


@app.command("schedule")
def schedule(
    ref: Annotated[str, typer.Argument(help="module:pipeline, e.g. flows.training:training.")],
    name: Annotated[str, typer.Option("--name", help="A name for this schedule.")],
    cron: Annotated[
        str | None, typer.Option("--cron", help="Run on a cron schedule, e.g. '0 3 * * *' (UTC).")
    ] = None,
    on_dataset: Annotated[
        str | None, typer.Option("--on-dataset", help="Run on each new version of this dataset.")
    ] = None,
    dataset_param: Annotated[
        str | None,
        typer.Option("--param-for-dataset", help="The parameter receiving the new version."),
    ] = None,
    on_event: Annotated[
        str | None, typer.Option("--on-event", help="Run when this named event is raised.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="name=value, e.g. depth=8 (repeatable)."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", "-x", help="Where steps run: local, processes or ray.")
    ] = "local",
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
    out.print(lit(f"schedule {s.name}: {s.kind} {s.spec} -> {s.pipeline_ref}"))


@app.command("schedules")
def list_schedules() -> None:
    """Schedules and triggers, with their next run or last-seen version/event."""
    require_workspace(listing=True)
    table = tables.table("schedules")
    tables.text(table, "name")
    tables.text(table, "pipeline", wrap=True)
    tables.fixed(table, "kind")
    tables.text(table, "spec", wrap=True)
    tables.fixed(table, "next / cursor")
    tables.fixed(table, "last run")
    tables.text(table, "failures", wrap=True)
    for s in schedules.list_schedules(fluent.workspace()):
        nxt = clock.format_ts(s.next_run)[:16] if s.kind == "cron" else str(s.cursor or 0)
        failures = ""
        if s.failures:
            last = (s.last_error or "").strip().splitlines() or [""]
            failures = f"{s.failures}, retry {clock.format_ts(s.retry_at)[:16]}: {last[-1]}"
        table.add_row(
            lit(s.name),
            lit(s.pipeline_ref),
            lit(s.kind),
            lit(s.spec),
            nxt,
            (s.last_run_id or "")[:12],
            lit(failures),
        )
    out.print(table)


@app.command("event")
def event(name: Annotated[str, typer.Argument(help="The event to raise.")]) -> None:
    """Raise a named event; the scheduler runs the pipelines triggered by it."""
    event_id = schedules.fire_event(fluent.workspace(), name)
    out.print(f"event {esc(name)} #{event_id} raised")
