"""``loopml import mlflow``: copy an MLflow tracking store into the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from loopml.api import fluent
from loopml.cli.console import err, esc, out, plural
from loopml.importers import import_mlflow, open_source

app = typer.Typer(
    help="Bring runs and models recorded by other tools into this workspace.",
    no_args_is_help=True,
)


@app.command("mlflow")
def mlflow(
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            help="the MLflow store: a database URL (sqlite:///mlflow.db) or a tracking "
            "server (http://host:5000)",
        ),
    ],
    artifacts: Annotated[
        Path | None,
        typer.Option(
            "--artifacts",
            help="where MLflow's artifact root is on this machine, if not where the store "
            "says (a moved mlruns folder, or the server's --artifacts-destination)",
        ),
    ] = None,
) -> None:
    """Copy experiments, runs (params, tags, full metric histories, artifacts) and
    registered models with their versions and aliases. Run it again to copy only what
    is new."""
    source = open_source(from_, artifacts)
    try:
        ws = fluent.workspace()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(f"copying {stage}", total=total)
                bar.update(tasks[stage], completed=done, total=total)

            report = import_mlflow(ws, source, progress=progress)
    finally:
        source.close()
    out.print(f"imported from {esc(report.source)}:")
    out.print(
        f"  runs: {report.runs_copied:,} copied, {report.runs_already:,} already here "
        f"(from {plural(report.experiments, 'experiment')})"
    )
    out.print(
        f"  metric points: {report.metric_points:,}; artifact files: {report.files:,} "
        f"({report.file_bytes:,} bytes)"
    )
    out.print(
        f"  model versions: {report.versions_servable:,} servable, {report.versions_recorded:,} "
        f"stored as not servable, {report.versions_already:,} already here"
    )
    out.print(f"  aliases: {report.aliases_set:,} set")
    if report.runs_deleted:
        out.print(f"  skipped {plural(report.runs_deleted, 'deleted run')} (MLflow's trash)")
    if report.nan_points_skipped:
        out.print(
            f"  skipped {plural(report.nan_points_skipped, 'NaN metric point')}: loopml stores "
            "finite values only"
        )
    for note in report.notes:
        out.print(f"  note: {esc(note)}")
