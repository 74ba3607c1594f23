"""Starting the server: the workspace from configuration, uvicorn with one or more workers.

This is an entry point (like the CLI): it may read configuration; ``create_app`` below it
takes the workspace explicitly. With several workers uvicorn starts each in its own
process, which calls :func:`app_from_config` and resolves the same configuration (the
environment and the working directory are inherited).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from typing import Any

from fastapi import FastAPI

from loopml.api import config
from loopml.core import names
from loopml.core.errors import InvalidInputError
from loopml.server import tokens
from loopml.server.answer_at_once import TeamServerProtocol
from loopml.server.app import TeamServerApp, create_app
from loopml.server.state import MAX_UPLOAD_BYTES
from loopml.serving.options import descriptor_budget, raise_fd_limit
from loopml.store.workspace import Workspace

log = logging.getLogger("loopml.server")


def open_workspace() -> Workspace:
    settings = config.resolve()
    return Workspace(settings.db_url, settings.artifacts_url)


def max_upload_bytes() -> int:
    """The cap on one uploaded blob: ``LOOPML_MAX_UPLOAD_BYTES``, or the default."""
    text = os.environ.get("LOOPML_MAX_UPLOAD_BYTES", "").strip()
    if not text:
        return MAX_UPLOAD_BYTES
    return names.parse_positive_int(text, "LOOPML_MAX_UPLOAD_BYTES (bytes)")


def app_from_config() -> FastAPI:
    return server_app(open_workspace(), max_upload_bytes())


def server_app(ws: Workspace, upload_cap: int) -> TeamServerApp:
    """The app a server process serves: it owns ``ws`` and answers small tracking writes
    at once."""
    return answering_at_once(
        create_app(ws, close_workspace=True, max_upload_bytes=upload_cap, freeze_after_start=True)
    )


def answering_at_once(app: TeamServerApp) -> TeamServerApp:
    """The app, made the one this process's HTTP protocol asks to answer small tracking
    writes without an ASGI cycle (``answer_at_once``)."""
    TeamServerProtocol.at_once = app
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(ws: Workspace, host: str, insecure: bool) -> None:
    """Refuse to serve a workspace without tokens beyond this machine unless told to."""
    if is_loopback(host) or insecure or tokens.any_active(ws):
        return
    raise InvalidInputError(
        f"refusing to serve on {host}: this workspace has no tokens, so anyone who can reach "
        "the port could read and write it. Create one with `loopml token create --name NAME "
        "--scope read|write|admin`, or pass --insecure on a trusted network"
    )


def check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise InvalidInputError(f"port must be from 1 to 65535, not {port}")
    return port


def check_free(host: str, port: int) -> None:
    """A clear error now rather than uvicorn's exit after startup when the port is taken."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise InvalidInputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
        ) from None


def serve(
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    workers: int = 1,
    insecure: bool = False,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted; checks everything before anything listens."""
    import uvicorn

    check_port(port)
    if workers < 1:
        raise InvalidInputError(f"workers must be 1 or more, not {workers}")
    upload_cap = max_upload_bytes()
    ws = open_workspace()
    try:
        check_exposure(ws, host, insecure)
        check_free(host, port)
    except InvalidInputError:
        ws.close()
        raise
    raise_fd_limit()
    TeamServerProtocol.max_connections = descriptor_budget()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "http": TeamServerProtocol,
        # No "server: uvicorn" header: it names the software to every caller, and a client
        # parses each header of each answer (an MLflow client, one per logged metric).
        "server_header": False,
    }
    if workers == 1:
        uvicorn.run(server_app(ws, upload_cap), **options)
        return
    ws.close()
    uvicorn.run("loopml.server.run:app_from_config", factory=True, workers=workers, **options)
