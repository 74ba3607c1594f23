"""Where the conformance tests send the Python API: the stores themselves (local), or a
real ``loopml server`` subprocess on a free loopback port in front of them (remote), on
SQLite + a folder and on PostgreSQL + S3 (moto's server). The remote servers require a
token; the client holds the write token named ``ci``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loopml.server import tokens
from loopml.store.workspace import Workspace
from tests.server.conftest import stop, wait_ready
from tests.servers import free_port

CLIENT_VARS = ("LOOPML_URI", "LOOPML_TOKEN", "LOOPML_DB", "LOOPML_ARTIFACTS", "LOOPML_HOME")


@dataclass(frozen=True)
class Target:
    mode: str
    # What the client's environment holds (LOOPML_*), and the stores behind it.
    env: dict[str, str]
    db_url: str
    artifacts: str
    tokens: dict[str, str] = field(default_factory=dict)
    # A local folder for the artifact store of workspace() when the real one is a bucket.
    artifacts_dir: str = ""

    @property
    def remote(self) -> bool:
        return "LOOPML_URI" in self.env

    def workspace(self) -> Workspace:
        """The target's metadata, opened directly for assertions (an S3 bucket is left to
        the server: this process has no credentials for it)."""
        local = "://" not in self.artifacts
        return Workspace(self.db_url, self.artifacts if local else self.artifacts_dir)


def start_loopml_server(
    db_url: str, artifacts: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``loopml server`` over the given stores, its environment stripped of client vars."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    env.update(LOOPML_DB=db_url, LOOPML_ARTIFACTS=artifacts, **(extra_env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "server", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def fresh_database(postgres_server: str) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.replace("+psycopg", "") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


def fresh_bucket(endpoint: str) -> tuple[dict[str, str], str]:
    """A new bucket on moto's server, and the environment a server needs to reach it."""
    import boto3

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return env, f"s3://{bucket}/artifacts"


@pytest.fixture(
    scope="module",
    params=[
        "local",
        "remote",
        pytest.param("remote-postgres", marks=[pytest.mark.postgres, pytest.mark.s3]),
    ],
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    base = tmp_path_factory.mktemp(request.param)
    artifacts = str(base / "artifacts")
    s3_env: dict[str, str] = {}
    if request.param == "remote-postgres":
        db_url = fresh_database(request.getfixturevalue("postgres_server"))
        s3_env, artifacts = fresh_bucket(request.getfixturevalue("s3_server"))
    else:
        db_url = f"sqlite:///{base / 'loopml.db'}"
    if request.param == "local":
        yield Target(
            "local", {"LOOPML_DB": db_url, "LOOPML_ARTIFACTS": artifacts}, db_url, artifacts
        )
        return
    # Tokens live in the database only; this process needs no access to the bucket.
    ws = Workspace(db_url, str(base / "tokens-only"))
    try:
        made = {
            name: tokens.create(ws, name, scope)
            for name, scope in (("ci", "write"), ("dash", "read"), ("boss", "admin"))
        }
    finally:
        ws.close()
    proc, url = start_loopml_server(db_url, artifacts, base, s3_env)
    try:
        yield Target(
            request.param,
            {"LOOPML_URI": url, "LOOPML_TOKEN": made["ci"]},
            db_url,
            artifacts,
            made,
            artifacts_dir=str(base / "tokens-only"),
        )
    finally:
        stop(proc)


@pytest.fixture
def api(target: Target, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Target:
    """The fluent API (``import loopml as lm``) pointed at ``target`` for one test."""
    for var in CLIENT_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in target.env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)
    return target
