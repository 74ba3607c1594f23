"""``loopml runs ls|show|compare``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from loopml.api import fluent
from loopml.cli.console import out
from loopml.core import clock
from loopml.tracking.records import Run

app = typer.Typer(help="Browse and compare tracked runs.", no_args_is_help=True)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _duration(run: Run) -> str:
    return "" if run.duration is None else f"{run.duration:.1f}s"


@app.command("ls")
def list_runs(
    experiment: Annotated[str | None, typer.Option("--experiment", "-e")] = None,
    filter: Annotated[
        str | None, typer.Option("--filter", "-f", help='e.g. "metrics.auc > 0.7"')
    ] = None,
    order_by: Annotated[str | None, typer.Option("--order-by", "-o")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
) -> None:
    """List runs, newest first, with their latest metrics."""
    runs = fluent.search_runs(experiment, filter=filter, order_by=order_by, limit=limit)
    metric_keys = sorted({k for r in runs for k in r.metrics})[:6]
    table = Table(title=f"{len(runs)} run(s)")
    table.add_column("run id", no_wrap=True, min_width=12)
    for col in ("experiment", "name", "status", "started", "duration"):
        table.add_column(col, overflow="fold")
    for key in metric_keys:
        # Metrics are what the reader came for: never squeeze them to nothing.
        table.add_column(key, justify="right", min_width=max(8, min(len(key), 14)))
    for r in runs:
        status = {"finished": "[green]finished[/]", "failed": "[red]failed[/]"}.get(
            r.status, r.status
        )
        table.add_row(
            r.id[:12],
            r.experiment,
            r.name,
            status,
            clock.format_ts(r.start_time),
            _duration(r),
            *(_fmt(r.metrics.get(k)) for k in metric_keys),
        )
    out.print(table)


@app.command("show")
def show(run_id: str) -> None:
    """Everything recorded about one run."""
    tracker = fluent.tracker()
    run = tracker.get_run(_resolve_id(run_id))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for label, value in (
        ("run", run.id),
        ("experiment", run.experiment),
        ("name", run.name),
        ("status", run.status),
        ("started", clock.format_ts(run.start_time)),
        ("ended", clock.format_ts(run.end_time)),
        ("duration", _duration(run)),
        ("git", f"{run.git_commit or '-'}{' (dirty)' if run.git_dirty else ''}"),
        ("environment", run.environment_digest or "-"),
    ):
        head.add_row(label, value)
    out.print(head)
    for title, values in (("params", run.params), ("metrics", run.metrics), ("tags", run.tags)):
        if values:
            t = Table(title=title)
            t.add_column("key")
            t.add_column("value", justify="right" if title == "metrics" else "left")
            for k, v in sorted(values.items()):
                t.add_row(k, _fmt(v))
            out.print(t)
    artifacts = tracker.workspace.lineage.artifacts_of(run.id, "output")
    if artifacts:
        t = Table(title="artifacts")
        for col in ("name", "kind", "size", "digest"):
            t.add_column(col)
        for role, a in artifacts:
            t.add_row(role, a.kind, f"{a.size:,}", a.digest)
        out.print(t)
    if run.error:
        out.print("[red]error:[/]")
        out.print(run.error, markup=False)


@app.command("compare")
def compare(run_ids: Annotated[list[str], typer.Argument(help="two or more run ids")]) -> None:
    """Params and metrics of several runs side by side; differing params are marked."""
    tracker = fluent.tracker()
    runs = [tracker.get_run(_resolve_id(r)) for r in run_ids]
    table = Table(title="comparison")
    table.add_column("")
    for r in runs:
        table.add_column(f"{r.name}\n{r.id[:12]}", justify="right")
    for key in sorted({k for r in runs for k in r.params}):
        values = [r.params.get(key) for r in runs]
        marker = " *" if len(set(values)) > 1 else ""
        table.add_row(f"params.{key}{marker}", *(_fmt(v) for v in values))
    for key in sorted({k for r in runs for k in r.metrics}):
        values_m = [r.metrics.get(key) for r in runs]
        best = max((v for v in values_m if v is not None), default=None)
        table.add_row(
            f"metrics.{key}",
            *(f"[bold]{_fmt(v)}[/]" if v == best and v is not None else _fmt(v) for v in values_m),
        )
    out.print(table)


def _resolve_id(prefix: str) -> str:
    """Accept a unique prefix of a run id, as `runs ls` prints 12 characters."""
    if len(prefix) == 32:
        return prefix
    matches = fluent.search_runs(
        filter=f"attributes.run_id like '{prefix.replace(chr(39), '')}%'", limit=2
    )
    if len(matches) == 1:
        return matches[0].id
    if len(matches) > 1:
        from loopml.core.errors import InvalidInputError

        raise InvalidInputError(f"run id prefix {prefix!r} is ambiguous; give more characters")
    return prefix
