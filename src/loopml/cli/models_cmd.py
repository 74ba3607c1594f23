"""``loopml models ls|show|history|promote|rollback|card``.

They go through ``lm.models``, so they work on the workspace's stores and, with
``LOOPML_URI``, on a team server alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from loopml.api import fluent
from loopml.api import models as api_models
from loopml.cli import tables
from loopml.cli.console import esc, lit, out, plural
from loopml.cli.workspace_guard import require_workspace
from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.core.names import parse_ref
from loopml.registry.gates import Gate, GateResult
from loopml.registry.model_registry import AliasEvent

app = typer.Typer(
    help="Browse the model registry; promote and roll back aliases.", no_args_is_help=True
)

EXIT_REFUSED = 1
REF_HELP = "A model: name (its latest version), name:3 or name@alias."


def gate_table(result: GateResult, title: str) -> Table:
    """Each check of a gate with its value, limit and verdict."""
    table = tables.table(title)
    tables.text(table, "check", ratio=2, wrap=True)
    tables.fixed(table, "value", justify="right")
    tables.fixed(table, "limit")
    tables.fixed(table, "verdict", justify="center")
    tables.text(table, "detail", ratio=2, wrap=True)
    for check, value, limit, verdict, detail in result.rows():
        style = "green" if verdict == "pass" else "bold red"
        table.add_row(lit(check), lit(value), lit(limit), f"[{style}]{verdict}[/]", lit(detail))
    return table


@app.command("ls")
def list_models(
    name: Annotated[str | None, typer.Argument(help="List the versions of this model.")] = None,
) -> None:
    """List registered models, or the versions of one."""
    require_workspace(listing=True)
    if name is None:
        models = api_models.list_models()
        table = tables.table(plural(len(models), "registered model"))
        tables.text(table, "name", ratio=2)
        tables.fixed(table, "latest", justify="right")
        tables.text(table, "aliases", ratio=2, wrap=True)
        tables.fixed(table, "created")
        for m in models:
            table.add_row(
                lit(m.name),
                str(m.latest_version or "-"),
                lit(", ".join(f"{a} -> {v}" for a, v in m.aliases.items()) or "-"),
                clock.format_ts(m.created_at)[:16],
            )
        out.print(table)
        return
    versions = api_models.versions(parse_ref(name, "model name", allow_alias=False).name)
    table = tables.table(f"{esc(name)}: {plural(len(versions), 'version')}")
    tables.fixed(table, "version", justify="right")
    tables.fixed(table, "flavor")
    tables.text(table, "aliases")
    tables.fixed(table, "run")
    tables.fixed(table, "registered")
    tables.text(table, "description", ratio=3)
    for v in versions:
        table.add_row(
            str(v.version),
            lit(v.flavor),
            lit(", ".join(v.aliases) or "-"),
            (v.run_id or "-")[:12],
            clock.format_ts(v.created_at)[:16],
            lit(v.description),
        )
    out.print(table)


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help=REF_HELP)]) -> None:
    """One version: signature, lineage, and the alias history of its model with each gate
    check's value, limit and verdict."""
    require_workspace(missing=f"no registered model {ref!r}")
    mv = api_models.get(ref)
    out.print(
        f"[bold]{esc(mv.ref)}[/] ({esc(mv.flavor)}, {esc(mv.signature.output.task)})  "
        f"aliases: {esc(', '.join(mv.aliases) or '-')}"
    )
    out.print(
        lit(
            f"digest: {mv.digest}\nrun: {mv.run_id or '-'}  code: {mv.code_version or '-'}  "
            f"datasets: {', '.join(mv.dataset_artifact_ids) or '-'}"
        )
    )
    if mv.description:
        out.print(lit(mv.description))
    sig = tables.table("input signature")
    tables.text(sig, "column", wrap=True)
    tables.fixed(sig, "type")
    tables.fixed(sig, "nullable")
    for c in mv.signature.inputs:
        sig.add_row(lit(c.name), lit(c.type), "yes" if c.nullable else "no")
    out.print(sig)
    _print_history(mv.name)


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="The model: name, or name@alias for one alias.")],
    alias: Annotated[
        str | None, typer.Option("--alias", "-a", help="Only the moves of this alias.")
    ] = None,
) -> None:
    """Every attempt to move an alias, allowed or refused, with each gate check's value,
    limit and verdict."""
    require_workspace(missing=f"no registered model {name!r}")
    parsed = parse_ref(name, "model reference")
    if parsed.version is not None:
        raise InvalidInputError(f"aliases belong to a model, not a version: {parsed.name}")
    if parsed.alias is not None and alias is not None and parsed.alias != alias:
        raise InvalidInputError(f"two aliases given: {parsed.alias!r} and {alias!r}")
    _print_history(parsed.name, parsed.alias or alias)


def _print_history(name: str, alias: str | None = None) -> None:
    events = api_models.history(name, alias)
    title = f"alias history of {esc(name)}" + (f"@{esc(alias)}" if alias else "")
    table = tables.table(title)
    tables.fixed(table, "time")
    tables.fixed(table, "alias")
    tables.fixed(table, "action")
    tables.fixed(table, "from", justify="right")
    tables.fixed(table, "to", justify="right")
    tables.fixed(table, "allowed")
    tables.text(table, "reason", wrap=True)
    for e in events:
        table.add_row(
            clock.format_ts(e.created_at)[:16],
            lit(e.alias),
            lit(e.action),
            str(e.from_version or "-"),
            str(e.to_version or "-"),
            "[green]yes[/]" if e.allowed else "[red]no[/]",
            lit(e.reason),
        )
    out.print(table)
    for e in events:
        result = _gate_result(e)
        if result is not None:
            when = clock.format_ts(e.created_at)[:16]
            verdict = "passed" if result.passed else "refused"
            title = (
                f"gate {esc(result.gate)} {verdict}: version {e.to_version} for "
                f"{esc(e.alias)} ({when})"
            )
            out.print(gate_table(result, title))


