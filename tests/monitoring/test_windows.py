"""Windows over days: each log file read once, late labels recomputing only their windows.

The log is written by the server's own PredictionLog writer with answer times on three
past days (what a replay with event times produces), with the registered model's real
predictions on real flights.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from loopml.demo.flights import TARGET
from loopml.monitor import Monitor, check, history
from loopml.monitor.api import monitor_of
from loopml.monitor.logs import LOG_KIND, records
from loopml.monitor.segments import DAY
from loopml.registry.model_registry import Registry
from loopml.serving.feedback import Label, store_labels
from loopml.serving.model_source import Prediction
from loopml.serving.prediction_log import LogRecord, PredictionLog
from loopml.store.workspace import Workspace
from tests.monitoring.conftest import make_workspace

DAY0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC, a day boundary
DEPLOYMENT = "delay-days"


def write_day(ws: Workspace, rows: pl.DataFrame, day: int, prefix: str) -> dict[str, int]:
    """One request per 20 rows, answered at noon of ``day``; returns request id -> label."""
    model = Registry(ws).load("delay:1")
    log = PredictionLog(ws, DEPLOYMENT)
    labels: dict[str, int] = {}
    for i in range(0, rows.height, 20):
        chunk = rows.slice(i, 20)
        inputs = model.signature.prepare(chunk.select(model.signature.columns))
        pred = Prediction(model.predict(inputs), model.predict_proba(inputs))
        rid = f"{prefix}-{i}"
        log.append(
            LogRecord(rid, DAY0 + day * DAY + 43_200 + i, "delay", 1, "primary", 3.0, inputs, pred)
        )
        labels[rid] = int(chunk[TARGET][0])
    log.flush()
    return labels


@pytest.fixture(scope="module")
def days(
    tmp_path_factory: pytest.TempPathFactory, flights: pl.DataFrame
) -> Iterator[tuple[Workspace, list[dict[str, int]]]]:
    ws, _, _ = make_workspace(tmp_path_factory.mktemp("days"), flights)
    jan = flights.filter(pl.col("month") == 1).sample(600, seed=5)
    written = [write_day(ws, jan.slice(d * 200, 200), d, f"d{d}") for d in range(3)]
    yield ws, written
    ws.close()


def test_late_labels_recompute_only_the_windows_they_touch(
    days: tuple[Workspace, list[dict[str, int]]],
) -> None:
    ws, written = days
    monitor = monitor_of(ws)
    first = history(ws, "delay", window="1d")
    assert first.height == 3 and first["rows"].to_list() == [200, 200, 200]
    assert first["labelled_rows"].to_list() == [0, 0, 0]
    before = monitor.recomputed
    again = history(ws, "delay", window="1d")
    assert monitor.recomputed == before  # nothing new: every window read back
    assert again["result_id"].to_list() == first["result_id"].to_list()
    # Labels for day 1's requests arrive late.
    store_labels(ws, DEPLOYMENT, [Label(rid, 0, y) for rid, y in written[1].items()])
    after = history(ws, "delay", window="1d")
    assert monitor.recomputed == before + 1
    ids_before, ids_after = first["result_id"].to_list(), after["result_id"].to_list()
    assert ids_after[0] == ids_before[0] and ids_after[2] == ids_before[2]
    assert ids_after[1] != ids_before[1]
    assert after["labelled_rows"].to_list() == [0, len(written[1]), 0]
    assert "perf_accuracy" in after.columns


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_profiled_log_file_is_never_read_again(
    flights: pl.DataFrame, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    ws, _, _ = make_workspace(tmp_path, flights, url)
    jan = flights.filter(pl.col("month") == 1).sample(300, seed=6)
    write_day(ws, jan.head(100), 0, "a")
    assert check(ws, "delay").rows == 100
    # Remove every log file profiled so far: a re-read would fail with a missing blob.
    for record in records(ws, LOG_KIND):
        ws.artifacts.delete(record.digest)
    write_day(ws, jan.slice(100, 100), 1, "b")
    fresh = Monitor(ws)  # no in-process caches either
    w = fresh.check("delay")
    assert w.rows == 200
    assert [r.rows for r in fresh.history("delay", "1d")] == [100, 100]
    ws.close()
