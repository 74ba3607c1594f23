"""Blob uploads stream to disk: over the cap is a 413, a wrong digest a 400, a client that
hangs up mid-body nothing at all, and none of them leaves a byte behind (neither a blob
nor a temp file). Memory stays flat for a 200 MB body."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

import loopml as lm
from loopml.core import hashing
from loopml.server.app import create_app
from loopml.store.artifacts import ArtifactStore
from loopml.store.metadata.tables import api_writes
from loopml.store.workspace import Workspace
from tests.remote.conftest import CLIENT_VARS, start_loopml_server
from tests.server.conftest import stop
from tests.servers import free_port, uvicorn_in_thread

CAP = 100_000
http = httpx.Client(timeout=120)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    http.close()


@dataclass(frozen=True)
class Server:
    url: str
    db: str
    artifacts: str

    def blob_url(self, digest: str) -> str:
        return f"{self.url}/api/v1/blobs/{digest}"

    def stored(self) -> list[str]:
        """Every file under the store's objects and tmp folders."""
        root = Path(self.artifacts)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("uploads")
    db, artifacts = f"sqlite:///{base / 'loopml.db'}", str(base / "artifacts")
    proc, url = start_loopml_server(db, artifacts, base, {"LOOPML_MAX_UPLOAD_BYTES": str(CAP)})
    try:
        yield Server(url, db, artifacts)
    finally:
        stop(proc)


def _refused(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_an_upload_over_the_cap_is_a_413_that_leaves_nothing(server: Server) -> None:
    before = server.stored()
    data = os.urandom(CAP + 1)
    digest = hashing.digest_bytes(data)
    # Declared too large: refused before the body is read.
    _refused(http.put(server.blob_url(digest), content=data), 413, "LOOPML_MAX_UPLOAD_BYTES")

    # Sent in chunks with no length declared: refused once the count passes the cap.
    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 16_384):
            yield data[start : start + 16_384]

    _refused(http.put(server.blob_url(digest), content=pieces()), 413, "at most 100,000 bytes")
    assert server.stored() == before
    # Exactly the cap is fine, and reads back as sent.
    data = data[:CAP]
    digest = hashing.digest_bytes(data)
    r = http.put(server.blob_url(digest), content=data)
    assert r.status_code == 200 and r.json() == {"digest": digest, "size": CAP}
    assert http.get(server.blob_url(digest)).content == data
    assert "tmp" not in "".join(server.stored())


def test_a_wrong_digest_is_a_400_that_leaves_nothing(server: Server) -> None:
    before = server.stored()
    data = b"what was sent" * 1000
    claimed = hashing.digest_bytes(b"something else")
    _refused(http.put(server.blob_url(claimed), content=data), 400, "nothing was stored")
    _refused(http.put(server.blob_url("b3:not-a-digest"), content=data), 400, "digest")
    assert server.stored() == before
    assert http.get(server.blob_url(claimed)).status_code == 404


def _recorded(server: Server, path: str, deadline_s: float = 60) -> int:
    """The status the server's write log recorded for ``path`` once it finished."""
    ws = Workspace(server.db, server.artifacts)
    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            with ws.engine.connect() as conn:
                status = conn.execute(
                    select(api_writes.c.status).where(api_writes.c.path == path)
                ).scalar()
            if status is not None:
                return int(status)
            time.sleep(0.1)
    finally:
        ws.close()
    raise TimeoutError(f"the server recorded no write to {path} within {deadline_s} s")


def test_a_client_that_hangs_up_mid_body_leaves_nothing(server: Server) -> None:
    before = server.stored()
    data = os.urandom(90_000)
    digest = hashing.digest_bytes(data)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = (
            f"PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        s.sendall(head.encode() + data[:30_000])
    assert _recorded(server, f"/api/v1/blobs/{digest}") == 400
    assert server.stored() == before
    # The same blob sent whole afterwards is stored.
    assert http.put(server.blob_url(digest), content=data).status_code == 200


def test_the_client_refuses_a_file_over_the_cap_before_sending(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_URI", server.url)
    monkeypatch.chdir(tmp_path)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(CAP + 10))
    before = server.stored()
    with (
        lm.start_run("uploads") as run,
        pytest.raises(lm.InvalidInputError, match="at most 100,000 bytes"),
    ):
        run.log_artifact(big)
    assert server.stored() == before
    outputs = http.get(f"{server.url}/api/v1/runs/{run.id}/artifacts").json()["outputs"]
    assert outputs == []


def test_a_bad_cap_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    env.update(
        LOOPML_DB=f"sqlite:///{tmp_path / 'loopml.db'}",
        LOOPML_ARTIFACTS=str(tmp_path / "artifacts"),
        LOOPML_MAX_UPLOAD_BYTES="2GB",
    )
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "server", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "LOOPML_MAX_UPLOAD_BYTES" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_200_mb_upload_streams_in_flat_memory(tmp_path: Path) -> None:
    """The server runs in this process, so tracemalloc sees every Python allocation it
    makes for the upload; holding the body would take over 200 MB."""
    ws = Workspace(f"sqlite:///{tmp_path / 'loopml.db'}", str(tmp_path / "artifacts"))
    chunk, count = os.urandom(1 << 20), 200
    hasher = hashing.Hasher()
    for _ in range(count):
        hasher.update(chunk)
    digest = hasher.digest()

    def body() -> Iterator[bytes]:
        for _ in range(count):
            yield chunk

    # In this process, so that tracemalloc sees the server's allocations.
    try:
        with uvicorn_in_thread(create_app(ws)) as port:
            tracemalloc.start()
            try:
                with httpx.Client(timeout=600) as client:
                    r = client.put(
                        f"http://127.0.0.1:{port}/api/v1/blobs/{digest}",
                        content=body(),
                        headers={"Content-Length": str(count * len(chunk))},
                    )
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        ws.close()
    assert r.status_code == 200, r.text
    assert peak < 32 * 2**20, f"the upload peaked at {peak / 2**20:.0f} MiB of Python memory"
    store = ArtifactStore(str(tmp_path / "artifacts"))
    assert store.verify(digest) == count * len(chunk)
    assert os.listdir(tmp_path / "artifacts" / "tmp") == []
