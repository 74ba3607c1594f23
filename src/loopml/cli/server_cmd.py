"""``loopml ui``, ``loopml server`` and ``loopml token create|ls|revoke``.

``cli/app.py`` registers them with ``server_cmd.register(app)``. The server package (and
FastAPI with it) is imported only when one of these commands runs.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from loopml.api.fluent import workspace
from loopml.cli.console import err, out
from loopml.core import clock


def ui(
    port: Annotated[int, typer.Option("--port", "-p", help="port on 127.0.0.1")] = 5000,
) -> None:
    """Browse this workspace's runs, data, models, pipelines and monitoring on 127.0.0.1."""
    from loopml.server.run import serve

    err.print(f"loopml UI on http://127.0.0.1:{port}/ (Ctrl-C stops it)")
    serve("127.0.0.1", port)


def server(
    host: Annotated[str, typer.Option("--host", help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="port")] = 5000,
    workers: Annotated[int, typer.Option("--workers", "-w", help="worker processes")] = 1,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="serve beyond loopback even with no token (trusted LAN)"),
    ] = False,
) -> None:
    """The team server: HTTP API + web UI over the configured workspace (e.g. PostgreSQL + S3)."""
    from loopml.server.run import serve

    err.print(f"loopml server on http://{host}:{port}/ with {workers} worker(s)")
    serve(host, port, workers=workers, insecure=insecure)


token_app = typer.Typer(help="Bearer tokens of the team server.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="who or what uses it, e.g. ci")],
    scope: Annotated[str, typer.Option("--scope", help="read, write or admin")] = "read",
) -> None:
    """Create a token and print it once; the server keeps only its hash."""
    from loopml.server import tokens

    token = tokens.create(workspace(), name, scope)
    err.print(f"token {name!r} ({scope}); store it now, it is not shown again:")
    out.print(token, soft_wrap=True)


@token_app.command("ls")
def token_ls() -> None:
    """List tokens (names, scopes, dates; never the tokens)."""
    from loopml.server import tokens

    table = Table(title="tokens")
    for col in ("name", "scope", "created", "revoked"):
        table.add_column(col)
    for t in tokens.list_tokens(workspace()):
        table.add_row(t.name, t.scope, clock.format_ts(t.created_at), clock.format_ts(t.revoked_at))
    out.print(table)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="the token's name")]) -> None:
    """Revoke a token: the server refuses it from the next request on."""
    from loopml.server import tokens

    tokens.revoke(workspace(), name)
    out.print(f"revoked token {name!r}")


def register(app: typer.Typer) -> None:
    app.command()(ui)
    app.command()(server)
    app.add_typer(token_app, name="token")
