"""``loopml gc``: retention, compaction and unreferenced blobs, on real stores and writers."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from sqlalchemy import func, insert, select

from loopml.cli.app import main
from loopml.core.errors import InvalidInputError
from loopml.data.catalog import Catalog
from loopml.serving import feedback, prediction_log
from loopml.serving.feedback import Label, store_labels
from loopml.serving.log_reader import read_feedback, read_predictions
from loopml.serving.model_source import Prediction
from loopml.serving.prediction_log import LogRecord, PredictionLog
from loopml.store import gc
from loopml.store.gc import DAY, Retention, collect, referenced_digests
from loopml.store.metadata.tables import artifacts, pipeline_cache
from loopml.store.workspace import Workspace

HOUR = 3600.0


def _record(
    i: int, when: float, version: int = 3, model: tuple[str, str] | None = None
) -> LogRecord:
    inputs = pa.table({"x": pa.array([float(i), None if i % 3 == 0 else 1.0])})
    labels = np.array([i % 2, 1])
    proba = np.column_stack([1 - labels * 0.75, labels * 0.75])
    return LogRecord(
        f"req-{i}",
        when,
        "m",
        version,
        "primary",
        1.5,
        inputs,
        Prediction(labels, proba),
        event_time=when - 5 if i % 2 else None,
        model_digest="" if model is None else model[0],
        model_artifact_id=None if model is None else model[1],
    )


def _log_rows(ws: Workspace) -> list[tuple[str, int, str]]:
    with ws.engine.connect() as conn:
        rows = conn.execute(select(artifacts).where(artifacts.c.kind == "prediction_log")).all()
    return sorted((r.properties["partition"], r.properties["version"], r.digest) for r in rows)


def _old(ws: Workspace, digest: str, age: float) -> None:
    """Make a blob look written ``age`` seconds ago."""
    path = ws.artifacts.path_of(digest)
    t = time.time() - age
    os.utime(path, (t, t))


def test_serving_kinds_are_the_ones_gc_knows() -> None:
    assert gc.PREDICTION_LOG_KIND == prediction_log.LOG_KIND
    assert prediction_log.LOG_FORMAT in gc.PREDICTION_LOG_FORMATS
    assert gc.LOGGING_EXECUTION == prediction_log.LOGGING_EXECUTION
    assert gc.FEEDBACK_KIND == feedback.FEEDBACK_KIND


def test_compaction_retention_and_orphans(workspace: Workspace) -> None:
    ws = workspace
    now = time.time()
    past_hour = (now // HOUR - 3) * HOUR  # an hour that ended well before the grace period
    model_blob = ws.artifacts.put_bytes(b"model bytes")
    model = ws.lineage.add_artifact(model_blob.digest, "model", model_blob.size, name="m:3")
    log = PredictionLog(ws, "d", flush_interval=60)
    for batch in range(3):  # three flushes of one past hour: three small files, and a
        for i in range(batch * 4, batch * 4 + 4):  # file for another model version
            log.append(_record(i, past_hour + 60 * i, model=(model.digest, model.id)))
        log.append(_record(100 + batch, past_hour + 30, version=4))
        log.flush()
    log.append(_record(50, now))  # the current hour is left alone
    log.flush()
    before = read_predictions(ws, "d")
    assert before is not None and len(_log_rows(ws)) == 7

    dataset = Catalog(ws).add("flights", pl.DataFrame({"a": [1, 2, 3]}))
    orphan = ws.artifacts.put_bytes(b"written by an add that failed")
    young = ws.artifacts.put_bytes(b"being written right now")
    _old(ws, orphan.digest, 2 * HOUR)
    current = time.strftime("%Y-%m-%dT%H", time.gmtime(now))
    for partition, _, digest in _log_rows(ws):
        if partition != current:  # the files of the past hour were written long ago
            _old(ws, digest, 2 * HOUR)
    blobs_before = {d for d, _, _ in ws.artifacts.iter_blobs()}

    dry = collect(ws, dry_run=True)
    assert _log_rows(ws) and {d for d, _, _ in ws.artifacts.iter_blobs()} == blobs_before
    report = collect(ws)
    assert report.problems == ()
    for what in ("prediction log files compacted", "unreferenced blobs removed"):
        assert dry.line(what).count == report.line(what).count, what
    assert report.line("prediction log files compacted").count == 6  # 3 + 3 into 2
    assert report.line("unreferenced blobs removed").count == 7  # 6 old files + the orphan
    assert report.freed_bytes > 0

    rows = _log_rows(ws)
    assert len(rows) == 3
    after = read_predictions(ws, "d")
    assert after is not None and after.num_rows == before.num_rows
    # Same rows, same schema: compaction only regroups files.
    assert after.schema == before.schema
    key = ["request_id", "row"]
    assert after.sort_by([(k, "ascending") for k in key]).equals(
        before.sort_by([(k, "ascending") for k in key])
    )
    # The compacted file still traces back to the model that answered.
    with ws.engine.connect() as conn:
        v3 = conn.execute(
            select(artifacts.c.id).where(
                artifacts.c.kind == "prediction_log", artifacts.c.digest == rows[0][2]
            )
        ).scalar_one()
    assert model.id in ws.lineage.graph(v3, "upstream").artifacts
    assert not ws.artifacts.exists(orphan.digest)
    assert ws.artifacts.exists(young.digest)  # inside the grace period
    assert dataset.to_polars()["a"].to_list() == [1, 2, 3]  # referenced: untouched
    assert collect(ws).line("prediction log files compacted").count == 0  # idempotent

    # Retention: everything is "old" two months from now; the dataset stays.
    store_labels(ws, "d", [Label("req-1", 0, 1)])
    later = now + 61 * DAY
    pinned_log = _log_rows(ws)[0][2]
    run = ws.lineage.add_execution("monitor", name="check")
    with ws.engine.connect() as conn:
        pinned_id = conn.execute(
            select(artifacts.c.id).where(artifacts.c.digest == pinned_log)
        ).scalar_one()
    ws.lineage.link(run.id, pinned_id, "input", "log")  # a lineage edge keeps it
    expired = collect(ws, Retention(feedback_days=60), now=later)
    assert expired.line("prediction logs expired").count == 2
    assert expired.line("feedback expired").count == 1
    assert [r[2] for r in _log_rows(ws)] == [pinned_log]
    assert read_feedback(ws, "d") is None
    assert ws.artifacts.exists(pinned_log)
    assert dataset.to_polars()["a"].to_list() == [1, 2, 3]
    for digest in referenced_digests(ws):
        assert ws.artifacts.exists(digest)


def test_pipeline_cache_entries_unused_expire(workspace: Workspace) -> None:
    ws = workspace
    execution = ws.lineage.add_execution("run", name="step", status="finished")
    blob = ws.artifacts.put_bytes(b'{"x": 1}')
    art = ws.lineage.add_artifact(blob.digest, "json", blob.size, name="out")
    ws.lineage.link(execution.id, art.id, "output", "out")
    now = time.time()
    with ws.write_engine.begin() as conn:
        for key, age in (("old", 40 * DAY), ("fresh", 1 * DAY)):
            conn.execute(
                insert(pipeline_cache).values(
                    key=key,
                    step="m:step",
                    code_version="c",
                    output_kind="json",
                    output_digest=blob.digest,
                    output_artifact_id=art.id,
                    execution_id=execution.id,
                    created_at=now - age,
                )
            )
    report = collect(ws, Retention(cache_unused_days=30))
    assert report.line("pipeline cache entries expired").count == 1
    with ws.engine.connect() as conn:
        assert [r.key for r in conn.execute(select(pipeline_cache.c.key))] == ["fresh"]
    # The output stays: the run that produced it still links it.
    _old(ws, blob.digest, 2 * HOUR)
    collect(ws, Retention(cache_unused_days=0))
    assert ws.artifacts.get_bytes(blob.digest) == b'{"x": 1}'


def test_gc_under_concurrent_writes_loses_no_referenced_blob(any_workspace: Workspace) -> None:
    """Writers add datasets, log runs' artifacts and reuse content that gc sees as old and
    unreferenced, while gc runs again and again: every referenced blob survives."""
    ws = any_workspace
    url = ws.engine.url.render_as_string(hide_password=False)
    root = os.fspath(ws.artifacts.root)
    n_items = 12
    payloads = [f"artifact {i}".encode() * 50 for i in range(n_items)]
    tables = [pl.DataFrame({"i": list(range(i, i + 50))}) for i in range(n_items)]
    # Blobs left by earlier failed writes, long unreferenced: exactly what gc removes,
    # and what the writers below store again and then reference.
    for p in payloads:
        _old(ws, ws.artifacts.put_bytes(p).digest, 3 * HOUR)
    stop = threading.Event()
    runs = {"gc": 0}

    def writer(kind: str) -> None:
        own = Workspace(url, root)
        try:
            for i in range(n_items):
                if kind == "datasets":
                    Catalog(own).add(f"d{i % 3}", tables[i])
                else:
                    blob = own.artifacts.put_bytes(payloads[i])
                    execution = own.lineage.add_execution("run", name=f"r{i}", status="finished")
                    art = own.lineage.add_artifact(blob.digest, "file", blob.size, name=f"f{i}")
                    own.lineage.link(execution.id, art.id, "output", "file")
        finally:
            own.close()

    def collector() -> None:
        own = Workspace(url, root)
        deadline = time.monotonic() + 300
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                collect(own, Retention(grace_seconds=60))
                runs["gc"] += 1
        finally:
            own.close()

    with ThreadPoolExecutor(4) as pool:
        collecting = [pool.submit(collector), pool.submit(collector)]
        writing = [pool.submit(writer, "datasets"), pool.submit(writer, "blobs")]
        for f in writing:
            f.result(timeout=600)
        stop.set()
        for f in collecting:
            f.result(timeout=600)
    assert runs["gc"] >= 2
    collect(ws, Retention(grace_seconds=60))
    referenced = referenced_digests(ws)
    missing = [d for d in referenced if not ws.artifacts.exists(d)]
    assert missing == []
    for p in payloads:  # every reused payload is referenced and readable
        with ws.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(artifacts)).scalar_one() > 0
        assert ws.artifacts.get_bytes(ws.artifacts.put_bytes(p).digest) == p
    for i in range(3):
        for version in Catalog(ws).versions(f"d{i}"):
            assert version.verify() > 0


def test_bad_retention_is_refused_and_the_cli_reports(
    loopml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidInputError, match="grace period must be at least 60"):
        Retention(grace_seconds=1)
    with pytest.raises(InvalidInputError, match="feedback_days"):
        Retention(feedback_days=-1)
    assert main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "unreferenced blobs removed" in out
    assert main(["gc", "--grace-minutes", "0"]) == 2
    assert main(["gc", "--logs-days", "7", "--no-compact"]) == 0


@pytest.mark.s3
def test_gc_on_an_object_store(tmp_path: Path, s3_artifacts: tuple[str, dict[str, object]]) -> None:
    """On S3 (moto) blobs carry the store's LastModified; gc reads it the same way."""
    url, options = s3_artifacts
    ws = Workspace(f"sqlite:///{tmp_path / 'loopml.db'}", url, storage_options=options)
    try:
        ds = Catalog(ws).add("flights", pl.DataFrame({"a": [1, 2, 3]}))
        orphan = ws.artifacts.put_bytes(b"left behind")
        assert all(modified is not None for _, _, modified in ws.artifacts.iter_blobs())
        assert collect(ws).line("unreferenced blobs removed").count == 0  # all still young
        report = collect(ws, now=time.time() + 2 * HOUR)
        assert report.line("unreferenced blobs removed").count == 1
        assert not ws.artifacts.exists(orphan.digest)
        assert ds.to_polars()["a"].to_list() == [1, 2, 3]
        # Storing it again brings it back.
        assert ws.artifacts.get_bytes(ws.artifacts.put_bytes(b"left behind").digest)
    finally:
        ws.close()
