"""SIGTERM under load: in-flight requests finish, and every answered request is logged.

With two workers, and SIGKILL in strict durability mode: tests/serving/test_reliability.py."""

from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from loopml.serving.log_reader import read_predictions
from loopml.serving.options import ServeOptions
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import Data, json_inputs, start_server_process, stop_process


@dataclass
class LoadResult:
    answered: list[str] = field(default_factory=list)  # ids of 200 answers
    other_status: list[int] = field(default_factory=list)  # answered, but not 200 (503)
    refused: int = 0  # connection refused: never accepted, the client can retry
    unanswered: list[str] = field(default_factory=list)  # accepted, then no answer
    # A fresh connection reset before any answer: one the kernel queued in the listen
    # backlog and the server never accepted. Both the single process and the supervisor
    # of --workers N stop new handshakes and drain their backlog, so there are none.
    reset_fresh: list[str] = field(default_factory=list)


def _load(
    url: str, rows_body: dict[str, object], result: LoadResult, stop: threading.Event, reuse: bool
) -> None:
    """Requests in a loop, on a keep-alive connection (``reuse``) or a new one each time."""
    with httpx.Client(base_url=url, timeout=30) as pooled:
        while not stop.is_set():
            try:
                if reuse:
                    r = pooled.post("/v2/models/delay/infer", json=rows_body)
                else:
                    r = httpx.post(f"{url}/v2/models/delay/infer", json=rows_body, timeout=30)
            except httpx.ConnectError:
                result.refused += 1
                time.sleep(0.01)
                continue
            except httpx.ReadError as exc:
                (result.unanswered if reuse else result.reset_fresh).append(repr(exc))
                continue
            except httpx.HTTPError as exc:
                result.unanswered.append(repr(exc))
                continue
            if r.status_code == 200:
                result.answered.append(r.json()["id"])
            else:
                result.other_status.append(r.status_code)


def _sigterm_under_load(ws: Workspace, tmp_path: Path, data: Data, *args: str) -> None:
    server = start_server_process(ws, tmp_path, *args, "--name", "sigterm")
    result = LoadResult()
    stop = threading.Event()
    body = {"inputs": json_inputs(data.rows.head(4))}
    threads = [
        threading.Thread(target=_load, args=(server.url, body, result, stop, i % 2 == 0))
        for i in range(8)
    ]
    try:
        if "--workers" in args:
            _check_metrics_cover_all_workers(server.url, body)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(result.answered) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) == 0, server.output()
    finally:
        stop.set()
        for t in threads:
            t.join()
        stop_process(server)
    # Every connection the server accepted got an answer; the rest were refused outright.
    assert not result.unanswered, (
        f"{len(result.unanswered)} requests unanswered: {result.unanswered[:3]}"
    )
    assert not result.reset_fresh, result.reset_fresh[:3]
    assert set(result.other_status) <= {503}, result.other_status
    log = read_predictions(ws, "sigterm")
    assert log is not None
    logged = set(log.column("request_id").to_pylist())
    missing = set(result.answered) - logged
    assert not missing, (
        f"{len(missing)} of {len(result.answered)} answered requests are not in the log"
    )
    assert log.num_rows == 4 * len(logged)


def _check_metrics_cover_all_workers(url: str, body: dict[str, object]) -> None:
    # A new connection per request: the supervisor hands them to the workers in turn.
    for _ in range(20):
        assert httpx.post(f"{url}/v2/models/delay/infer", json=body).status_code == 200
    for _ in range(6):  # each scrape lands on either worker; each must report the total
        text = httpx.get(f"{url}/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("loopml_predicted_rows_total"))
        assert float(line.split()[-1]) == 80.0, line


def test_sigterm_drains_and_flushes(fresh_ws: Workspace, tmp_path: Path, data: Data) -> None:
    _sigterm_under_load(fresh_ws, tmp_path, data)


@pytest.mark.slow
def test_two_workers_serve_an_even_share_of_connections(
    fresh_ws: Workspace, tmp_path: Path, data: Data
) -> None:
    server = start_server_process(fresh_ws, tmp_path, "--workers", "2")
    body = {"inputs": json_inputs(data.rows.head(2))}
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(8)]
    try:
        for client in clients:  # each opens one keep-alive connection
            assert client.post("/v2/models/delay/infer", json=body).status_code == 200
        port = int(server.url.rsplit(":", 1)[1])
        per_process = {
            child.pid: sum(
                1
                for c in child.net_connections("tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
            )
            for child in psutil.Process(server.proc.pid).children()
        }
        # The supervisor hands connections out in turn: 4 and 4, never 6 and 2.
        assert sorted(n for n in per_process.values() if n) == [4, 4], per_process
        for client in clients:  # and every connection is still served
            assert client.post("/v2/models/delay/infer", json=body).status_code == 200
    finally:
        for client in clients:
            client.close()
        stop_process(server)


@pytest.mark.slow
def test_workers_shut_down_when_the_supervisor_is_killed(
    fresh_ws: Workspace, tmp_path: Path
) -> None:
    server = start_server_process(fresh_ws, tmp_path, "--workers", "2")
    try:
        workers = [
            p
            for p in psutil.Process(server.proc.pid).children()
            if "resource_tracker" not in " ".join(p.cmdline())
        ]
        assert len(workers) == 2
        server.proc.kill()  # SIGKILL: no chance to forward anything
        server.proc.wait(30)
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, f"workers left running without their supervisor: {alive}"
    finally:
        stop_process(server)


def test_connections_queued_in_the_listen_backlog_are_answered_at_shutdown(
    shared_ws: Workspace, data: Data
) -> None:
    """Connections the kernel has queued but the server not yet accepted, at the moment
    it stops: each is answered, none reset. The server's own accepting is paused, so the
    queue is certain to hold them when the stop comes."""
    server = ServerThread(shared_ws, ServeOptions("delay@champion", port=0))
    ports = server.start()
    loop = server._loop
    assert loop is not None and server._stop is not None
    listening = next(
        c.fd
        for c in psutil.Process().net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == ports.http
    )
    paused = threading.Event()

    def pause_accepting() -> None:
        loop.remove_reader(listening)
        paused.set()

    loop.call_soon_threadsafe(pause_accepting)
    assert paused.wait(30)
    body = orjson.dumps({"inputs": json_inputs(data.rows.head(2))})
    request = (
        b"POST /v2/models/delay/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    queued = [socket.create_connection(("127.0.0.1", ports.http), timeout=60) for _ in range(10)]
    try:
        for s in queued:
            s.sendall(request)
        loop.call_soon_threadsafe(server._stop.set)
        answers = []
        for s in queued:
            chunks = []
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    chunks.append(b"<reset>")
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            answers.append(b"".join(chunks))
    finally:
        for s in queued:
            s.close()
        server.stop()
    statuses = [a.split(b"\r\n", 1)[0] for a in answers]
    assert statuses == [b"HTTP/1.1 200 OK"] * len(queued), statuses
