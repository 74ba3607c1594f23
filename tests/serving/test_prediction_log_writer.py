"""The prediction log's writer on its own: compaction, files, failed writes, shutdown."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from loopml.monitor.logs import LOG_KIND, records
from loopml.monitor.reference import References
from loopml.monitor.segments import _read
from loopml.monitor.summary import SUMMARY_PROPERTY
from loopml.registry.model_registry import Registry
from loopml.serving.log_reader import read_predictions
from loopml.serving.model_source import Prediction
from loopml.serving.prediction_log import STRICT_SUMMARY_MIN_ROWS, LogRecord, PredictionLog
from loopml.store.workspace import Workspace
from tests.serving.conftest import Data


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(f"sqlite:///{tmp_path / 'loopml.db'}", str(tmp_path / "artifacts"))


def record(i: int, x: list[float | None], when: float | None = None) -> LogRecord:
    inputs = pa.table({"x": pa.array(x), "name": pa.array([f"r{i}"] * len(x))})
    labels = np.arange(len(x)) % 2
    proba = np.column_stack([1 - labels * 0.75, labels * 0.75])
    return LogRecord(
        f"req-{i}",
        time.time() if when is None else when,
        "m",
        3,
        "primary",
        1.5,
        inputs,
        Prediction(labels, proba),
    )


def test_compacted_records_are_written_as_one_file_in_order(ws: Workspace) -> None:
    log = PredictionLog(ws, "d", flush_interval=60)
    for i in range(12):
        log.append(record(i, [float(i), float(i) + 0.5]))
        if i % 4 == 3:
            log.compact()
    assert log.pending_rows == 24
    assert log.flush() == 24
    assert log.pending_rows == 0 and log.written_files == 1
    table = read_predictions(ws, "d")
    assert table is not None
    assert table.column("request_id").to_pylist() == [f"req-{i // 2}" for i in range(24)]
    assert table.column("row").to_pylist() == [0, 1] * 12
    assert [v["x"] for v in table.column("inputs").to_pylist()] == [
        v for i in range(12) for v in (float(i), float(i) + 0.5)
    ]
    assert table.column("proba").to_pylist()[1] == [0.25, 0.75]


def test_a_column_null_in_one_compaction_takes_its_type_from_another(ws: Workspace) -> None:
    log = PredictionLog(ws, "d", flush_interval=60)
    log.append(record(0, [None, None]))
    log.compact()
    log.append(record(1, [2.5]))
    log.flush()
    table = read_predictions(ws, "d")
    assert table is not None
    assert table.schema.field("inputs").type.field("x").type == pa.float64()
    assert [v["x"] for v in table.column("inputs").to_pylist()] == [None, None, 2.5]


def test_one_file_per_hour_and_version(ws: Workspace) -> None:
    log = PredictionLog(ws, "d", flush_interval=60)
    log.append(record(0, [1.0], when=1_700_000_000.0))
    log.append(record(1, [2.0], when=1_700_000_000.0 + 3600))
    log.compact()
    log.append(record(2, [3.0], when=1_700_000_000.0 + 10))
    assert log.flush() == 3
    assert log.written_files == 2
    table = read_predictions(ws, "d")
    assert table is not None
    assert sorted(table.column("request_id").to_pylist()) == ["req-0", "req-1", "req-2"]


def test_a_failed_write_keeps_every_row_for_the_next_attempt(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PredictionLog(ws, "d", flush_interval=60)
    for i in range(3):
        log.append(record(i, [float(i)]))
    log.compact()
    log.append(record(3, [3.0]))

    def disk_full(data: bytes) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(ws.artifacts, "put_bytes", disk_full)
    with pytest.raises(OSError, match="no space"):
        log.flush()
    assert log.pending_rows == 4 and log.written_rows == 0
    monkeypatch.undo()
    assert log.flush() == 4
    table = read_predictions(ws, "d")
    assert table is not None
    assert table.column("request_id").to_pylist() == [f"req-{i}" for i in range(4)]


def test_the_background_thread_compacts_and_writes_and_close_loses_nothing(
    ws: Workspace,
) -> None:
    log = PredictionLog(ws, "d", flush_interval=0.3, compact_interval=0.02)
    log.start()
    for i in range(50):
        log.append(record(i, [float(i)]))
        time.sleep(0.01)
    deadline = time.monotonic() + 10
    while log.written_rows == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.written_rows > 0, "nothing was written while the server ran"
    log.close()
    assert log.pending_rows == 0 and log.written_rows == 50
    table = read_predictions(ws, "d")
    assert table is not None
    assert sorted(table.column("request_id").to_pylist(), key=lambda r: int(r[4:])) == [
        f"req-{i}" for i in range(50)
    ]


def test_strict_mode_leaves_small_files_to_the_monitor_to_summarise(
    fresh_ws: Workspace, data: Data
) -> None:
    """A strict group commit answers its requests only once written, so a small file is
    written without a summary; the monitor summarises its rows when it reads it, and a
    group as large as STRICT_SUMMARY_MIN_ROWS still gets one."""
    loaded = Registry(fresh_ws).load("delay:1")

    def request(i: int, n: int) -> LogRecord:
        rows = data.train.slice(i, n).select(loaded.signature.columns)
        inputs = loaded.signature.prepare(rows)
        pred = Prediction(loaded.predict(inputs), loaded.predict_proba(inputs))
        return LogRecord(f"s{i}", time.time(), "delay", 1, "primary", 1.0, inputs, pred)

    log = PredictionLog(fresh_ws, "strict-d", strict=True, flush_interval=60)
    log.append(request(0, 5))
    log.flush()
    half = STRICT_SUMMARY_MIN_ROWS // 2
    log.append(request(10, half))
    log.append(request(10 + half, STRICT_SUMMARY_MIN_ROWS - half))
    log.flush()
    small, large = records(fresh_ws, LOG_KIND)
    assert (small.properties["rows"], large.properties["rows"]) == (5, STRICT_SUMMARY_MIN_ROWS)
    assert SUMMARY_PROPERTY not in small.properties
    assert isinstance(large.properties[SUMMARY_PROPERTY], str)
    rows, parts = _read(fresh_ws, References(fresh_ws), small)
    assert rows.height == 5
    assert sum(s.rows for s in parts.values()) == 5
    # The non-strict writer summarises a file of any size, as before.
    fast = PredictionLog(fresh_ws, "fast-d", flush_interval=60)
    fast.append(request(0, 5))
    fast.flush()
    assert isinstance(records(fresh_ws, LOG_KIND)[-1].properties[SUMMARY_PROPERTY], str)
