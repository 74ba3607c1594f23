"""The log writer's per-file summaries: ingest merges them instead of re-reading inputs,
and the result is the window that summarising the rows gives.

The log is written by the server's own PredictionLog writer with real predictions on real
July flights (which drift from the January training data and leave its ranges), event
times on two days inside one file (a replay), and a shadow answer that must not count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import update

from loopml.monitor import Monitor, WindowReport
from loopml.monitor.logs import LOG_KIND, records
from loopml.monitor.reference import References
from loopml.monitor.segments import _read
from loopml.monitor.summary import DAY, SUMMARY_PROPERTY, summarise_file
from loopml.registry.model_registry import Registry
from loopml.serving.model_source import Prediction
from loopml.serving.prediction_log import LogRecord, PredictionLog
from loopml.store.metadata.tables import (
    artifacts,
    monitor_results,
    monitor_segments,
    monitor_sources,
)
from loopml.store.workspace import Workspace
from tests.monitoring.conftest import make_workspace

DAY0 = 1_700_006_400.0  # a UTC day boundary
DEPLOYMENT = "delay-summaries"


def _write(ws: Workspace, rows: pl.DataFrame, *, summaries: bool, model: str = "delay") -> None:
    """20-row requests answered within one hour, half with event times on the day before."""
    loaded = Registry(ws).load("delay:1")
    log = PredictionLog(ws, DEPLOYMENT, summaries=summaries)
    for n, i in enumerate(range(0, rows.height, 20)):
        inputs = loaded.signature.prepare(rows.slice(i, 20).select(loaded.signature.columns))
        pred = Prediction(loaded.predict(inputs), loaded.predict_proba(inputs))
        answered = DAY0 + 3_600 + i
        event = answered - DAY if n % 2 else None
        for role in ("primary", "shadow") if n == 0 else ("primary",):
            log.append(LogRecord(f"q{i}", answered, model, 1, role, 2.0 + n, inputs, pred, event))
    log.flush()


def _forget(ws: Workspace) -> None:
    with ws.write_engine.begin() as conn:
        conn.execute(monitor_results.delete())
        conn.execute(monitor_segments.delete())
        conn.execute(monitor_sources.delete())


def _set_summary(ws: Workspace, record_id: str, digest: str | None) -> None:
    record = next(r for r in records(ws, LOG_KIND) if r.id == record_id)
    props = {k: v for k, v in (record.properties or {}).items() if k != SUMMARY_PROPERTY}
    if digest is not None:
        props[SUMMARY_PROPERTY] = digest
    with ws.write_engine.begin() as conn:
        conn.execute(update(artifacts).where(artifacts.c.id == record_id).values(properties=props))


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory, flights: pl.DataFrame
) -> Iterator[tuple[Workspace, WindowReport]]:
    ws, _, _ = make_workspace(tmp_path_factory.mktemp("summaries"), flights)
    _write(ws, flights.filter(pl.col("month") == 7).sample(400, seed=11), summaries=True)
    (record,) = records(ws, LOG_KIND)
    assert isinstance((record.properties or {}).get(SUMMARY_PROPERTY), str)
    yield ws, Monitor(ws).check(DEPLOYMENT)
    ws.close()


def _same_window(a: WindowReport, b: WindowReport) -> None:
    assert a.rows == b.rows
    assert a.drift is not None and b.drift is not None
    assert a.drift.drifted_columns == b.drift.drifted_columns
    for x, y in zip(a.drift.columns, b.drift.columns, strict=True):
        assert x.column == y.column
        assert math.isclose(x.statistic, y.statistic, rel_tol=1e-9, abs_tol=1e-12)
    assert a.quality is not None and b.quality is not None
    counts = {(q.kind, q.column): q.count for q in a.quality.anomalies}
    assert counts == {(q.kind, q.column): q.count for q in b.quality.anomalies}
    assert a.latency_ms == b.latency_ms
    assert a.estimated_performance == b.estimated_performance


def test_the_stored_summaries_give_the_window_the_rows_give(
    logged: tuple[Workspace, WindowReport],
) -> None:
    ws, fast = logged
    assert fast.rows == 400  # the shadow answer is not traffic
    assert fast.drift is not None and "temp" in fast.drift.drifted_columns
    assert fast.quality is not None
    assert any(q.kind == "out_of_range" for q in fast.quality.anomalies)
    # Two days (event times) from one file: two segments, each summarised apart.
    assert [round(r.rows) for r in Monitor(ws).history(DEPLOYMENT, "1d")] == [200, 200]
    (record,) = records(ws, LOG_KIND)
    rows, parts = _read(ws, References(ws), record)
    assert "inputs" not in rows.columns  # the inputs were not read
    assert sorted(k[2] for k in parts) == [DAY0 - DAY, DAY0]
    # The same file summarised from its rows, as a file without a summary is.
    digest = (record.properties or {})[SUMMARY_PROPERTY]
    _set_summary(ws, record.id, None)
    try:
        _forget(ws)
        (stripped,) = records(ws, LOG_KIND)
        rows, _ = _read(ws, References(ws), stripped)
        assert "inputs" in rows.columns
        _same_window(fast, Monitor(ws).check(DEPLOYMENT))
    finally:
        _set_summary(ws, record.id, digest)
        _forget(ws)


@pytest.mark.parametrize("damage", ["not json", "another format", "other schema", "short"])
def test_a_summary_that_does_not_fit_is_not_used(
    logged: tuple[Workspace, WindowReport], damage: str
) -> None:
    ws, fast = logged
    (record,) = records(ws, LOG_KIND)
    digest = (record.properties or {})[SUMMARY_PROPERTY]
    refs = References(ws)
    frame = pl.read_parquet(ws.artifacts.get_bytes(record.digest, what="log"))
    raw = {
        "not json": b"\x00{",
        "another format": b'{"format": "loopml.monitor_file_summary/99", "parts": []}',
        # Anomalies counted without the training schema: not what this monitor counts.
        "other schema": summarise_file(frame, lambda m, v: None),
        # Summarises only part of the rows the file holds.
        "short": summarise_file(frame.head(100), lambda m, v: refs.get(m, v).schema),
    }[damage]
    _set_summary(ws, record.id, ws.artifacts.put_bytes(raw).digest)
    try:
        _forget(ws)
        (damaged,) = records(ws, LOG_KIND)
        rows, _ = _read(ws, refs, damaged)
        assert "inputs" in rows.columns  # summarised from its rows instead
        _same_window(fast, Monitor(ws).check(DEPLOYMENT))
    finally:
        _set_summary(ws, record.id, digest)
        _forget(ws)


def test_a_file_the_writer_cannot_summarise_is_still_written(
    tmp_path: Path, flights: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    ws, _, _ = make_workspace(tmp_path, flights)
    loaded = Registry(ws).load("delay:1")
    rows = flights.filter(pl.col("month") == 1).head(40)
    inputs = loaded.signature.prepare(rows.select(loaded.signature.columns))
    pred = Prediction(loaded.predict(inputs), loaded.predict_proba(inputs))
    log = PredictionLog(ws, DEPLOYMENT)
    with caplog.at_level("INFO", logger="loopml.serving"):
        for hour in range(2):  # two flushes, two files
            # No such registered model: no training schema to count anomalies against.
            log.append(LogRecord(f"g{hour}", DAY0 + 3_600 * hour, "ghost", 1, "primary", 1.0,
                                 inputs, pred))  # fmt: skip
            log.flush()
    files = records(ws, LOG_KIND)
    assert [(r.properties or {})["rows"] for r in files] == [40, 40]
    assert all(SUMMARY_PROPERTY not in (r.properties or {}) for r in files)
    said = [r for r in caplog.records if "without summaries" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "INFO"  # once per version, not per write
    ws.close()
