"""Tokens: a read token cannot write, no token cannot read, a revoked token is refused;
every write records the token's name; no tokens means loopback only unless --insecure."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from loopml.cli.app import main
from loopml.server import tokens
from loopml.store.metadata.tables import api_writes
from loopml.store.workspace import Workspace
from tests.server.conftest import server_env, start_server, stop

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for key, value in server_env(home).items():
        monkeypatch.setenv(key, value)
    for var in ("LOOPML_DB", "LOOPML_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def url(home: Path) -> Iterator[str]:
    proc, url = start_server(home, "server")
    try:
        yield url
    finally:
        stop(proc)


def create(name: str, scope: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["token", "create", "--name", name, "--scope", scope]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith(tokens.PREFIX)
    return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_scopes_revocation_and_who_did_what(
    home: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api = f"{url}/api/v1"
    # Without any token the server is open (it listens on loopback only).
    assert httpx.get(f"{api}/runs").status_code == 200
    reader = create("dashboard", "read", capsys)
    writer = create("ci", "write", capsys)
    # No token cannot read, on the API or on a page.
    r = httpx.get(f"{api}/runs")
    assert r.status_code == 401 and "Bearer" in r.json()["error"]
    assert r.headers["www-authenticate"] == "Bearer"
    page = httpx.get(f"{url}/runs")
    assert page.status_code == 401 and "/login" in page.text
    assert httpx.get(f"{api}/runs", headers=auth("lm_not-a-token")).status_code == 401
    assert httpx.get(f"{api}/runs", headers={"Authorization": f"Basic {reader}"}).status_code == 401
    # A read token reads but cannot write.
    assert httpx.get(f"{api}/runs", headers=auth(reader)).status_code == 200
    body = {"experiment": "remote", "params": {"lr": "0.1"}}
    refused = httpx.post(f"{api}/runs", json=body, headers=auth(reader))
    assert refused.status_code == 403 and "write" in refused.json()["error"]
    # A write token writes, and the run says who made it.
    made = httpx.post(f"{api}/runs", json=body, headers=auth(writer))
    assert made.status_code == 200, made.text
    run_id = made.json()["id"]
    run = httpx.get(f"{api}/runs/{run_id}", headers=auth(reader)).json()
    assert run["created_by"] == "ci"
    # The sign-in form sets a cookie that pages accept.
    with httpx.Client(base_url=url) as browser:
        bad = browser.post("/login", data={"token": "lm_wrong", "next": "/runs"})
        assert bad.status_code == 401
        signed = browser.post("/login", data={"token": reader, "next": "/runs"})
        assert signed.status_code == 303 and signed.headers["location"] == "/runs"
        assert browser.get("/runs").status_code == 200
        # The redirect after sign-in stays on this server.
        away = browser.post("/login", data={"token": reader, "next": "//evil.example/"})
        assert away.headers["location"] == "/runs"
    # A revoked token is refused from the next request on.
    assert main(["token", "revoke", "dashboard"]) == 0
    r = httpx.get(f"{api}/runs", headers=auth(reader))
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert main(["token", "revoke", "dashboard"]) == 1  # nothing active by that name
    # Every write is recorded with the token's name (refused ones too). The server writes
    # its audit rows in batches a moment after answering, so they are awaited.
    expected = {("dashboard", 403), ("ci", 200)}
    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    try:
        deadline = time.monotonic() + 30
        while True:
            with ws.engine.connect() as conn:
                rows = set(conn.execute(select(api_writes.c.token_name, api_writes.c.status)))
            if expected <= rows or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        ws.close()
    assert expected <= rows


def test_token_commands_refuse_bad_input(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create("ci", "admin", capsys)
    assert (
        main(["token", "create", "--name", "ci", "--scope", "read"]) == 1
    )  # exists already: a conflict, not a usage mistake
    assert "exists already" in capsys.readouterr().err
    assert main(["token", "create", "--name", "x", "--scope", "root"]) == 2
    assert "scope must be one of" in capsys.readouterr().err
    assert main(["token", "create", "--name", "bad name", "--scope", "read"]) == 2
    assert main(["token", "ls"]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and "admin" in listing and tokens.PREFIX not in listing


def test_no_tokens_means_loopback_only(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before anything listens: the command returns instead of serving.
    assert main(["server", "--host", "0.0.0.0", "--port", "5999"]) == 2
    assert "no tokens" in capsys.readouterr().err
    assert main(["server", "--port", "0"]) == 2
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        assert main(["ui", "--port", port]) == 2
        assert "choose another --port" in capsys.readouterr().err
    assert main(["server", "--workers", "0"]) == 2


def test_several_workers_share_tokens_and_workspace(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = create("ci", "write", capsys)
    proc, url = start_server(home, "server", "--workers", "2")
    try:
        made = [
            httpx.post(f"{url}/api/v1/runs", json={"experiment": "w"}, headers=auth(writer))
            for _ in range(6)
        ]
        assert all(r.status_code == 200 for r in made), [r.text for r in made]
        page = httpx.get(f"{url}/api/v1/runs", params={"experiment": "w"}, headers=auth(writer))
        assert page.json()["total"] == 6
        assert httpx.get(f"{url}/api/v1/runs").status_code == 401
    finally:
        stop(proc)
