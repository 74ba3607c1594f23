"""A busy port is one clean line, for HTTP and gRPC alike, with one worker or several."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from loopml.store.workspace import Workspace
from tests.servers import free_port


@pytest.mark.parametrize(("busy", "workers"), [("grpc", "1"), ("grpc", "2"), ("http", "1")])
def test_busy_port_is_one_clean_line(shared_ws: Workspace, busy: str, workers: str) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    http_port = taken if busy == "http" else free_port()
    grpc_port = taken if busy == "grpc" else free_port()
    env = {**os.environ, "LOOPML_DB": shared_ws.db_url, "LOOPML_ARTIFACTS": shared_ws.artifacts_url}
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "loopml.cli",
                "serve",
                "delay@champion",
                "--port",
                str(http_port),
                "--grpc-port",
                str(grpc_port),
                "--workers",
                workers,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.close()
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert f"127.0.0.1:{taken}" in output and "in use" in output, output
    assert ("gRPC" in output) == (busy == "grpc"), output
    assert "Traceback" not in output and ".cc:" not in output, output
    assert len(output.splitlines()) == 1, output
