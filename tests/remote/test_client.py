"""What only remote mode has: tokens, an unreachable server, background sending, the
configuration, and the write endpoints answering hostile input with a 4xx."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import loopml as lm
from loopml.api import config
from loopml.api.remote import RemoteAccessError
from loopml.server import tokens
from loopml.store.workspace import Workspace
from tests.remote.conftest import CLIENT_VARS, start_loopml_server
from tests.server.conftest import stop
from tests.servers import free_port

# A generous deadline: the machine running the suite may be busy.
http = httpx.Client(timeout=120)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    http.close()


class Remote:
    def __init__(self, url: str, writer: str, reader: str):
        self.url, self.writer, self.reader = url, writer, reader
        self.api = f"{url}/api/v1"

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.writer}"}


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("client")
    db, artifacts = f"sqlite:///{base / 'loopml.db'}", str(base / "artifacts")
    ws = Workspace(db, artifacts)
    try:
        writer = tokens.create(ws, "ci", "write")
        reader = tokens.create(ws, "dash", "read")
    finally:
        ws.close()
    proc, url = start_loopml_server(db, artifacts, base)
    try:
        yield Remote(url, writer, reader)
    finally:
        stop(proc)


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_tokens_decide_what_the_client_may_do(
    remote: Remote, client_env: pytest.MonkeyPatch
) -> None:
    client_env.setenv("LOOPML_URI", remote.url)
    with pytest.raises(RemoteAccessError, match="LOOPML_TOKEN"):
        lm.search_runs()
    client_env.setenv("LOOPML_TOKEN", remote.reader)
    assert isinstance(lm.search_runs(), list)
    with pytest.raises(RemoteAccessError, match="'write'"):
        lm.start_run("tokens")
    client_env.setenv("LOOPML_TOKEN", "lm_not-a-token")
    with pytest.raises(RemoteAccessError, match="unknown token"):
        lm.search_runs()


def test_metrics_are_sent_in_the_background(remote: Remote, client_env: pytest.MonkeyPatch) -> None:
    client_env.setenv("LOOPML_URI", remote.url)
    client_env.setenv("LOOPML_TOKEN", remote.writer)
    run = lm.start_run("background")
    for i in range(1000):
        run.log_metric("loss", float(i))
    # Read with a plain HTTP client, which flushes nothing: the points arrive by themselves.
    deadline = time.monotonic() + 60
    got: dict[str, object] = {}
    while time.monotonic() < deadline:
        got = http.get(f"{remote.api}/runs/{run.id}", headers=remote.headers()).json()
        if got["metrics"].get("loss") == 999.0:
            break
        time.sleep(0.1)
    assert got["metrics"] == {"loss": 999.0} and got["status"] == "running"
    run.end()
    assert lm.get_run(run.id).status == "finished"


def test_an_unreachable_or_misnamed_server_is_a_clear_error(client_env: pytest.MonkeyPatch) -> None:
    client_env.setenv("LOOPML_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(lm.StoreError, match="cannot reach the loopml server"):
        lm.start_run("nowhere")
    for bad in ("127.0.0.1:5000", "ftp://host", "http://", "http://h:99999", "http://u:p@h"):
        client_env.setenv("LOOPML_URI", bad)
        with pytest.raises(lm.ConfigError, match="LOOPML_URI"):
            lm.search_runs()
    client_env.delenv("LOOPML_URI")
    (Path.cwd() / "loopml.toml").write_text('[workspace]\nuri = "http://127.0.0.1:1/"\n')
    settings = config.resolve()
    assert settings.uri == "http://127.0.0.1:1" and settings.remote


def test_what_needs_the_stores_says_so(remote: Remote, client_env: pytest.MonkeyPatch) -> None:
    client_env.setenv("LOOPML_URI", remote.url)
    with pytest.raises(lm.ConfigError, match="LOOPML_URI names a server"):
        lm.workspace()
    client_env.setenv("LOOPML_TOKEN", remote.writer)
    with lm.start_run("artifacts") as run, pytest.raises(lm.NotFoundError, match="nothing at"):
        run.log_artifact("somewhere.txt")


def test_write_endpoints_answer_hostile_input_with_a_4xx(remote: Remote) -> None:
    h = remote.headers()
    made = http.post(f"{remote.api}/runs", json={"experiment": "hostile"}, headers=h)
    assert made.status_code == 200, made.text
    run_id = made.json()["id"]
    batch = f"{remote.api}/runs/{run_id}/batch"
    point = {"key": "loss", "value": 1.0, "step": 0}
    cases: list[tuple[object, int, str]] = [
        ({"metrics": [{**point, "value": "NaN"}]}, 400, "finite"),
        ({"metrics": [{**point, "value": "high"}]}, 400, "value"),
        ({"metrics": [{**point, "key": "bad\nkey"}]}, 400, "metric name"),
        ({"metrics": [{**point, "step": 2**63}]}, 400, "step"),
        ({"metrics": [{**point, "timestamp": "Infinity"}]}, 400, "timestamp"),
        ({"metrics": [point] * 100_001}, 400, "metrics"),
        ({"params": {"lr": 0.1}}, 400, "params"),
        ({"tags": {"loopml.created_by": "mallory"}}, 400, "reserved"),
        ({"metrics": [point], "tags": {"ok": "x" * 8001}}, 400, "8000"),
        ([1, 2], 400, "dictionary"),
    ]
    for body, status, words in cases:
        r = http.post(batch, json=body, headers=h)
        assert r.status_code == status and words in r.json()["error"], (body, r.text)
    r = http.post(batch, content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400
    # Nothing of a refused batch was written.
    got = http.get(f"{remote.api}/runs/{run_id}", headers=h).json()
    assert got["metrics"] == {} and "ok" not in got["tags"]
    assert http.post(f"{remote.api}/runs/nope/batch", json={}, headers=h).status_code == 404
    end = f"{remote.api}/runs/{run_id}/end"
    assert http.post(end, json={"status": "exploded"}, headers=h).status_code == 400
    assert (
        http.post(end, json={"status": "failed", "error": "x" * 20_001}, headers=h).status_code
        == 400
    )
    assert http.post(end, json={"status": "failed", "error": "oom"}, headers=h).status_code == 200
    late = http.post(batch, json={"metrics": [point]}, headers=h)
    assert late.status_code == 409 and "failed" in late.json()["error"]
    got = http.get(f"{remote.api}/runs/{run_id}", headers=h).json()
    assert (got["status"], got["error"]) == ("failed", "oom")


def test_search_pages_through_the_server(remote: Remote, client_env: pytest.MonkeyPatch) -> None:
    from loopml.api.remote import tracking

    client_env.setenv("LOOPML_URI", remote.url)
    client_env.setenv("LOOPML_TOKEN", remote.writer)
    ids = []
    for i in range(5):
        with lm.start_run("paging", name=f"p{i}") as run:
            run.log_metric("m", float(i))
        ids.append(run.id)
    client_env.setattr(tracking, "PAGE", 2)  # five runs take three requests
    assert [r.id for r in lm.search_runs("paging", order_by="metrics.m")] == ids
    assert [r.id for r in lm.search_runs("paging", order_by="metrics.m", limit=3)] == ids[:3]
    assert [r.name for r in lm.search_runs("paging", filter="metrics.m >= 3")] == ["p4", "p3"]


def test_the_runs_commands_read_through_the_server(
    remote: Remote,
    client_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from loopml.cli.app import main

    client_env.setenv("LOOPML_URI", remote.url)
    client_env.setenv("LOOPML_TOKEN", remote.writer)
    client_env.setenv("COLUMNS", "200")
    with lm.start_run("cli-remote", name="from-the-cli", params={"depth": 3}) as run:
        run.log_metric("auc", 0.75)
        notes = tmp_path / "notes.txt"
        notes.write_text("from the cli test")
        logged = run.log_artifact(notes)
    capsys.readouterr()
    assert main(["runs", "ls", "-e", "cli-remote"]) == 0
    listed = capsys.readouterr().out
    assert "from-the-cli" in listed and run.id[:12] in listed and "0.75" in listed
    assert main(["runs", "show", run.id[:12]]) == 0
    shown = capsys.readouterr().out
    assert run.id in shown and "depth" in shown
    # The table may fold long cells over lines, whatever the terminal's width.
    compact = "".join(shown.split())
    assert "notes.txt" in compact and logged.digest in compact
    assert main(["runs", "show", "nosuchrun"]) == 1
    # What needs the stores says so, with a usage exit code.
    assert main(["build", "some-model@champion"]) == 2
    assert "LOOPML_URI names a server" in capsys.readouterr().err
