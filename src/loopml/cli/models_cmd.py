"""``loopml models ls|show|promote|rollback|card``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loopml.api import fluent
from loopml.cli.console import out
from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.models.card import render_card
from loopml.models.gates import Gate, GateResult
from loopml.models.promotion import promote as promote_version
from loopml.models.registry import Registry

app = typer.Typer(
    help="Browse the model registry; promote and roll back aliases.", no_args_is_help=True
)

EXIT_REFUSED = 1


def _registry() -> Registry:
    return Registry(fluent.workspace())


def gate_table(result: GateResult, title: str) -> Table:
    table = Table(title=title)
    for col, justify in (
        ("check", "left"),
        ("value", "right"),
        ("limit", "left"),
        ("verdict", "center"),
        ("detail", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for check, value, limit, verdict, detail in result.rows():
        style = "green" if verdict == "pass" else "bold red"
        table.add_row(check, value, limit, f"[{style}]{verdict}[/]", detail)
    return table


@app.command("ls")
def list_models(
    name: Annotated[str | None, typer.Argument(help="list the versions of this model")] = None,
) -> None:
    """List registered models, or the versions of one."""
    registry = _registry()
    if name is None:
        models = registry.models()
        table = Table(title=f"{len(models)} registered model(s)")
        for col in ("name", "latest", "aliases", "created"):
            table.add_column(col)
        for m in models:
            table.add_row(
                m.name,
                str(m.latest_version or "-"),
                ", ".join(f"{a} -> {v}" for a, v in m.aliases.items()) or "-",
                clock.format_ts(m.created_at),
            )
        out.print(table)
        return
    versions = registry.versions(name)
    table = Table(title=f"{name}: {len(versions)} version(s)")
    for col in ("version", "flavor", "aliases", "run", "datasets", "registered", "description"):
        table.add_column(col, overflow="fold")
    for v in versions:
        table.add_row(
            str(v.version),
            v.flavor,
            ", ".join(v.aliases) or "-",
            (v.run_id or "-")[:12],
            str(len(v.dataset_ids)),
            clock.format_ts(v.created_at),
            v.description,
        )
    out.print(table)


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")]) -> None:
    """Show one version: signature, lineage, and the alias history of its model."""
    registry = _registry()
    mv = registry.resolve(ref)
    out.print(
        f"[bold]{mv.ref}[/] ({mv.flavor}, {mv.signature.output.task})  "
        f"aliases: {', '.join(mv.aliases) or '-'}"
    )
    out.print(
        f"digest: {mv.digest}\nrun: {mv.run_id or '-'}  code: {mv.code_version or '-'}  "
        f"datasets: {', '.join(mv.dataset_ids) or '-'}"
    )
    if mv.description:
        out.print(mv.description)
    sig = Table(title="input signature")
    for col in ("column", "type", "nullable"):
        sig.add_column(col)
    for c in mv.signature.inputs:
        sig.add_row(c.name, c.type, "yes" if c.nullable else "no")
    out.print(sig)
    _print_history(registry, mv.name)


def _print_history(registry: Registry, name: str) -> None:
    events = registry.history(name)
    table = Table(title=f"alias history of {name}")
    for col in ("time", "alias", "action", "from", "to", "allowed", "reason"):
        table.add_column(col, overflow="fold")
    for e in events:
        table.add_row(
            clock.format_ts(e.created_at),
            e.alias,
            e.action,
            str(e.from_version or "-"),
            str(e.to_version or "-"),
            "[green]yes[/]" if e.allowed else "[red]no[/]",
            e.reason,
        )
    out.print(table)


def _read_table(path: Path) -> Any:
    import polars as pl

    if not path.is_file():
        raise InvalidInputError(f"no data file at {str(path)!r}")
    readers: dict[str, Callable[..., Any]] = {
        ".parquet": pl.read_parquet,
        ".csv": pl.read_csv,
        ".arrow": pl.read_ipc,
        ".ipc": pl.read_ipc,
        ".feather": pl.read_ipc,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InvalidInputError(
            f"cannot read {path.name}: evaluation data must be .parquet, .csv or .arrow"
        )
    return reader(path)


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[int, typer.Argument(help="version to promote")],
    alias: Annotated[str, typer.Option("--alias", "-a")] = "champion",
    gate: Annotated[Path | None, typer.Option("--gate", "-g", help="gate policy (YAML)")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="labelled evaluation data file")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", "-r")] = "",
    force: Annotated[
        bool, typer.Option("--force", help="promote past the model's policy gate (recorded)")
    ] = False,
) -> None:
    """Move an alias to a version if the gate passes; exit 1 when it refuses."""
    policy = Gate.load(gate) if gate is not None else None
    table = _read_table(data) if data is not None else None
    result = promote_version(
        fluent.workspace(),
        name,
        version,
        alias,
        gate=policy,
        data=table,
        reason=reason,
        force=force,
    )
    if result.gate is not None:
        out.print(
            gate_table(result.gate, f"gate {result.gate.gate!r}: {name}:{version} for {alias}")
        )
    if result.allowed:
        out.print(f"[green]promoted[/] {name}@{alias}: {result.from_version or '-'} -> {version}")
        return
    out.print(f"[bold red]refused[/] {result.reason}")
    raise typer.Exit(EXIT_REFUSED)


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="registered model name")],
    alias: Annotated[str, typer.Option("--alias", "-a")] = "champion",
    reason: Annotated[str, typer.Option("--reason", "-r")] = "",
) -> None:
    """Point an alias back at the version it held before its latest promotion."""
    event = _registry().rollback(name, alias, reason=reason)
    out.print(f"[green]rolled back[/] {name}@{alias}: {event.from_version} -> {event.to_version}")


@app.command("card")
def card(
    ref: Annotated[str, typer.Argument(help="name, name:3 or name@alias")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to a file")] = None,
) -> None:
    """Print (or write) the Markdown model card of a version."""
    mv = _registry().resolve(ref)
    text = render_card(fluent.workspace(), mv.name, mv.version)
    if output is None:
        out.print(text, markup=False, highlight=False)
    else:
        output.write_text(text)
        out.print(f"wrote {output}")
