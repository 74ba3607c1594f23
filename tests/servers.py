"""Fixtures for real servers on loopback: PostgreSQL (initdb + pg_ctl) and S3 (moto).

Each starts once per test session (per xdist worker) in a temp dir on a free port, and is
stopped at the end. Tests get a fresh database / bucket each.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_BIN_DIRS = [
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
]


@contextlib.contextmanager
def uvicorn_in_thread(app: Any, **options: Any) -> Iterator[int]:
    """``app`` served by uvicorn on a thread of this process (so a test can see inside
    it), on a free loopback port, which is yielded. No lifespan: the team server's warm-up
    thread imports SciPy, which no such test needs."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive(), "the in-process server stopped while starting"
            assert time.monotonic() < deadline, "the in-process server did not start in 60 s"
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=60)


# Its own generator: a test that seeds the global one must not make two xdist workers
# draw the same ports.
_ports = random.Random()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, for a server a test starts.

    Drawn below the kernel's ephemeral range: a port the kernel handed out (bind to port 0)
    is one it may hand out again at once as the source port of any outgoing connection,
    which then takes it before the server binds ("Address already in use" in CI)."""
    high = min(_ephemeral_low(), 65536) - 1
    low = max(1024, high - 12_000)
    for _ in range(200):
        port = _ports.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port from {low} to {high}")


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for d in PG_BIN_DIRS:
        candidate = os.path.join(d, name)
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")


def _run_as_postgres_user() -> list[str]:
    # initdb refuses to run as root; CI runs as root, so drop to an unprivileged user.
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "nobody", "--"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server; yields a base URL without a database name."""
    # Not under pytest's tmp dir: that is private to root, and the server runs as nobody.
    base = Path(tempfile.mkdtemp(prefix="loopml-pg-"))
    data = base / "data"
    prefix = _run_as_postgres_user()
    if prefix:
        shutil.chown(base, "nobody")
    port = free_port()
    subprocess.run(
        [
            *prefix,
            _pg_tool("initdb"),
            "-D",
            str(data),
            "-U",
            "loopml",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    log = base / "server.log"
    subprocess.run(
        [
            *prefix,
            _pg_tool("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {base} -F",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://loopml@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, _pg_tool("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        postgres_server.replace("+psycopg", "") + "/postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_artifacts(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, object]]:
    """A fresh bucket: (url, storage_options) for ArtifactStore / Workspace."""
    import boto3

    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    options: dict[str, object] = {
        "client_kwargs": {"endpoint_url": s3_server},
        "key": "testing",
        "secret": "testing",
        "skip_instance_cache": True,
    }
    return f"s3://{bucket}/artifacts", options


def read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` answers (head, body) read off the socket, each sized by content-length."""
    buffer = b""
    answers: list[tuple[bytes, bytes]] = []
    while len(answers) < count:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = buffer[:end]
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(buffer) >= end + 4 + length:
                answers.append((head, buffer[end + 4 : end + 4 + length]))
                buffer = buffer[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"the server closed after {len(answers)} of {count} answers"
        buffer += chunk
    assert buffer == b"", "the server sent more than was asked"
    return answers
