"""``loopml reproduce RUN``: re-execute a recorded pipeline run and compare its digests."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loopml.api import fluent
from loopml.cli.console import out
from loopml.pipelines.reproduce import Reproduction
from loopml.pipelines.reproduce import reproduce as reproduce_run


def reproduce(
    run_id: Annotated[
        str, typer.Argument(help="a pipeline run id (or prefix), or one pipeline step's run id")
    ],
    executor: Annotated[
        str, typer.Option("--executor", "-x", help="local, processes or ray")
    ] = "local",
    keep: Annotated[
        bool, typer.Option("--keep", help="keep the scratch workspace and print where it is")
    ] = False,
) -> None:
    """Re-execute a recorded run from its recorded code, params and input digests, without
    the cache and in a scratch workspace; exit 0 only when every output is identical."""
    found = reproduce_run(
        fluent.workspace(), run_id, executor=executor, tracker=fluent.tracker(), keep_scratch=keep
    )
    show(found)
    if not found.ok:
        raise typer.Exit(1)


def show(found: Reproduction, console: Console = out) -> None:
    what = f"step {found.node} of " if found.node else ""
    table = Table(title=f"reproduce {what}pipeline {found.pipeline} run {found.pipeline_run[:12]}")
    table.add_column("output", no_wrap=True)
    table.add_column("recorded", no_wrap=True)
    table.add_column("new", no_wrap=True)
    table.add_column("same", no_wrap=True)
    table.add_column("first reason found", overflow="fold")
    for o in found.outputs:
        table.add_row(
            escape(o.node),
            _short(o.recorded),
            _short(o.new),
            "[green]yes[/]" if o.same else "[red]no[/]",
            escape(o.reason or ""),
        )
    console.print(table)
    if found.environment:
        console.print(
            escape(f"environment differs: {', '.join(found.environment)}"), soft_wrap=True
        )
    else:
        console.print("environment: the same package versions as recorded")
    if found.error:
        console.print(escape(found.error))
    if found.scratch:
        console.print(escape(f"scratch workspace kept at {found.scratch}"))
    same = sum(o.same for o in found.outputs)
    verdict = "[green]reproduced[/]" if found.ok else "[red]not reproduced[/]"
    console.print(f"{verdict}: {same} of {len(found.outputs)} outputs identical")


def _short(digest: str | None) -> str:
    return "-" if digest is None else digest[:15]
