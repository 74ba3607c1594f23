"""Replaying flights through the real inference server, by their own time.

Each request carries the scheduled departure hour of its flights as its event time, so
monitoring and the loop place the traffic in 2013, not in the minute the demo ran. Labels
are sent later, as ground truth arrives in production: after the month is over.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl

from loopml.core.errors import LoopmlError
from loopml.demo.flights import FEATURES, TARGET
from loopml.retraining.traffic import Traffic

EVENT_TIME = "event_time"
_DATATYPES = {
    "Int64": "INT64",
    "Int32": "INT32",
    "Int8": "INT8",
    "Float64": "FP64",
    "String": "BYTES",
}
_SERVED = re.compile(r"loopml_served_model_version\{([^}]*)\} ([0-9.]+)")
DEADLINE = 120.0


def with_event_time(flights: pl.DataFrame) -> pl.DataFrame:
    """Add ``event_time`` (epoch seconds of the scheduled departure hour, UTC)."""
    return flights.with_columns(
        pl.datetime(2013, pl.col("month"), pl.col("day"), pl.col("hour"), time_zone="UTC")
        .dt.epoch("s")
        .cast(pl.Float64)
        .alias(EVENT_TIME)
    )


def month_start(month: int) -> float:
    """Epoch seconds of the first instant of ``month`` in 2013 (13 is January 2014)."""
    year, month = (2014, 1) if month == 13 else (2013, month)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Request:
    request_id: str
    event_time: float
    rows: pl.DataFrame


class Replayer:
    """A plain HTTP client (one keep-alive connection per thread) for one server."""

    def __init__(self, host: str, port: int, model: str, concurrency: int = 4) -> None:
        self.host, self.port, self.model = host, port, model
        self.concurrency = concurrency
        self.local = threading.local()
        self.sent = 0

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return conn

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        try:
            response = self._send(method, path, body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closes keep-alive connections left idle (while the loop retrains);
            # such a request was never read, so it is sent again on a new connection.
            self.local.conn = None
            response = self._send(method, path, body)
        data = response.read()
        if response.status != 200:
            raise LoopmlError(f"the server answered {response.status}: {data[:300]!r}")
        return data

    def _send(self, method: str, path: str, body: bytes | None) -> http.client.HTTPResponse:
        conn = self._conn()
        conn.request(method, path, body, {"Content-Type": "application/json"})
        return conn.getresponse()

    def requests(self, month: pl.DataFrame, prefix: str, rows: int = 100) -> list[Request]:
        """The month's flights as requests: one per departure hour (split at ``rows``)."""
        out: list[Request] = []
        for (event_time,), group in month.sort(EVENT_TIME).group_by(
            EVENT_TIME, maintain_order=True
        ):
            for start in range(0, group.height, rows):
                out.append(
                    Request(f"{prefix}-{len(out)}", float(event_time), group.slice(start, rows))
                )
        return out

    def infer(self, batch: list[Request]) -> list[dict[str, Any]]:
        path = f"/v2/models/{self.model}/infer"

        def send(r: Request) -> dict[str, Any]:
            body = {
                "id": r.request_id,
                "parameters": {EVENT_TIME: r.event_time},
                "inputs": [
                    {
                        "name": c,
                        "shape": [r.rows.height],
                        "datatype": _DATATYPES[str(r.rows[c].dtype)],
                        "data": r.rows[c].to_list(),
                    }
                    for c in FEATURES
                ],
            }
            answer: dict[str, Any] = orjson.loads(self._call("POST", path, orjson.dumps(body)))
            return answer

        with ThreadPoolExecutor(self.concurrency) as pool:
            answers = list(pool.map(send, batch))
        self.sent += sum(r.rows.height for r in batch)
        return answers

    def send_labels(self, batch: list[Request]) -> None:
        labels = [
            {"request_id": r.request_id, "row": i, "label": int(v)}
            for r in batch
            for i, v in enumerate(r.rows[TARGET].to_list())
        ]
        for start in range(0, len(labels), 50_000):
            body = orjson.dumps({"labels": labels[start : start + 50_000]})
            self._call("POST", "/v2/feedback", body)

    def served_versions(self) -> dict[str, int]:
        """role -> version the server answers with now, from its /metrics."""
        text = self._call("GET", "/metrics").decode()
        out = {}
        for labels, value in _SERVED.findall(text):
            role = re.search(r'role="([^"]*)"', labels)
            model = re.search(r'model="([^"]*)"', labels)
            if role and model and model.group(1) == self.model:
                out[role.group(1)] = int(float(value))
        return out

    def wait_serving(self, wanted: dict[str, int]) -> None:
        """Until the server answers with ``wanted`` (role -> version): the hot switch."""
        deadline = time.monotonic() + DEADLINE
        while True:
            served = self.served_versions()
            if all(served.get(role) == v for role, v in wanted.items()):
                return
            if time.monotonic() > deadline:
                raise LoopmlError(f"the server did not switch to {wanted} in time: {served}")
            time.sleep(0.05)


def wait_logged(traffic: Traffic, rows: int) -> None:
    """Until the prediction log holds ``rows`` answered rows (it is written every second)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        traffic.refresh()
        if traffic.predictions.height >= rows:
            return
        if time.monotonic() > deadline:
            raise LoopmlError("the server did not write its prediction log in time")
        time.sleep(0.1)
