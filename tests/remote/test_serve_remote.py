"""``loopml serve NAME@alias`` with ``LOOPML_URI``: the model comes from a team server, is
answered over REST (httpx) and gRPC (tritonclient) exactly as the model predicts locally,
follows an alias moved on the server, and keeps its prediction log in ``--log-dir``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
import tritonclient.grpc as grpcclient
from sklearn.linear_model import LogisticRegression

from loopml.monitor.logs import read_predictions
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote
from loopml.server import tokens
from loopml.store.workspace import Workspace
from tests.remote.conftest import CLIENT_VARS, start_loopml_server
from tests.server.conftest import stop
from tests.servers import free_port

pytestmark = pytest.mark.slow

MODEL = "remote-delay"
COLUMNS = ("x", "z")


@dataclass
class Remote:
    url: str
    tokens: dict[str, str]
    db_url: str
    artifacts: str

    def workspace(self) -> Workspace:
        return Workspace(self.db_url, self.artifacts)


def rows(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(size=n)
    return pl.DataFrame({"x": x, "z": z, "y": (x + 0.3 * z > 0).astype(np.int64)})


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """A server whose registry holds two versions that answer differently; v1 is champion."""
    base = tmp_path_factory.mktemp("serve-remote")
    db, artifacts = f"sqlite:///{base / 'loopml.db'}", str(base / "artifacts")
    ws = Workspace(db, artifacts)
    try:
        made = {n: tokens.create(ws, n, s) for n, s in (("ci", "write"), ("dash", "read"))}
        train = rows(300, 0)
        X, y = train.select(COLUMNS), train["y"].to_numpy()
        registry = Registry(ws)
        registry.register(MODEL, LogisticRegression().fit(X.to_pandas(), y), X)
        # Version 2 predicts the opposite class: an answer shows which version gave it.
        registry.register(MODEL, LogisticRegression().fit(X.to_pandas(), 1 - y), X)
        promote(ws, MODEL, 1, "champion")
    finally:
        ws.close()
    proc, url = start_loopml_server(db, artifacts, base)
    try:
        yield Remote(url, made, db, artifacts)
    finally:
        stop(proc)


def client_env(remote: Remote, token: str | None = "dash") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    env.update(LOOPML_URI=remote.url, PYTHONUNBUFFERED="1")
    if token is not None:
        env["LOOPML_TOKEN"] = remote.tokens.get(token, token)
    return env


def local_predictions(remote: Remote, ref: str, df: pl.DataFrame) -> np.ndarray:
    ws = remote.workspace()
    try:
        return np.asarray(Registry(ws).load(ref).predict(df.select(COLUMNS).to_pandas()))
    finally:
        ws.close()


def oip_body(df: pl.DataFrame) -> dict[str, object]:
    return {
        "inputs": [
            {"name": c, "shape": [df.height], "datatype": "FP64", "data": df[c].to_list()}
            for c in COLUMNS
        ]
    }


def wait_ready(url: str, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"serve did not become ready:\n{log.read_text()}")


def test_serve_an_alias_of_a_remote_model_and_follow_its_moves(
    remote: Remote, tmp_path: Path
) -> None:
    port, grpc_port = free_port(), free_port()
    log_dir, out = tmp_path / "served-log", tmp_path / "serve.out"
    cmd = [
        sys.executable,
        "-m",
        "loopml.cli",
        "serve",
        f"{MODEL}@champion",
        "--port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        "--poll-interval",
        "0.5",
        "--log-dir",
        str(log_dir),
    ]
    with out.open("w") as sink:
        proc = subprocess.Popen(
            cmd, env=client_env(remote), cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, out)
        df = rows(40, 7)
        v1 = local_predictions(remote, f"{MODEL}:1", df)
        r = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=oip_body(df), timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == "1"
        (predict,) = [o for o in body["outputs"] if o["name"] == "predict"]
        np.testing.assert_array_equal(np.asarray(predict["data"]), v1)
        triton = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        inputs = []
        for c in COLUMNS:
            t = grpcclient.InferInput(c, [df.height], "FP64")
            t.set_data_from_numpy(df[c].to_numpy())
            inputs.append(t)
        answer = triton.infer(MODEL, inputs, request_id="grpc-remote-1")
        assert answer.get_response().model_version == "1"
        np.testing.assert_array_equal(answer.as_numpy("predict"), v1)

        # The alias moves on the server: the serving process follows it.
        ws = remote.workspace()
        try:
            promote(ws, MODEL, 2, "champion", reason="moved while serving")
        finally:
            ws.close()
        v2 = local_predictions(remote, f"{MODEL}:2", df)
        assert not np.array_equal(v1, v2)
        deadline = time.monotonic() + 60
        version = "1"
        while version != "2" and time.monotonic() < deadline:
            time.sleep(0.2)
            r = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=oip_body(df), timeout=60)
            version = r.json()["model_version"]
        assert version == "2", out.read_text()
        (predict,) = [o for o in r.json()["outputs"] if o["name"] == "predict"]
        np.testing.assert_array_equal(np.asarray(predict["data"]), v2)
        answer = triton.infer(MODEL, inputs, request_id="grpc-remote-2")
        np.testing.assert_array_equal(answer.as_numpy("predict"), v2)
        triton.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, out.read_text()
    assert "Traceback" not in out.read_text()
    # The prediction log is in --log-dir, a local workspace, with both versions' answers.
    ws = Workspace(f"sqlite:///{log_dir / 'loopml.db'}", str(log_dir / "artifacts"))
    try:
        logged = read_predictions(ws)
    finally:
        ws.close()
    assert logged is not None
    ids = set(logged.column("request_id").to_pylist())
    assert {"grpc-remote-1", "grpc-remote-2"} <= ids
    assert set(logged.column("model_version").to_pylist()) == {1, 2}


def test_workers_keep_serving_while_the_server_is_down(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each of --workers 2 reaches the server itself; losing it stops alias checks, not
    answers."""
    base = tmp_path_factory.mktemp("short-lived")
    db, artifacts = f"sqlite:///{base / 'loopml.db'}", str(base / "artifacts")
    ws = Workspace(db, artifacts)
    try:
        train = rows(100, 3)
        X = train.select(COLUMNS)
        Registry(ws).register(MODEL, LogisticRegression().fit(X.to_pandas(), train["y"]), X)
        promote(ws, MODEL, 1, "champion")
    finally:
        ws.close()
    server, url = start_loopml_server(db, artifacts, base)
    port, out = free_port(), tmp_path / "serve.out"
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    env.update(LOOPML_URI=url, XDG_CACHE_HOME=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "loopml.cli", "serve", f"{MODEL}@champion", "--port", str(port)]
    cmd += ["--workers", "2", "--poll-interval", "0.2"]
    try:
        with out.open("w") as sink:
            proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=sink, stderr=sink)
        serving = f"http://127.0.0.1:{port}"
        df = rows(10, 4)
        wait_ready(serving, proc, out)
    finally:
        stop(server)
    try:
        want = local_predictions(Remote(url, {}, db, artifacts), f"{MODEL}:1", df)
        # Several polls fail meanwhile; every request is still answered by version 1.
        for _ in range(20):
            r = httpx.post(f"{serving}/v2/models/{MODEL}/infer", json=oip_body(df), timeout=60)
            assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
            (predict,) = [o for o in r.json()["outputs"] if o["name"] == "predict"]
            np.testing.assert_array_equal(np.asarray(predict["data"]), want)
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, out.read_text()
    # The outage is one warning per worker, not a traceback at every poll.
    said = out.read_text()
    assert "Traceback" not in said and 1 <= said.count("cannot reach the loopml server") <= 2
    # The default log folder: one per server under the cache.
    host_port = url.removeprefix("http://").replace(":", "-")
    assert (tmp_path / "cache" / "loopml" / "serve" / host_port / "loopml.db").is_file()


