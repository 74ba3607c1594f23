"""``loopml doctor`` and ``loopml migrate``: what workspace is in use, and is it healthy."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from loopml.api import config, fluent
from loopml.cli import tables
from loopml.cli.console import esc, lit, out, print_error
from loopml.core.errors import LoopmlError, StoreError
from loopml.store.artifacts import ArtifactStore
from loopml.store.metadata import migrate as migrations
from loopml.store.workspace import StoreCheck


def _checks(settings: config.Settings) -> tuple[list[StoreCheck], str | None]:
    """Both stores checked, and the error that stopped the metadata store from opening
    (a corrupted or unreachable database still gets its FAILED row, and the artifact
    store is checked on its own)."""
    try:
        ws = fluent.workspace()
    except StoreError as exc:  # a configuration mistake is a usage error and still raises
        url = make_url(settings.db_url).render_as_string(hide_password=True)
        failed = StoreCheck("metadata", url, False, str(exc).splitlines()[0])
        try:
            ArtifactStore(settings.artifacts_url).check_writable()
            artifacts = StoreCheck("artifacts", settings.artifacts_url, True, "read/write ok")
        except LoopmlError as art_exc:
            artifacts = StoreCheck("artifacts", settings.artifacts_url, False, str(art_exc))
        return [failed, artifacts], str(exc)
    return ws.check(), None


def doctor() -> None:
    """Print the workspace in use and check both stores can be written and read."""
    settings = config.resolve()
    checks, problem = _checks(settings)
    table = tables.table("loopml workspace")
    tables.fixed(table, "store")
    table.add_column("location", overflow="fold", ratio=2)
    tables.fixed(table, "status")
    tables.text(table, "detail", ratio=1, wrap=True)
    for check in checks:
        status = "[green]ok[/]" if check.ok else "[red]FAILED[/]"
        table.add_row(lit(check.name), lit(check.url), status, lit(check.detail))
    out.print(table)
    out.print(f"configured by: {esc(', '.join(settings.sources))}")
    if problem is not None:
        print_error(problem)
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
