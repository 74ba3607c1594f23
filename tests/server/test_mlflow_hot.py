"""MLflow's hot endpoints (server/mlflow/hot.py) answer as the FastAPI routes did: the
token is checked before the body is read, errors keep MLflow's shape, other methods and
paths fall through to the app, and every write is audited with its token's name."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from loopml.server import errors, tokens
from loopml.server.app import create_app
from loopml.server.mlflow.hot import Endpoints, HotPaths
from loopml.server.mlflow.protocol import MAX_BODY
from loopml.server.state import ServerState
from loopml.store.metadata.tables import api_writes
from loopml.store.workspace import Workspace
from tests.server.conftest import start_server, stop

P = "/api/2.0/mlflow"


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(f"sqlite:///{tmp_path / 'db.sqlite'}", str(tmp_path / "artifacts"))
    yield ws
    ws.close()


def test_without_tokens_the_hot_paths_answer_mlflow_shapes(ws: Workspace) -> None:
    with TestClient(create_app(ws), raise_server_exceptions=False) as c:
        run_id = c.post(f"{P}/runs/create", json={}).json()["run"]["info"]["run_id"]
        ok = c.post(f"{P}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 2})
        assert ok.status_code == 200 and ok.json() == {}
        assert ok.headers["content-type"] == "application/json"
        # Repeated query parameters: the last one counts, as FastAPI read them.
        got = c.get(f"{P}/runs/get?run_id=nope&run_id={run_id}")
        assert got.status_code == 200 and got.json()["run"]["info"]["run_id"] == run_id
        assert got.json()["run"]["data"]["metrics"][0]["value"] == 2
        assert c.head(f"{P}/runs/get", params={"run_id": run_id}).status_code == 200
        cases = [
            (c.get(f"{P}/runs/get"), 400, "INVALID_PARAMETER_VALUE", "run_id"),
            (c.get(f"{P}/runs/get", params={"run_id": "x"}), 404, "RESOURCE_DOES_NOT_EXIST", "x"),
            (
                c.post(f"{P}/runs/log-metric", content=b"{nope"),
                400,
                "INVALID_PARAMETER_VALUE",
                "JSON",
            ),
            (
                c.post(f"{P}/runs/log-metric", content=b"[1]"),
                400,
                "INVALID_PARAMETER_VALUE",
                "object",
            ),
            (
                c.post(f"{P}/experiments/create", json={"name": 5}),
                400,
                "INVALID_PARAMETER_VALUE",
                "name",
            ),
            # Another method on a hot path falls through to the app, as before.
            (c.get(f"{P}/runs/log-metric"), 501, "NOT_IMPLEMENTED", "GET"),
            (c.put(f"{P}/runs/create", json={}), 501, "NOT_IMPLEMENTED", "PUT"),
        ]
        for response, status, code, word in cases:
            assert response.status_code == status, response.text
            assert response.json()["error_code"] == code and word in response.json()["message"]


def test_the_token_comes_first_and_every_write_names_it(ws: Workspace) -> None:
    writer = tokens.create(ws, "ci", "write")
    reader = tokens.create(ws, "dash", "read")
    app = create_app(ws)
    with TestClient(app, raise_server_exceptions=False) as c:
        # No token: refused before the (malformed) body is looked at.
        bad = c.post(f"{P}/runs/log-metric", content=b"{nope")
        assert bad.status_code == 401 and bad.json()["error_code"] == "UNAUTHENTICATED"
        assert c.get(f"{P}/experiments/get-by-name?experiment_name=x").status_code == 401
        read = {"Authorization": f"Bearer {reader}"}
        assert (
            c.get(f"{P}/experiments/get", params={"experiment_id": "0"}, headers=read).status_code
            == 200
        )
        refused = c.post(f"{P}/runs/create", json={}, headers=read)
        assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED"
        write = {"Authorization": f"Bearer {writer}"}
        made = c.post(f"{P}/runs/create", json={}, headers=write)
        assert made.status_code == 200
        run = made.json()["run"]["info"]
        assert {"key": "mlflow.runName", "value": run["run_name"]} in made.json()["run"]["data"][
            "tags"
        ]
        tokens.revoke(ws, "ci")  # by another hand: refused from the next request on
        late = c.post(
            f"{P}/runs/log-metric",
            json={"run_id": run["run_id"], "key": "m", "value": 1},
            headers=write,
        )
        assert late.status_code == 401 and "revoked" in late.json()["message"]
    # The app has stopped: every write is in the audit, refused ones too.
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(api_writes.c.token_name, api_writes.c.path, api_writes.c.status).order_by(
                api_writes.c.id
            )
        ).all()
    assert [(n, p.rsplit("/", 1)[-1], s) for n, p, s in rows] == [
        (None, "log-metric", 401),
        ("dash", "create", 403),
        ("ci", "create", 200),
        (None, "log-metric", 401),
    ]


def test_a_held_write_lock_defers_the_write_and_the_server_goes_on(tmp_path: Path) -> None:
    """A log-metric is first tried on the event loop without waiting; while another process
    holds SQLite's write lock it waits on a worker thread instead, the server keeps
    answering, and the point is written once the lock is free: not lost, not doubled."""
    home = tmp_path / "home"
    proc, url = start_server(home, "server")
    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            run_id = c.post(f"{P}/runs/create", json={}).json()["run"]["info"]["run_id"]
            point = {"run_id": run_id, "key": "loss", "value": 1.0, "step": 0}
            first = c.post(f"{P}/runs/log-metric", json=point)
            assert first.status_code == 200 and first.json() == {}
            # loopml server's own protocol: no "server" header naming the software.
            assert "server" not in first.headers and "date" in first.headers
            other = sqlite3.connect(home / "loopml.db", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            with ThreadPoolExecutor(1) as pool:
                try:
                    pending = pool.submit(
                        c.post, f"{P}/runs/log-metric", json={**point, "value": 2.0, "step": 1}
                    )
                    # Answered while the write waits: the event loop is not stuck behind it.
                    got = c.get(f"{P}/runs/get", params={"run_id": run_id})
                    assert got.status_code == 200 and not pending.done()
                    assert got.json()["run"]["data"]["metrics"][0]["value"] == 1.0
                finally:
                    other.execute("COMMIT")
                    other.close()
                assert pending.result(timeout=120).status_code == 200
            history = c.get(
                f"{P}/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}
            ).json()["metrics"]
            assert sorted((m["step"], m["value"]) for m in history) == [(0, 1.0), (1, 2.0)]
    finally:
        stop(proc)


def test_a_bug_in_a_hot_handler_is_an_mlflow_shaped_500_and_is_audited(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    endpoints = Endpoints()

    @endpoints.post("/runs/broken")
    def broken(s: ServerState, data: dict[str, object], request: object) -> dict[str, object]:
        raise RuntimeError("a bug")

    app = create_app(ws)
    audit = app.state.loopml.audit
    app.hot = HotPaths(partial(FastAPI.__call__, app), endpoints, errors.respond, audit)
    with TestClient(app, raise_server_exceptions=False) as c:
        answer = c.post(f"{P}/runs/broken", json={})
        assert answer.status_code == 500
        assert answer.json()["error_code"] == "INTERNAL_ERROR"
        assert "runs/broken" in answer.json()["message"]
        too_big = c.post(f"{P}/runs/broken", content=b" " * (MAX_BODY + 1))
        assert too_big.status_code == 400 and "over" in too_big.json()["message"]
    assert "a bug" in caplog.text
    audit.flush()
    with ws.engine.connect() as conn:
        statuses = conn.execute(select(api_writes.c.status).order_by(api_writes.c.id)).all()
    assert [s for (s,) in statuses] == [500, 400]


def test_bodies_are_read_as_pythons_json_reads_them(ws: Workspace) -> None:
    """orjson reads the bodies first; what it refuses and Python's json accepts (NaN) is
    read by json; out-of-range numbers are a 400 naming the field and the value."""
    with TestClient(create_app(ws), raise_server_exceptions=False) as c:
        run_id = c.post(f"{P}/runs/create", json={}).json()["run"]["info"]["run_id"]
        head = f'{{"run_id": "{run_id}", "key": "m", '
        nan = c.post(f"{P}/runs/log-metric", content=(head + '"value": NaN}').encode())
        assert nan.status_code == 400 and "finite" in nan.json()["message"]
        huge = c.post(
            f"{P}/runs/log-metric",
            content=(head + '"value": 1, "step": 9223372036854775808}').encode(),
        )
        assert huge.status_code == 400 and "64 bits" in huge.json()["message"]
        huger = c.post(
            f"{P}/runs/log-metric",
            content=(head + '"value": 1, "step": 99999999999999999999}').encode(),
        )
        assert huger.status_code == 400 and "'step'" in huger.json()["message"]
        assert "1e+20" in huger.json()["message"]
        # proto3 JSON, as MLflow's client sends it: 64-bit integers as strings.
        proto = head + '"value": 1.5, "step": "3", "timestamp": "1700000000000"}'
        assert c.post(f"{P}/runs/log-metric", content=proto.encode()).status_code == 200
        history = c.get(
            f"{P}/metrics/get-history", params={"run_id": run_id, "metric_key": "m"}
        ).json()["metrics"]
    assert [(m["step"], m["value"], m["timestamp"]) for m in history] == [(3, 1.5, 1700000000000)]
