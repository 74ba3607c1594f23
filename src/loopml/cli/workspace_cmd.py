"""``loopml doctor`` and ``loopml migrate``: what workspace is in use, and is it healthy."""

from __future__ import annotations

import typer
from rich.table import Table

from loopml.api import config, fluent
from loopml.cli.console import out
from loopml.store.metadata import migrate as migrations


def doctor() -> None:
    """Print the workspace in use and check both stores can be written and read."""
    settings = config.resolve()
    ws = fluent.workspace()
    table = Table(title="loopml workspace", show_lines=False)
    table.add_column("store")
    table.add_column("location")
    table.add_column("status")
    table.add_column("detail")
    checks = ws.check()
    for check in checks:
        status = "[green]ok[/]" if check.ok else "[red]FAILED[/]"
        table.add_row(check.name, check.url, status, check.detail)
    out.print(table)
    out.print(f"configured by: {', '.join(settings.sources)}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def migrate() -> None:
    """Apply pending metadata-store migrations (also done automatically on first use)."""
    ws = fluent.workspace()
    ws.migrate()
    out.print(
        f"metadata store {ws.safe_db_url} is at schema revision {ws.schema_revision()} "
        f"(newest: {migrations.head_revision()})"
    )


def register(app: typer.Typer) -> None:
    app.command()(doctor)
    app.command()(migrate)
