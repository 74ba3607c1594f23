"""``loopml doctor`` and ``loopml migrate``: what workspace is in use, and is it healthy."""

from __future__ import annotations

import typer

from loopml.api import config, fluent
from loopml.cli import tables
from loopml.cli.console import esc, lit, out
from loopml.store.metadata import migrate as migrations


def doctor() -> None:
    """Print the workspace in use and check both stores can be written and read."""
    settings = config.resolve()
    ws = fluent.workspace()
    table = tables.table("loopml workspace")
    tables.fixed(table, "store")
    table.add_column("location", overflow="fold", ratio=2)
    tables.fixed(table, "status")
    tables.text(table, "detail", ratio=1, wrap=True)
    checks = ws.check()
    for check in checks:
        status = "[green]ok[/]" if check.ok else "[red]FAILED[/]"
        table.add_row(lit(check.name), lit(check.url), status, lit(check.detail))
    out.print(table)
    out.print(f"configured by: {esc(', '.join(settings.sources))}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def migrate() -> None:
    """Apply pending metadata-store migrations (also done automatically on first use)."""
    ws = fluent.workspace()
    ws.migrate()
    out.print(
        f"metadata store {esc(ws.safe_db_url)} is at schema revision "
        f"{esc(ws.schema_revision())} (newest: {esc(migrations.head_revision())})"
    )


def register(app: typer.Typer) -> None:
    app.command()(doctor)
    app.command()(migrate)
