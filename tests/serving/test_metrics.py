"""/metrics in Prometheus format, scraped by a real Prometheus server (Debian `prometheus`)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopml.serving.server import ServerThread
from tests import needs
from tests.servers import free_port
from tests.serving.conftest import Data, json_inputs


def test_metrics_exposition(server: ServerThread, data: Data) -> None:
    httpx.post(
        f"{server.url}/v2/models/delay/infer", json={"inputs": json_inputs(data.rows.head(2))}
    )
    httpx.post(f"{server.url}/v2/models/delay/infer", content=b"{")
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        'loopml_served_model_version{model="delay",ref="delay@champion",role="primary"} 1.0' in text
    )
    assert (
        'loopml_requests_total{code="200",endpoint="/v2/models/{name}/infer",protocol="http"}'
        in text
    )
    assert (
        'loopml_request_errors_total{code="400",endpoint="/v2/models/{name}/infer",protocol="http"}'
        in text
    )
    assert "loopml_request_latency_seconds_bucket" in text
    assert "loopml_batch_rows_bucket" in text
    assert 'loopml_predicted_rows_total{model="delay",role="primary",version="1"}' in text


@pytest.fixture
def prometheus(server: ServerThread, tmp_path: Path) -> Iterator[str]:
    binary = needs.program("prometheus", "Debian package prometheus")
    target = server.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: loopml\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def test_prometheus_scrapes_the_server(prometheus: str, server: ServerThread, data: Data) -> None:
    httpx.post(
        f"{server.url}/v2/models/delay/infer", json={"inputs": json_inputs(data.rows.head(1))}
    )
    deadline = time.monotonic() + 60
    result: list[dict[str, object]] = []
    while time.monotonic() < deadline and not result:
        try:
            r = httpx.get(
                f"{prometheus}/api/v1/query",
                params={"query": 'loopml_served_model_version{role="primary"}'},
            )
            if r.status_code == 200:
                result = r.json()["data"]["result"]
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    assert result, "Prometheus never scraped loopml's /metrics"
    assert result[0]["value"][1] == "1"  # type: ignore[index]
    up = httpx.get(f"{prometheus}/api/v1/query", params={"query": 'up{job="loopml"}'}).json()
    assert up["data"]["result"][0]["value"][1] == "1"
