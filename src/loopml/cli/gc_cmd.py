"""``loopml gc``: retention, prediction-log compaction and unreferenced blobs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from loopml.api import fluent
from loopml.cli.console import bars, err, out
from loopml.store.gc import Retention, collect


def _days(value: int | None) -> float | None:
    # 0 days means "keep forever" on the command line, where None cannot be typed.
    return None if value is None or value == 0 else float(value)


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what would be removed; change nothing")
    ] = False,
    logs_days: Annotated[
        int,
        typer.Option("--logs-days", min=0, help="keep prediction logs this many days (0: forever)"),
    ] = 30,
    feedback_days: Annotated[
        int,
        typer.Option(
            "--feedback-days", min=0, help="keep feedback labels this many days (0: forever)"
        ),
    ] = 90,
    cache_days: Annotated[
        int,
        typer.Option(
            "--cache-days",
            min=0,
            help="drop pipeline cache entries unused this many days (0: never)",
        ),
    ] = 30,
    grace_minutes: Annotated[
        int,
        typer.Option(
            "--grace-minutes",
            min=1,
            help="never touch blobs or log hours younger than this (writes in progress)",
        ),
    ] = 60,
    compact: Annotated[
        bool, typer.Option("--compact/--no-compact", help="merge each hour's prediction-log files")
    ] = True,
) -> None:
    """Free space: expire old prediction logs, feedback and cache entries, compact
    prediction logs into hourly files, and remove blobs nothing references."""
    retention = Retention(
        prediction_logs_days=_days(logs_days),
        feedback_days=_days(feedback_days),
        cache_unused_days=_days(cache_days),
        grace_seconds=grace_minutes * 60.0,
        compact=compact,
    )
    ws = fluent.workspace()
    with bars("loopml gc") as progress:
        report = collect(ws, retention, dry_run=dry_run, progress=progress)
    title = "loopml gc (dry run: nothing changed)" if dry_run else "loopml gc"
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("would free" if dry_run else "freed", justify="right")
    table.add_column("note")
    for line in report.lines:
        table.add_row(line.what, f"{line.count:,}", _size(line.bytes), escape(line.note))
    table.add_row("[bold]total[/]", "", f"[bold]{_size(report.freed_bytes)}[/]", "")
    out.print(table)
    for problem in report.problems:
        err.print(f"warning: {problem}", markup=False, soft_wrap=True)


def _size(n: int) -> str:
    if n < 1000:
        return f"{n:,} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:,.1f} {unit}"
