"""The team server's HTTP protocol answers a small tracking write as it is parsed
(server/answer_at_once.py): byte for byte what the ASGI path answers, in order behind and
before pipelined requests, and every request it declines (an error, a body still on its
way, a token that does not allow it) is answered by the ASGI path as before.

A real uvicorn server with the team app, in this process so that the protocol's count of
requests answered at once can be read, on a loopback port, spoken to over raw sockets
(an HTTP client library would hide how the request's bytes are split)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from loopml.server import tokens
from loopml.server.answer_at_once import TeamServerProtocol
from loopml.server.app import TeamServerApp, create_app
from loopml.server.run import answering_at_once
from loopml.store.metadata.tables import api_writes
from loopml.store.workspace import Workspace
from tests.servers import read_answers, uvicorn_in_thread

P = "/api/2.0/mlflow"


@dataclass
class Live:
    url: str
    port: int
    app: TeamServerApp
    ws: Workspace

    def run_id(self, headers: dict[str, str] | None = None) -> str:
        answer = httpx.post(f"{self.url}{P}/runs/create", json={}, headers=headers)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["run"]["info"]["run_id"])

    def history(self, run_id: str, key: str = "loss") -> list[tuple[int, float]]:
        answer = httpx.get(
            f"{self.url}{P}/metrics/get-history", params={"run_id": run_id, "metric_key": key}
        )
        assert answer.status_code == 200, answer.text
        return sorted((m["step"], m["value"]) for m in answer.json()["metrics"])


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    ws = Workspace(f"sqlite:///{tmp_path / 'loopml.db'}", str(tmp_path / "artifacts"))
    app = answering_at_once(create_app(ws))
    # Audit rows are written when a test flushes them, never by the background thread: its
    # write would hold the lock that a write answered at once must not wait for, and
    # which requests were answered at once would depend on timing.
    app.state.loopml.audit.interval = 3600.0
    try:
        with uvicorn_in_thread(app, http=TeamServerProtocol, server_header=False) as port:
            yield Live(f"http://127.0.0.1:{port}", port, app, ws)
    finally:
        TeamServerProtocol.at_once = None
        app.state.loopml.close()
        ws.close()


def request(path: str, body: dict[str, object], *extra: str, version: str = "1.1") -> bytes:
    data = json.dumps(body).encode()
    head = [
        f"POST {P}{path} HTTP/{version}",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def without_date(head: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]


def chunked(path: str, body: dict[str, object]) -> bytes:
    """The request with its body in chunked encoding: of no declared length, so never held
    to be answered at once; it goes the ASGI way."""
    data = json.dumps(body).encode()
    head = f"POST {P}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return (
        head.encode()
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(data)
        + data
        + b"\r\n0\r\n\r\n"
    )


def test_a_write_answered_at_once_is_the_answer_the_asgi_path_gives(live: Live) -> None:
    run_id = live.run_id()
    point = {"run_id": run_id, "key": "loss", "value": 1.5, "step": 0}
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        before = TeamServerProtocol.answered_at_once
        sock.sendall(request("/runs/log-metric", point))
        ((at_once_head, at_once_body),) = read_answers(sock, 1)
        assert TeamServerProtocol.answered_at_once == before + 1
        sock.sendall(chunked("/runs/log-metric", {**point, "value": 2.5, "step": 1}))
        ((asgi_head, asgi_body),) = read_answers(sock, 1)
        assert TeamServerProtocol.answered_at_once == before + 1
    assert at_once_body == asgi_body == b"{}"
    assert without_date(at_once_head) == without_date(asgi_head)
    assert at_once_head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"date: " in at_once_head and b"server:" not in at_once_head.lower()
    assert live.history(run_id) == [(0, 1.5), (1, 2.5)]


def test_a_body_that_arrives_after_its_headers_is_waited_for(live: Live) -> None:
    """As urllib3 (MLflow's client) sends a request: the headers, then the body in a write
    of its own. Here the body comes a moment later, in two pieces."""
    run_id = live.run_id()
    whole = request("/runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1.5})
    cut = whole.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        before = TeamServerProtocol.answered_at_once
        for piece in (whole[:cut], whole[cut : cut + 10], whole[cut + 10 :]):
            sock.sendall(piece)
            time.sleep(0.2)
        ((head, body),) = read_answers(sock, 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"{}"
    assert TeamServerProtocol.answered_at_once == before + 1
    assert live.history(run_id) == [(0, 1.5)]


def test_a_client_that_leaves_mid_body_changes_nothing(live: Live) -> None:
    run_id = live.run_id()
    whole = request("/runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1.5})
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        sock.sendall(whole[:-5])
        time.sleep(0.2)
    # The server goes on: the next request on a new connection is answered.
    ok = httpx.post(
        f"{live.url}{P}/runs/log-metric", json={"run_id": run_id, "key": "loss", "value": 2}
    )
    assert ok.status_code == 200
    assert live.history(run_id) == [(0, 2)]


def test_pipelined_requests_are_answered_in_order(live: Live) -> None:
    """Writes ahead of a read are answered at once; what arrives behind a request that
    went the ASGI way waits its turn in uvicorn's queue and goes the same way."""
    run_id = live.run_id()
    batch = {"run_id": run_id, "metrics": [{"key": "loss", "value": 2.0, "step": 1}]}
    get = f"GET {P}/runs/get?run_id={run_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        before = TeamServerProtocol.answered_at_once
        sock.sendall(
            request("/runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1.0})
            + request("/runs/log-batch", batch)
            + get
            + request("/runs/log-metric", {"run_id": "no-such-run", "key": "loss", "value": 1})
            + request("/runs/log-metric", {"run_id": run_id, "key": "loss", "value": 4, "step": 3})
        )
        answers = read_answers(sock, 5)
    statuses = [head.split(b"\r\n", 1)[0] for head, _ in answers]
    assert statuses == [b"HTTP/1.1 200 OK"] * 3 + [b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK"]
    # The read came after both writes and before the last.
    assert json.loads(answers[2][1])["run"]["data"]["metrics"][0]["value"] == 2.0
    assert json.loads(answers[3][1])["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert TeamServerProtocol.answered_at_once == before + 2
    assert live.history(run_id) == [(0, 1.0), (1, 2.0), (3, 4)]


def test_a_request_in_error_is_answered_by_the_asgi_path_and_changes_nothing(
    live: Live,
) -> None:
    run_id = live.run_id()
    cases = [
        (b"{nope", 400, "JSON"),
        (json.dumps({"run_id": run_id, "key": "loss", "value": "x"}).encode(), 400, "'x'"),
        (json.dumps({"run_id": run_id, "key": "", "value": 1}).encode(), 400, "name"),
        (json.dumps({"run_id": run_id, "key": "loss", "value": 1e400}).encode(), 400, "loss"),
        (json.dumps({"run_id": "nope", "key": "loss", "value": 1}).encode(), 404, "nope"),
    ]
    before = TeamServerProtocol.answered_at_once
    for body, status, said in cases:
        answer = httpx.post(f"{live.url}{P}/runs/log-metric", content=body)
        assert answer.status_code == status, (body, answer.text)
        assert said in answer.json()["message"], answer.text
    httpx.post(f"{live.url}{P}/runs/update", json={"run_id": run_id, "status": "FINISHED"})
    ended = httpx.post(
        f"{live.url}{P}/runs/log-metric", json={"run_id": run_id, "key": "loss", "value": 1}
    )
    assert ended.status_code == 409 and "finished" in ended.json()["message"]
    assert TeamServerProtocol.answered_at_once == before
    assert live.history(run_id) == []


def test_tokens_are_checked_and_the_audit_names_who_wrote(live: Live) -> None:
    writer = tokens.create(live.ws, "trainer", "write")
    reader = tokens.create(live.ws, "viewer", "read")
    run_id = live.run_id({"Authorization": f"Bearer {writer}"})
    point = {"run_id": run_id, "key": "loss", "value": 1.0}
    before = TeamServerProtocol.answered_at_once
    url = f"{live.url}{P}/runs/log-metric"
    assert httpx.post(url, json=point).status_code == 401
    assert httpx.post(url, json=point, headers={"Authorization": "Bearer nope"}).status_code == 401
    refused = httpx.post(url, json=point, headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403 and "viewer" in refused.json()["message"]
    assert TeamServerProtocol.answered_at_once == before
    ok = httpx.post(url, json=point, headers={"Authorization": f"Bearer {writer}"})
    assert ok.status_code == 200 and ok.json() == {}
    assert TeamServerProtocol.answered_at_once == before + 1
    live.app.state.loopml.audit.flush()
    with live.ws.engine.connect() as conn:
        rows = conn.execute(
            select(api_writes.c.token_name, api_writes.c.status)
            .where(api_writes.c.path == f"{P}/runs/log-metric")
            .order_by(api_writes.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [(None, 401), (None, 401), ("viewer", 403), ("trainer", 200)]


@pytest.mark.parametrize(
    ("extra", "version"), [(("Connection: close",), "1.1"), ((), "1.0")], ids=["close", "http1.0"]
)
def test_a_connection_that_is_not_kept_alive_is_closed_after_the_answer(
    live: Live, extra: tuple[str, ...], version: str
) -> None:
    run_id = live.run_id()
    before = TeamServerProtocol.answered_at_once
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        point = {"run_id": run_id, "key": "loss", "value": 1.0}
        sock.sendall(request("/runs/log-metric", point, *extra, version=version))
        ((head, body),) = read_answers(sock, 1)
        assert sock.recv(1) == b"", "the connection stayed open"
    assert body == b"{}" and b"connection: close" in head.lower()
    assert TeamServerProtocol.answered_at_once == before + 1
    assert live.history(run_id) == [(0, 1.0)]


def test_a_body_too_large_to_answer_at_once_is_still_written(live: Live) -> None:
    run_id = live.run_id()
    metrics = [{"key": "loss", "value": float(i), "step": i} for i in range(1000)]
    before = TeamServerProtocol.answered_at_once
    url = f"{live.url}{P}/runs/log-batch"
    answer = httpx.post(url, json={"run_id": run_id, "metrics": metrics})
    assert answer.status_code == 200 and answer.json() == {}
    assert TeamServerProtocol.answered_at_once == before
    assert live.history(run_id) == [(i, float(i)) for i in range(1000)]


def test_the_access_log_line_is_the_one_the_asgi_path_writes(live: Live) -> None:
    run_id = live.run_id()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
            before = TeamServerProtocol.answered_at_once
            point = {"run_id": run_id, "key": "loss", "value": 1.0}
            sock.sendall(request("/runs/log-metric", point))
            read_answers(sock, 1)
            sock.sendall(chunked("/runs/log-metric", {**point, "step": 1}))
            read_answers(sock, 1)
            assert TeamServerProtocol.answered_at_once == before + 1
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    at_once, asgi = (r.getMessage() for r in records)
    assert at_once == asgi
    assert f'"POST {P}/runs/log-metric HTTP/1.1" 200' in at_once
