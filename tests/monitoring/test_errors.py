"""Failed requests, sent to the real server, counted by ``check`` per status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from loopml.monitor import check, history
from loopml.monitor.logs import ERROR_KIND, records
from loopml.serving.options import ServeOptions
from loopml.serving.server import ServerThread
from tests.monitoring.conftest import flight_time, json_inputs, make_workspace

DEPLOYMENT = "delay-errors"


def _send(http: httpx.Client, path: str, body: Any) -> int:
    r = http.post(path, json=body, timeout=60)
    assert r.status_code < 500 or r.status_code == 503, r.text
    return r.status_code


def _with_text(inputs: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    return [{**i, "data": ["warm"] * len(i["data"])} if i["name"] == column else i for i in inputs]


def test_check_counts_the_requests_answered_with_an_error(
    tmp_path: Path, flights: pl.DataFrame
) -> None:
    ws, _, _ = make_workspace(tmp_path, flights)
    jan = flights.filter(pl.col("month") == 1).sample(60, seed=5).sort("day", "hour")
    good = [jan.slice(i, 20) for i in range(0, 60, 20)]
    t0 = flight_time(good[0].row(0, named=True))
    params = {"event_time": t0}
    path = "/v2/models/delay/infer"
    bad: list[tuple[str, Any]] = [
        # a column missing from the signature's inputs
        (path, {"inputs": json_inputs(good[0])[1:], "parameters": params}),
        # text where the model needs a number
        (path, {"inputs": _with_text(json_inputs(good[0]), "temp"), "parameters": params}),
        # a version that does not exist
        (
            "/v2/models/delay/versions/99/infer",
            {"inputs": json_inputs(good[0]), "parameters": params},
        ),
        # a model that is not served, with a name longer than any the store keeps
        (
            "/v2/models/" + "x" * 300 + "/infer",
            {"inputs": json_inputs(good[0]), "parameters": params},
        ),
        # a version that is no number ('²' is a digit to str.isdigit, not to int)
        (
            "/v2/models/delay/versions/%C2%B2/infer",
            {"inputs": json_inputs(good[0]), "parameters": params},
        ),
    ]
    options = ServeOptions("delay@champion", port=0, deployment=DEPLOYMENT, log_flush_interval=0.2)
    statuses: dict[str, int] = {}
    with ServerThread(ws, options) as server, httpx.Client(base_url=server.url) as http:
        for chunk in good:
            body = {"inputs": json_inputs(chunk), "parameters": params}
            assert _send(http, path, body) == 200
        for url, body in bad:
            status = _send(http, url, body)
            assert 400 <= status < 500
            statuses[str(status)] = statuses.get(str(status), 0) + 1
    assert sum(statuses.values()) == len(bad) and "422" in statuses
    files = records(ws, ERROR_KIND)
    assert files and sum(int(f.properties["rows"]) for f in files) == len(bad)

    w = check(ws, DEPLOYMENT)
    assert w.rows == 60
    assert w.errors == dict(sorted(statuses.items()))
    assert w.error_rate == pytest.approx(len(bad) / (60 + len(bad)))
    by_model = check(ws, "delay")  # errors that named the model count for it too
    assert sum(by_model.errors.values()) == len(bad) - 1  # all but the unknown model's
    # The stored window is stale once more errors arrive: the next check counts them.
    with ServerThread(ws, options) as server, httpx.Client(base_url=server.url) as http:
        assert _send(http, *bad[0]) == 422
    again = check(ws, DEPLOYMENT)
    assert again.errors["422"] == statuses["422"] + 1 and again.rows == 60
    h = history(ws, DEPLOYMENT)
    assert h["rows"].sum() == 60 and h["errors"].sum() == sum(again.errors.values())
    ws.close()