def _gate_result(event: AliasEvent) -> GateResult | None:
    if not event.gate_result:
        return None
    try:
        return GateResult.from_dict(event.gate_result)
    except (KeyError, TypeError, ValueError):
        return None  # recorded by another loopml version: the history row still shows


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


def _name_and_version(ref: str, version: int | None) -> tuple[str, int]:
    """``name:3``, ``name@challenger``, ``name`` (latest) or the older ``name 3``."""
    if version is not None:
        name = parse_ref(ref, "model name", allow_alias=False)
        if name.version is not None:
            raise InvalidInputError(
                f"give the version once: {name.name}:{name.version} or {name.name} {version}"
            )
        return name.name, version
    mv = api_models.get(ref)
    return mv.name, mv.version


@app.command("promote")
def promote(
    ref: Annotated[
        str, typer.Argument(help="The version to promote: name:3, name@challenger or name.")
    ],
    version: Annotated[
        int | None, typer.Argument(help="The version number, if REF is a plain name.")
    ] = None,
    alias: Annotated[str, typer.Option("--alias", "-a", help="The alias to move.")] = "champion",
    gate: Annotated[
        Path | None, typer.Option("--gate", "-g", help="A gate policy file (YAML).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Labelled evaluation data (.parquet, .csv, .arrow); with LOOPML_URI, a "
            "dataset of the server's catalog (e.g. holdout:2), since the gate runs there.",
        ),
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why, recorded in the alias history.")
    ] = "",
    force: Annotated[
        bool,
        typer.Option("--force", help="Promote past the model's policy gate (recorded as forced)."),
    ] = False,
) -> None:
    """Move an alias to a version if the gate passes; exit 1 when it refuses."""
    require_workspace(missing=f"no registered model {ref!r}")
    name, number = _name_and_version(ref, version)
    policy = Gate.load(gate) if gate is not None else None
    evaluation: Any = None
    if data is not None:
        remote = fluent.remote_registry() is not None
        if remote and Path(data).is_file():
            raise InvalidInputError(
                f"with LOOPML_URI the gate runs on the server, so --data names a dataset of "
                f"its catalog (e.g. holdout:2), not the local file {data!r}; add the table "
                "there first with lm.datasets.add"
            )
        evaluation = data if remote else _read_table(Path(data))
    result = api_models.promote(
        name,
        number,
        alias,
        gate=policy,
        data=evaluation,
        reason=reason,
        force=force,
        raise_on_refusal=False,
    )
    if result.gate is not None:
        title = f"gate {esc(result.gate.gate)}: {esc(name)}:{number} for {esc(alias)}"
        out.print(gate_table(result.gate, title))
    if result.allowed:
        out.print(
            f"[green]promoted[/] {esc(name)}@{esc(alias)}: {result.from_version or '-'} -> {number}"
        )
        return
    out.print(f"[bold red]refused[/] {esc(result.reason)}")
    raise typer.Exit(EXIT_REFUSED)


@app.command("rollback")
def rollback(
    ref: Annotated[str, typer.Argument(help="The model: name or name@alias.")],
    alias: Annotated[
        str | None,
        typer.Option("--alias", "-a", help="The alias to roll back (default: champion)."),
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why, recorded in the alias history.")
    ] = "",
) -> None:
    """Point an alias back at the version it held before its latest promotion."""
    require_workspace(missing=f"no registered model {ref!r}")
    parsed = parse_ref(ref, "model reference")
    if parsed.version is not None:
        raise InvalidInputError(
            f"roll back an alias, not a version: {parsed.name}@champion or --alias NAME"
        )
    if parsed.alias is not None and alias is not None and parsed.alias != alias:
        raise InvalidInputError(f"two aliases given: {parsed.alias!r} and {alias!r}")
    target = parsed.alias or alias or "champion"
    event = api_models.rollback(parsed.name, target, reason=reason)
    out.print(
        f"[green]rolled back[/] {esc(parsed.name)}@{esc(target)}: "
        f"{event.from_version} -> {event.to_version}"
    )


@app.command("card")
def card(
    ref: Annotated[str, typer.Argument(help=REF_HELP)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the card to this file.")
    ] = None,
) -> None:
    """Print (or write) the Markdown model card of a version, with its gate checks."""
    require_workspace(missing=f"no registered model {ref!r}")
    mv = api_models.get(ref)
    text = api_models.card(mv.ref) + gate_markdown(api_models.history(mv.name), mv.version)
    if output is None:
        # Markdown tables are one line a row: never wrap them to the terminal's width.
        out.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {esc(output)}")


def gate_markdown(events: list[AliasEvent], version: int) -> str:
    """A card section: each gate attempt on ``version``, every check's value, limit, verdict."""
    lines = ["", "## Gate checks", ""]
    attempts = [(e, r) for e in events if e.to_version == version if (r := _gate_result(e))]
    if not attempts:
        return "\n".join([*lines, "No gate has been run on this version.", ""])

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    for event, result in attempts:
        verdict = "passed" if result.passed else "refused"
        lines += [
            f"Gate `{cell(result.gate)}` {verdict} for `{cell(event.alias)}` "
            f"({clock.format_ts(event.created_at)}).",
            "",
            "| check | value | limit | verdict | detail |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {' | '.join(cell(c) for c in row)} |" for row in result.rows()]
        lines.append("")
    return "\n".join(lines)
