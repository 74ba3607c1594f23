"""``run.log_artifact`` through a team server: files and folders are uploaded as blobs
(only what the server lacks), attached to the run on the server, and listed and
downloaded with the run's artifacts byte for byte; hostile names and manifests are
refused with a 4xx and leave nothing behind."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import loopml as lm
from loopml.core import hashing
from loopml.server import tokens
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests.remote.conftest import CLIENT_VARS, start_loopml_server
from tests.server.conftest import stop

pytestmark = pytest.mark.slow

http = httpx.Client(timeout=120)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    http.close()


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    db: str
    artifacts: str

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("artifacts")
    db, artifacts = f"sqlite:///{base / 'loopml.db'}", str(base / "artifacts")
    ws = Workspace(db, artifacts)
    try:
        token = tokens.create(ws, "ci", "write")
    finally:
        ws.close()
    proc, url = start_loopml_server(db, artifacts, base)
    try:
        yield Server(url, token, db, artifacts)
    finally:
        stop(proc)


@pytest.fixture
def as_ci(server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Server:
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_URI", server.url)
    monkeypatch.setenv("LOOPML_TOKEN", server.token)
    monkeypatch.chdir(tmp_path)
    return server


def _folder(root: Path) -> dict[str, bytes]:
    files = {
        "weights.bin": os.urandom(300_000) + bytes(range(256)),
        "config/params.json": b'{"lr": 0.1}\n',
        "config/empty.txt": b"",
        "n\u00e9sted/deeper/r\u00e9sum\u00e9.md": "caf\u00e9\r\n".encode(),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _download(server: Server, artifact_id: str, path: str | None = None) -> bytes:
    params = {} if path is None else {"path": path}
    r = http.get(
        f"{server.api}/artifacts/{artifact_id}/download", params=params, headers=server.headers
    )
    assert r.status_code == 200, r.text
    return r.content


def test_files_and_folders_round_trip_byte_for_byte(as_ci: Server, tmp_path: Path) -> None:
    single = tmp_path / "notes.bin"
    single.write_bytes(os.urandom(70_000) + b"\x00\xff" * 10)
    folder = tmp_path / "model"
    files = _folder(folder)
    with lm.start_run("artifacts") as run:
        a = run.log_artifact(single)
        b = run.log_artifact(folder, name="checkpoints/model")
        again = run.log_artifact(single, name="copy.bin")  # nothing new to upload
    assert (a.name, a.kind, a.size) == ("notes.bin", "file", single.stat().st_size)
    assert a.digest == hashing.digest_file(str(single))[0] == again.digest
    assert (b.name, b.kind, b.size) == ("checkpoints/model", "tree", sum(map(len, files.values())))
    listed = http.get(f"{as_ci.api}/runs/{run.id}/artifacts", headers=as_ci.headers).json()
    outputs = {o["name"]: o for o in listed["outputs"]}
    assert set(outputs) == {"notes.bin", "checkpoints/model", "copy.bin"}
    assert outputs["notes.bin"]["id"] == a.id and outputs["checkpoints/model"]["digest"] == b.digest
    assert _download(as_ci, a.id) == single.read_bytes()
    tree = http.get(f"{as_ci.api}/artifacts/{b.id}/files", headers=as_ci.headers).json()
    assert sorted(f["path"] for f in tree) == sorted(files)
    for rel, data in files.items():
        assert _download(as_ci, b.id, rel) == data
    # The same file logged locally on the server's stores is the same content.
    ws = Workspace(as_ci.db, as_ci.artifacts)
    try:
        with Tracker(ws).start_run("artifacts") as local:
            mine = local.log_artifact(single)
            tree_local = local.log_artifact(folder)
        assert (mine.digest, tree_local.digest) == (a.digest, b.digest)
    finally:
        ws.close()


def test_hostile_names_are_refused_before_anything_is_sent(as_ci: Server, tmp_path: Path) -> None:
    src = tmp_path / "x.txt"
    src.write_text("x")
    with lm.start_run("hostile") as run:
        for bad in ("../x.txt", "/etc/passwd", "a/../../b", "a//b", "./x", "a\\b", "loopml.x"):
            with pytest.raises(lm.InvalidInputError):
                run.log_artifact(src, name=bad)
        with pytest.raises(lm.NotFoundError):
            run.log_artifact(tmp_path / "missing.txt")
    listed = http.get(f"{as_ci.api}/runs/{run.id}/artifacts", headers=as_ci.headers).json()
    assert listed["outputs"] == []
    with pytest.raises(lm.ConflictError, match="has ended"):
        run.log_artifact(src)


def _put(server: Server, data: bytes) -> str:
    digest = hashing.digest_bytes(data)
    r = http.put(f"{server.api}/blobs/{digest}", content=data, headers=server.headers)
    assert r.status_code == 200, r.text
    return digest


def _manifest(files: list[dict[str, object]]) -> bytes:
    return json.dumps({"format": "loopml.tree/1", "files": files}, sort_keys=True).encode()


def test_hostile_attach_requests_are_4xx_and_write_nothing(as_ci: Server) -> None:
    h = as_ci.headers
    run_id = http.post(f"{as_ci.api}/runs", json={"experiment": "attach"}, headers=h).json()["id"]
    good = _put(as_ci, b"good bytes")
    size = len(b"good bytes")
    absent = hashing.digest_bytes(b"never uploaded")

    def tree(path: str, digest: str = good, n: int = size) -> str:
        return _put(as_ci, _manifest([{"path": path, "digest": digest, "size": n}]))

    twice = _put(
        as_ci,
        _manifest([{"path": "a", "digest": good, "size": size}] * 2),
    )
    cases: list[tuple[dict[str, object], int]] = [
        ({"digest": good, "kind": "file", "name": "../escape"}, 400),
        ({"digest": good, "kind": "file", "name": "/abs"}, 400),
        ({"digest": good, "kind": "file", "name": "a\x00b"}, 400),
        ({"digest": good, "kind": "file", "name": ""}, 400),
        ({"digest": good, "kind": "folder", "name": "x"}, 400),
        ({"digest": "b3:nothex", "kind": "file", "name": "x"}, 400),
        ({"digest": absent, "kind": "file", "name": "x"}, 404),
        ({"digest": good, "kind": "tree", "name": "x"}, 400),  # not a manifest
        ({"digest": tree("../../etc/passwd"), "kind": "tree", "name": "x"}, 400),
        ({"digest": tree("/etc/passwd"), "kind": "tree", "name": "x"}, 400),
        ({"digest": tree("a/./b"), "kind": "tree", "name": "x"}, 400),
        ({"digest": tree("ok", absent), "kind": "tree", "name": "x"}, 404),
        ({"digest": tree("ok", good, size + 1), "kind": "tree", "name": "x"}, 400),
        ({"digest": twice, "kind": "tree", "name": "x"}, 400),
        ({"kind": "file", "name": "x"}, 400),
    ]
    for body, status in cases:
        r = http.post(f"{as_ci.api}/runs/{run_id}/artifacts", json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]
    r = http.post(
        f"{as_ci.api}/runs/no-such-run/artifacts",
        json={"digest": good, "kind": "file", "name": "x"},
        headers=h,
    )
    assert r.status_code == 404
    listed = http.get(f"{as_ci.api}/runs/{run_id}/artifacts", headers=h).json()
    assert listed["outputs"] == []
    # An ended run takes no more artifacts.
    assert http.post(f"{as_ci.api}/runs/{run_id}/end", json={"status": "finished"}, headers=h)
    r = http.post(
        f"{as_ci.api}/runs/{run_id}/artifacts",
        json={"digest": good, "kind": "file", "name": "late"},
        headers=h,
    )
    assert r.status_code == 409
    assert http.get(f"{as_ci.api}/runs/{run_id}/artifacts", headers=h).json()["outputs"] == []
