"""A workspace whose champion is a small real model, a real inference server in front of it,
and a client that replays flights through it and sends their labels late."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from loopml.data.catalog import Catalog
from loopml.demo.flights import FEATURES, TARGET
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote
from loopml.retraining.traffic import Traffic
from loopml.serving.options import CanarySpec, ServeOptions
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.retraining import flows

MODEL = "delay"
DEADLINE = 60.0


@pytest.fixture(scope="session")
def january() -> tuple[pl.DataFrame, Any]:
    """January's training rows and the model fitted on them (fitted once per session)."""
    train = (
        flows.flights()
        .filter(pl.col("month") == 1)
        .sample(flows.TRAIN_ROWS, seed=1)
        .select([*FEATURES, TARGET])
    )
    return train, flows.fit(train)


@pytest.fixture
def ws(tmp_path: Path, january: tuple[pl.DataFrame, Any]) -> Iterator[Workspace]:
    """delay:1 trained on January (champion and challenger), linked to its training data."""
    ws = Workspace(f"sqlite:///{tmp_path / 'loopml.db'}", str(tmp_path / "artifacts"))
    train, model = january
    ds = Catalog(ws).add("flights-jan", train)
    Registry(ws).register(
        MODEL, model, flows.features(train), dataset_artifact_ids=[ds.artifact_id]
    )
    promote(ws, MODEL, 1, "champion")
    promote(ws, MODEL, 1, "challenger")
    yield ws
    ws.close()


@pytest.fixture
def july() -> pl.DataFrame:
    return flows.flights().filter(pl.col("month") == 7).sample(4000, seed=3)


class Client:
    """Sends rows through the real server's OIP endpoint and their labels to /v2/feedback."""

    _ids = itertools.count()

    def __init__(self, server: ServerThread, ws: Workspace) -> None:
        self.server = server
        self.ws = ws
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.sent = 0

    def replay(
        self, rows: pl.DataFrame, per_request: int = 20, event_time: float | None = None
    ) -> list[dict]:
        """Send ``rows`` and then their labels; return the answers. Waits until the
        server's prediction log holds every answered row."""
        answers = []
        labels = []
        for start in range(0, rows.height, per_request):
            chunk = rows.slice(start, per_request)
            rid = f"req-{next(self._ids)}"
            body: dict[str, Any] = {
                "id": rid,
                "inputs": [
                    {
                        "name": c,
                        "shape": [chunk.height],
                        "datatype": _DATATYPES[str(chunk[c].dtype)],
                        "data": chunk[c].to_list(),
                    }
                    for c in FEATURES
                ],
            }
            if event_time is not None:
                body["parameters"] = {"event_time": event_time}
            response = self.http.post(f"/v2/models/{MODEL}/infer", json=body)
            assert response.status_code == 200, response.text
            answers.append(response.json())
            labels += [
                {"request_id": rid, "row": i, "label": int(v)}
                for i, v in enumerate(chunk[TARGET].to_list())
            ]
        self.sent += rows.height
        self.wait_logged()
        response = self.http.post("/v2/feedback", json={"labels": labels})
        assert response.status_code == 200, response.text
        return answers

    def wait_logged(self) -> None:
        traffic = Traffic(self.ws, MODEL)
        deadline = time.monotonic() + DEADLINE
        while True:
            traffic.refresh()
            if traffic.predictions.height >= self.sent:
                return
            assert time.monotonic() < deadline, "the prediction log was not written in time"
            time.sleep(0.05)

    def wait_serving(self, role: str, version: int) -> None:
        """Until the server's /metrics says ``role`` serves ``version`` (the hot switch)."""
        pattern = re.compile(
            r'loopml_served_model_version\{[^}]*role="' + role + r'"[^}]*\} ([0-9.]+)'
        )
        deadline = time.monotonic() + DEADLINE
        while True:
            match = pattern.search(self.http.get("/metrics").text)
            if match and float(match.group(1)) == version:
                return
            assert time.monotonic() < deadline, f"the server did not switch {role} to {version}"
            time.sleep(0.05)


_DATATYPES = {
    "Int64": "INT64",
    "Int32": "INT32",
    "Int8": "INT8",
    "Float64": "FP64",
    "String": "BYTES",
}


def serve(ws: Workspace, canary_percent: float | None = None) -> ServerThread:
    canary = None if canary_percent is None else CanarySpec(f"{MODEL}@challenger", canary_percent)
    options = ServeOptions(
        f"{MODEL}@champion",
        port=0,
        canary=canary,
        deployment="delay-test",
        poll_interval=0.1,
        log_flush_interval=0.1,
    )
    return ServerThread(ws, options)
