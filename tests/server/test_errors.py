"""Errors at the HTTP edge: each through loopml's error table, JSON on the API, HTML on pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.server.app import create_app
from loopml.store.workspace import Workspace


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ws = Workspace(f"sqlite:///{tmp_path / 'l.db'}", str(tmp_path / "a"))
    with TestClient(create_app(ws), raise_server_exceptions=False) as c:
        yield c
    ws.close()


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        ("/api/v1/runs/nope", 404, "NotFoundError"),
        ("/api/v1/runs?limit=100000", 400, "InvalidInputError"),
        ("/api/v1/runs?filter=%F0%9F%98%80%20%3E%201", 400, "InvalidInputError"),
        ("/api/v1/datasets/a%20b", 400, "InvalidInputError"),
        ("/api/v1/datasets/x/versions/1.5", 400, "InvalidInputError"),
        ("/api/v1/models/m/versions/%EF%BC%91", 400, "InvalidInputError"),  # fullwidth 1
        ("/api/v1/lineage/x?max_depth=0", 400, "InvalidInputError"),
        ("/api/v1/artifacts/x/download?path=a", 404, "NotFoundError"),
        ("/api/v1/pipelines/runs?limit=-1", 400, "InvalidInputError"),
        ("/api/v1/nothing-here", 404, "NotFoundError"),
        ("/api/v1/runs?order_by=start_time&order_by=run_id", 400, "InvalidInputError"),
        ("/api/v1/runs?limit=5&limit=6", 400, "InvalidInputError"),
    ],
)
def test_api_errors_are_json_with_their_codes(
    client: TestClient, path: str, status: int, kind: str
) -> None:
    r = client.get(path)
    assert r.status_code == status, r.text
    assert r.json()["type"] == kind and r.json()["error"]


def test_a_list_parameter_may_repeat(client: TestClient) -> None:
    r = client.get("/api/v1/runs?experiment=a&experiment=b&limit=5")
    assert r.status_code == 200, r.text
    assert r.json()["limit"] == 5


def test_malformed_writes_are_400_and_lose_nothing(client: TestClient) -> None:
    assert client.post("/api/v1/runs", content=b"{not json").status_code == 400
    bad_param = client.post("/api/v1/runs", json={"experiment": "e", "params": {"": "1"}})
    assert bad_param.status_code == 400
    assert client.get("/api/v1/runs").json()["total"] == 0  # no half-made run
    run_id = client.post("/api/v1/runs", json={"experiment": "e"}).json()["id"]
    nan = client.post(
        f"/api/v1/runs/{run_id}/metrics",
        content=b'{"metrics": [{"key": "loss", "value": NaN, "step": 0}]}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 400
    huge_step = {"metrics": [{"key": "loss", "value": 1.0, "step": 2**70}]}
    assert client.post(f"/api/v1/runs/{run_id}/metrics", json=huge_step).status_code == 400
    ok = {"metrics": [{"key": "loss", "value": 0.5, "step": s} for s in range(3)]}
    assert client.post(f"/api/v1/runs/{run_id}/metrics", json=ok).status_code == 200
    assert client.post(f"/api/v1/runs/{run_id}/end", json={"status": "weird"}).status_code == 400
    assert client.post(f"/api/v1/runs/{run_id}/end", json={}).status_code == 200
    again = client.post(f"/api/v1/runs/{run_id}/metrics", json=ok)
    assert again.status_code == 409 and again.json()["type"] == "ConflictError"
    history = client.get(f"/api/v1/runs/{run_id}/metrics/history", params={"key": "loss"})
    assert history.json()["values"] == [0.5, 0.5, 0.5]


def test_405_lists_every_method_of_the_path(client: TestClient) -> None:
    r = client.put("/api/v1/runs")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"


def test_pages_answer_html_errors(client: TestClient) -> None:
    r = client.get("/runs/nope")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "no run with id" in r.text
    r = client.get("/datasets/x/abc")
    assert r.status_code == 400 and "positive whole number" in r.text