def run_serve(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopml.cli", "serve", *args, "--port", str(free_port())],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("ref", "token", "extra", "code", "words"),
    [
        ("nobody@champion", "dash", (), 1, "no registered model"),
        (f"{MODEL}@nope", "dash", (), 1, "no alias 'nope'"),
        (f"{MODEL}:9", "dash", (), 1, "version 9"),
        ("bad name!", "dash", (), 2, "model reference"),
        (f"{MODEL}@champion", "not-a-token", (), 1, "refused"),
        (f"{MODEL}@champion", None, (), 1, "LOOPML_TOKEN"),
        (f"{MODEL}@champion", "dash", ("--canary", f"{MODEL}@champion"), 2, "share"),
    ],
)
def test_a_wrong_reference_or_token_is_a_clear_error(
    remote: Remote,
    tmp_path: Path,
    ref: str,
    token: str | None,
    extra: tuple[str, ...],
    code: int,
    words: str,
) -> None:
    log_dir = tmp_path / "log"
    done = run_serve(client_env(remote, token), tmp_path, ref, "--log-dir", str(log_dir), *extra)
    assert done.returncode == code, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not log_dir.exists()  # refused before anything was made


def test_an_unreachable_server_and_a_local_log_dir_are_clear_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS}
    gone = {**env, "LOOPML_URI": f"http://127.0.0.1:{free_port()}"}
    done = run_serve(gone, tmp_path, f"{MODEL}@champion", "--log-dir", str(tmp_path / "log"))
    assert done.returncode == 1 and "cannot reach the loopml server" in done.stderr
    assert "Traceback" not in done.stderr
    local = {**env, "LOOPML_HOME": str(tmp_path / "home")}
    done = run_serve(local, tmp_path, f"{MODEL}@champion", "--log-dir", str(tmp_path / "log"))
    assert done.returncode == 2 and "--log-dir is for remote mode" in done.stderr
    assert not (tmp_path / "home").exists()


def test_the_default_log_dir_is_one_folder_per_server_in_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from loopml.cli.serve_cmd import default_log_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert (
        default_log_dir("http://team.example:5000") == tmp_path / "loopml/serve/team.example-5000"
    )
    assert default_log_dir("https://team.example") == tmp_path / "loopml/serve/team.example-443"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_log_dir("http://[::1]:80") == tmp_path / "home/.cache/loopml/serve/__1-80"
