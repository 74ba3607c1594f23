"""Read-only commands never create a workspace: in a folder without one they say so.

Opening a workspace migrates (and so creates) its SQLite file; a user who types
``loopml runs ls`` in the wrong folder should learn which workspace was looked at, not find
a new empty ``./.loopml`` there.
"""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from loopml.api import config
from loopml.cli.console import err, esc
from loopml.core.errors import NotFoundError


class NoWorkspaceError(NotFoundError):
    """What was asked for cannot exist: the configured workspace does not."""


def missing_workspace() -> str | None:
    """The SQLite file the configuration names, if it does not exist yet; else None."""
    settings = config.resolve()
    if settings.remote:
        return None  # the server's workspace: asking it answers what exists
    try:
        url = make_url(settings.db_url)
    except ArgumentError:
        return None  # opening it reports the malformed URL properly
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return None if Path(url.database).exists() else url.database


def require_workspace(*, listing: bool = False, missing: str = "nothing to show") -> None:
    """Stop with a clear note when the configured workspace does not exist.

    A listing of an empty workspace is not an error (a note, exit 0); asking for one thing
    in it is a ``NoWorkspaceError`` starting with ``missing`` (e.g. "no run 'abc'"), as it
    would be a ``NotFoundError`` in an existing workspace without that thing.
    """
    database = missing_workspace()
    if database is None:
        return
    sources = ", ".join(config.resolve().sources)
    note = (
        f"no workspace here yet: loopml would use {database} (configured by: {sources}), "
        "which does not exist, so it is empty. Run the command in your project's folder, "
        "set LOOPML_HOME or LOOPML_DB, or create one with `loopml demo` or `loopml data add`"
    )
    if not listing:
        raise NoWorkspaceError(f"{missing}: {note}")
    err.print(esc(note), soft_wrap=True)
    raise typer.Exit(0)
