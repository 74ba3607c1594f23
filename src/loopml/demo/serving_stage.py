"""The demo's serving stage: serve the champion on a loopback port and replay March to
December through the real HTTP endpoint, month by month, printing throughput and latency.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from loopml.demo.flights import FEATURES, flights_with_weather
from loopml.serving.options import ServeOptions
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace

REPLAY_MONTHS = tuple(range(3, 13))
_DATATYPES = {
    "Int64": "INT64",
    "Int32": "INT32",
    "Int8": "INT8",
    "Float64": "FP64",
    "String": "BYTES",
}


@dataclass(frozen=True)
class MonthStats:
    month: int
    rows: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    delayed_rate: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class ServingStageResult:
    deployment: str
    model_version: str
    months: list[MonthStats] = field(default_factory=list)


def _body(chunk: pl.DataFrame) -> bytes:
    inputs = [
        {
            "name": c,
            "shape": [chunk.height],
            "datatype": _DATATYPES[str(chunk[c].dtype)],
            "data": chunk[c].to_list(),
        }
        for c in FEATURES
    ]
    return json.dumps({"inputs": inputs}).encode()


class _Client:
    """One keep-alive HTTP connection per thread: stdlib only, like any plain client."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.local = threading.local()

    def post(self, path: str, body: bytes) -> tuple[float, dict[str, Any]]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        started = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"the server answered {response.status}: {payload}")
        return time.perf_counter() - started, payload


def run_serving_stage(
    ws: Workspace,
    console: Console,
    ref: str = "delay-model@champion",
    *,
    flights: pl.DataFrame | None = None,
    months: Sequence[int] = REPLAY_MONTHS,
    rows_per_request: int = 100,
    concurrency: int = 8,
) -> ServingStageResult:
    """Serve ``ref`` on a free loopback port and replay ``months`` of flights through
    ``POST /v2/models/{name}/infer``; every prediction lands in the prediction log under the
    deployment name ``demo:<ref>``. ``flights`` is the joined table if already loaded."""
    data = flights if flights is not None else flights_with_weather(months)
    deployment = f"demo:{ref}"
    name = ref.split("@")[0].split(":")[0]
    options = ServeOptions(ref, port=0, deployment=deployment, max_batch_rows=1024)
    result = ServingStageResult(deployment, "?")
    console.rule(f"[bold]serving[/] {ref} over the Open Inference Protocol")
    with ServerThread(ws, options) as server:
        client = _Client(options.host, int(server.url.rsplit(":", 1)[1]))
        path = f"/v2/models/{name}/infer"
        table = Table(title=f"replaying flights through {server.url}{path}")
        for col in ("month", "rows", "requests", "rows/s", "p50 ms", "p99 ms", "predicted late"):
            table.add_column(col, justify="right")
        with ThreadPoolExecutor(concurrency) as pool:
            for month in months:
                frame = data.filter(pl.col("month") == month).select(FEATURES)
                bodies = [
                    _body(frame.slice(i, rows_per_request))
                    for i in range(0, frame.height, rows_per_request)
                ]
                started = time.perf_counter()
                answers = list(pool.map(lambda b: client.post(path, b), bodies))
                seconds = time.perf_counter() - started
                latencies = np.array([a[0] for a in answers]) * 1000
                predicted = np.concatenate([a[1]["outputs"][0]["data"] for a in answers])
                result.model_version = answers[0][1]["model_version"]
                stats = MonthStats(
                    month,
                    frame.height,
                    len(bodies),
                    seconds,
                    float(np.percentile(latencies, 50)),
                    float(np.percentile(latencies, 99)),
                    float(predicted.mean()),
                )
                result.months.append(stats)
                table.add_row(
                    str(month),
                    f"{stats.rows:,}",
                    f"{stats.requests:,}",
                    f"{stats.rows_per_second:,.0f}",
                    f"{stats.p50_ms:.1f}",
                    f"{stats.p99_ms:.1f}",
                    f"{stats.delayed_rate:.1%}",
                )
        console.print(table)
    total = sum(m.rows for m in result.months)
    console.print(
        f"served {total:,} predictions with {name} version {result.model_version}; every one "
        f"is in the prediction log (deployment {deployment!r})"
    )
    return result
