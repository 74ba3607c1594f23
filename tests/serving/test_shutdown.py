"""SIGTERM under load: in-flight requests finish, and every answered request is logged."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from loopml.serving.log_reader import read_predictions
from loopml.store.workspace import Workspace
from tests.serving.conftest import Data, json_inputs, start_server_process, stop_process


def _load(
    url: str, rows_body: dict[str, object], answered: list[str], stop: threading.Event
) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            try:
                r = http.post("/v2/models/delay/infer", json=rows_body)
            except httpx.HTTPError:
                time.sleep(0.01)  # refused after shutdown began: not answered, not logged
                continue
            if r.status_code == 200:
                answered.append(r.json()["id"])


def _sigterm_under_load(ws: Workspace, tmp_path: Path, data: Data, *args: str) -> None:
    server = start_server_process(ws, tmp_path, *args, "--name", "sigterm")
    answered: list[str] = []
    stop = threading.Event()
    body = {"inputs": json_inputs(data.rows.head(4))}
    threads = [
        threading.Thread(target=_load, args=(server.url, body, answered, stop)) for _ in range(6)
    ]
    try:
        if "--workers" in args:
            _check_metrics_cover_all_workers(server.url, body)
        for t in threads:
            t.start()
        while len(answered) < 200:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) == 0, server.output()
    finally:
        stop.set()
        for t in threads:
            t.join()
        stop_process(server)
    log = read_predictions(ws, "sigterm")
    assert log is not None
    logged = set(log.column("request_id").to_pylist())
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} of {len(answered)} answered requests are not in the log"
    assert log.num_rows == 4 * len(logged)


def _check_metrics_cover_all_workers(url: str, body: dict[str, object]) -> None:
    # A new connection per request: the kernel spreads them across the workers' sockets.
    for _ in range(20):
        assert httpx.post(f"{url}/v2/models/delay/infer", json=body).status_code == 200
    for _ in range(6):  # each scrape lands on either worker; each must report the total
        text = httpx.get(f"{url}/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("loopml_predicted_rows_total"))
        assert float(line.split()[-1]) == 80.0, line


def test_sigterm_drains_and_flushes(fresh_ws: Workspace, tmp_path: Path, data: Data) -> None:
    _sigterm_under_load(fresh_ws, tmp_path, data)


@pytest.mark.slow
def test_sigterm_with_two_workers(fresh_ws: Workspace, tmp_path: Path, data: Data) -> None:
    _sigterm_under_load(fresh_ws, tmp_path, data, "--workers", "2")
