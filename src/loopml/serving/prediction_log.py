"""Every answered prediction, appended asynchronously to Parquet in the artifact store.

Two durability modes (``loopml serve --log-durability``):

* ``fast`` (the default): request handlers only append an in-memory record (no I/O on the
  request path); a background thread writes them out every ``flush_interval`` seconds, or
  sooner when ``max_pending_rows`` pile up, and :meth:`PredictionLog.close` writes whatever
  is left, so a graceful shutdown (SIGTERM) loses nothing. A process killed outright
  (SIGKILL, out of memory, power) loses what was not yet written: up to
  ``flush_interval`` seconds of answered predictions.
* ``strict``: an answer is sent only once its record is written: the Parquet file is in
  the artifact store (fsynced when the store is a local folder) and its artifact row is
  committed. Writes are group commits: the records that arrive while one write runs
  form the next, so under load one write covers many requests. A killed process loses no
  answered prediction; every request pays the write's latency.

A failed write keeps its records and is retried (in strict mode, the requests waiting for
it are answered 503 meanwhile: their predictions were not made durable).

Format (``loopml.prediction_log/2``): each flush writes one Parquet file per (hour, model
version), stored as a content-addressed blob and recorded as an artifact of kind
``prediction_log`` whose properties say ``deployment``, ``model``, ``version``,
``model_digest`` (the model version's artifact digest), ``partition`` (UTC hour,
``YYYY-MM-DDTHH``), ``start``/``end`` (epoch seconds), ``rows``, ``requests`` and, where
the writer could make it, ``summary_digest``: the file's monitoring summary (profiles and
validation counts by model version and day, ``loopml.monitor.summary``), which the monitor
merges instead of re-reading the inputs (in strict mode only for files of at least
``STRICT_SUMMARY_MIN_ROWS`` rows). The same
transaction records a ``prediction_logging`` execution with the model version's artifact
as input (role ``model``) and the log file as output (role ``prediction_log``), so every
logged prediction traces back to the exact model bytes. One Parquet row per predicted row:

=============  ============================  ==========================================
column         type                          meaning
=============  ============================  ==========================================
request_id     string                        the id returned to the client
row            int32                         row index inside the request
timestamp      timestamp[us, UTC]            when the answer was ready
event_time     timestamp[us, UTC] (nullable) when the event happened, as the request
                                             said (null when it did not say)
model          string                        registered model name
model_version  int64                         version that answered
role           string                        primary, canary or shadow
latency_ms     float64                       request latency (queue + batch + model)
inputs         struct<signature columns>     the input row, conformed to the signature
prediction     the signature's output type   ``predict``
proba          list<float64> (nullable)      ``predict_proba``, in the model's class order
=============  ============================  ==========================================

Version 1 files lack ``event_time`` (and their artifacts the ``model_digest`` property and
the lineage edge); readers treat the column as all null.

Failed requests (a bad input, a model error, an overloaded or draining server) are not
in that log: each flush writes them, if any, to one more Parquet file per UTC hour,
recorded as an artifact of kind ``prediction_errors`` (properties ``deployment``,
``partition``, ``start``/``end``, ``rows``), one row per failed request: request_id,
timestamp, event_time, model and model_version (null where the request failed before a
model was chosen), status (the HTTP status the edges answer, from ``error_codes``),
error (the error's class name) and latency_ms. The monitor counts them by status.

Shadow rows carry the primary's request id, so both answers to a request can be joined.
Several worker processes each write their own files; request ids are unique across them.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.core.errors import LoopmlError, StoreError
from loopml.data.schema import Schema
from loopml.monitor.logs import ERROR_KIND as ERROR_KIND
from loopml.monitor.logs import LOG_KIND as LOG_KIND
from loopml.monitor.reference import References
from loopml.monitor.summary import SUMMARY_PROPERTY, summarise_file
from loopml.serving.model_source import Prediction
from loopml.store.workspace import Workspace

LOG_FORMAT = "loopml.prediction_log/2"
# Strict durability writes a file per group commit, and answers wait for it: summarising
# each small file (a fixed cost of several milliseconds with the GIL held) was 23% of the
# server's GIL time at the light-model bench and halved its requests/s. Such files are
# left to the monitor, which summarises the rows of a file without a summary itself (same
# result, read off the request path); a group large enough to pay for it gets one.
STRICT_SUMMARY_MIN_ROWS = 1_000
LOGGING_EXECUTION = "prediction_logging"
log = logging.getLogger("loopml.serving")


@dataclass(frozen=True)
class LogRecord:
    request_id: str
    time: float
    model: str
    version: int
    role: str
    latency_ms: float
    inputs: pa.Table
    prediction: Prediction
    # Epoch seconds the request gave as its event time; None when it gave none.
    event_time: float | None = None
    # The model version's artifact (digest and lineage id) that answered.
    model_digest: str = ""
    model_artifact_id: str | None = None

    @property
    def partition(self) -> str:
        return time.strftime("%Y-%m-%dT%H", time.gmtime(self.time))


@dataclass(frozen=True)
class ErrorRecord:
    """A request that got an error answer instead of a prediction."""

    request_id: str
    time: float
    status: int
    error: str
    latency_ms: float
    model: str | None = None
    version: int | None = None
    event_time: float | None = None


# (UTC hour, model, version, model digest, model artifact id): the records of one log file.
_FileKey = tuple[str, str, int, str, str | None]


class PredictionLog:
    """Buffer records in memory; compact and write them from a background thread.

    Turning records into Arrow holds the GIL, which request handling needs too; done for
    a whole file at once it stalls requests for tens of milliseconds. So the thread
    compacts what has arrived every ``compact_interval`` (a few milliseconds of work each
    time) and at flush time only joins the compacted tables and writes them, which Arrow
    does without the GIL."""

    def __init__(
        self,
        workspace: Workspace,
        deployment: str,
        *,
        flush_interval: float = 2.0,
        max_pending_rows: int = 50_000,
        compact_interval: float = 0.1,
        on_written: Callable[[int], None] | None = None,
        strict: bool = False,
        summaries: bool = True,
    ) -> None:
        self.workspace = workspace
        self.deployment = deployment
        self.flush_interval = flush_interval
        self.max_pending_rows = max_pending_rows
        self.compact_interval = min(compact_interval, flush_interval)
        self._on_written = on_written
        self._pending: list[LogRecord] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        # Owned by whoever holds _write_lock: compacted tables per file, oldest first.
        self._compacted: dict[_FileKey, list[pa.Table]] = defaultdict(list)
        self._compacted_rows = 0
        # Serialises writers: the background thread and a final flush never overlap.
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written_rows = 0
        self.written_files = 0
        self.strict = strict
        # Strict mode: one future per pending record, resolved once its file is written.
        self._waiters: list[Future[None]] = []
        self._compacted_waiters: list[Future[None]] = []
        self._errors: list[ErrorRecord] = []  # failed requests, written at each flush
        # Summarise each file for the monitor as it is written (see monitor/summary.py).
        self.summaries = summaries
        self._references: References | None = None
        self._unsummarised: set[tuple[str, int]] = set()  # versions that failed once

    @property
    def pending_rows(self) -> int:
        """Rows accepted but not yet written."""
        return self._pending_rows + self._compacted_rows

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)
            self._thread.start()

    def append(self, record: LogRecord) -> Future[None] | None:
        """Queue ``record``; in strict mode, return a future done once it is written."""
        waiter: Future[None] | None = Future() if self.strict else None
        with self._lock:
            self._pending.append(record)
            self._pending_rows += record.inputs.num_rows
            if waiter is not None:
                self._waiters.append(waiter)
            full = self.pending_rows >= self.max_pending_rows
        if full or waiter is not None:
            self._wake.set()
        return waiter

    def append_error(self, record: ErrorRecord) -> None:
        """Queue a failed request; written with the next flush (never waited for)."""
        # What a failed request named is the client's text: make it writable (no lone
        # surrogates) and bounded, so one hostile request cannot stall the writer.
        record = replace(
            record,
            request_id=_text(record.request_id, 200),
            model=None if record.model is None else _text(record.model, 250),
            error=_text(record.error, 100),
        )
        with self._lock:
            self._errors.append(record)

    def close(self) -> None:
        """Stop the background thread and write everything still pending."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for attempt in range(5):
            try:
                self.flush()
                return
            except Exception:
                log.exception("writing the prediction log failed (attempt %d)", attempt + 1)
                time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"could not write {self.pending_rows} pending prediction log rows")

    def _loop(self) -> None:
        due = time.monotonic() + self.flush_interval
        while not self._stop.is_set():
            self._wake.wait(self.compact_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                with self._write_lock:
                    self._compact_pending()
                    if (
                        self.strict
                        or time.monotonic() >= due
                        or self.pending_rows >= self.max_pending_rows
                    ):
                        due = time.monotonic() + self.flush_interval
                        self._write_compacted()
            except Exception as exc:
                log.exception("writing the prediction log failed; will retry")
                self._fail_waiters(exc)
                if self.strict:
                    time.sleep(0.2)  # do not spin on a store that is down

    def flush(self) -> int:
        """Write every pending record now; return the number of rows written."""
        with self._write_lock:
            self._compact_pending()
            return self._write_compacted()

    def compact(self) -> None:
        """Turn pending records into Arrow now (the background thread does this regularly)."""
        with self._write_lock:
            self._compact_pending()

    def _compact_pending(self) -> None:
        with self._lock:
            records, self._pending = self._pending, []
            rows = self._pending_rows
            self._pending_rows = 0
            self._compacted_waiters.extend(self._waiters)
            self._waiters = []
        if not records:
            return
        groups: dict[_FileKey, list[LogRecord]] = defaultdict(list)
        for r in records:
            groups[(r.partition, r.model, r.version, r.model_digest, r.model_artifact_id)].append(r)
        try:
            tables = {key: build_table(group) for key, group in groups.items()}
        except BaseException:
            with self._lock:
                self._pending = records + self._pending
                self._pending_rows += rows
            raise
        for key, table in tables.items():
            self._compacted[key].append(table)
        self._compacted_rows += rows

    def _write_compacted(self) -> int:
        written = 0
        for key in list(self._compacted):
            tables = self._compacted[key]
            rows = self._write(key, tables)
            # Only what was written leaves: a failure above keeps this file for a retry.
            del self._compacted[key]
            self._compacted_rows -= rows
            written += rows
        waiters, self._compacted_waiters = self._compacted_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._write_errors()
        return written

    def _write_errors(self) -> None:
        with self._lock:
            errors, self._errors = self._errors, []
        by_hour: dict[str, list[ErrorRecord]] = defaultdict(list)
        for e in errors:
            by_hour[time.strftime("%Y-%m-%dT%H", time.gmtime(e.time))].append(e)
        try:
            while by_hour:
                partition, group = next(iter(by_hour.items()))
                self._write_error_file(partition, group)
                del by_hour[partition]
        except BaseException:
            with self._lock:  # keep what was not written for the next attempt
                self._errors = [e for g in by_hour.values() for e in g] + self._errors
            raise

    def _write_error_file(self, partition: str, errors: list[ErrorRecord]) -> None:
        def micros(t: float | None) -> int | None:
            return None if t is None else round(t * 1e6)

        stamp = pa.timestamp("us", tz="UTC")
        table = pa.table(
            {
                "request_id": pa.array([e.request_id for e in errors], pa.string()),
                "timestamp": pa.array([micros(e.time) for e in errors], pa.int64()).cast(stamp),
                "event_time": pa.array([micros(e.event_time) for e in errors], pa.int64()).cast(
                    stamp
                ),
                "model": pa.array([e.model for e in errors], pa.string()),
                "model_version": pa.array([e.version for e in errors], pa.int64()),
                "status": pa.array([e.status for e in errors], pa.int32()),
                "error": pa.array([e.error for e in errors], pa.string()),
                "latency_ms": pa.array([e.latency_ms for e in errors], pa.float64()),
            }
        )
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd", compression_level=1)
        blob = self.workspace.artifacts.put_bytes(sink.getvalue())
        properties = {
            "format": LOG_FORMAT,
            "deployment": self.deployment,
            "partition": partition,
            "start": min(e.time for e in errors),
            "end": max(e.time for e in errors),
            "rows": len(errors),
        }
        self.workspace.lineage.add_artifact(
            blob.digest,
            ERROR_KIND,
            blob.size,
            name=f"{self.deployment}/{partition}/errors",
            properties=properties,
        )

    def _fail_waiters(self, exc: BaseException) -> None:
        """Answer the requests waiting for a failed write: their records stay queued and
        are written by a later attempt, but their answers cannot wait for it."""
        with self._write_lock:
            waiters, self._compacted_waiters = self._compacted_waiters, []
        error = StoreError(f"the prediction log could not be written ({exc}); retry")
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def _write(self, key: _FileKey, tables: list[pa.Table]) -> int:
        partition, model, version, model_digest, model_artifact_id = key
        # Promotion: a column that was all nulls in one compaction is null-typed there.
        table = (
            pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        )
        sink = io.BytesIO()
        # zstd level 1: the same size as Arrow's default level here, in half the time, on a
        # thread that shares the CPU with the request path.
        pq.write_table(table, sink, compression="zstd", compression_level=1)
        blob = self.workspace.artifacts.put_bytes(sink.getvalue())
        if self.strict:
            self._sync(blob.digest)
        summary = self._summary(table, model, version)
        micros = pc.min_max(table.column("timestamp").cast(pa.int64()))
        properties = {
            "format": LOG_FORMAT,
            "deployment": self.deployment,
            "model": model,
            "version": version,
            "model_digest": model_digest,
            "partition": partition,
            "start": micros["min"].as_py() / 1e6,
            "end": micros["max"].as_py() / 1e6,
            "rows": table.num_rows,
            "requests": pc.count_distinct(table.column("request_id")).as_py(),
        }
        if summary is not None:
            properties[SUMMARY_PROPERTY] = summary
        lineage = self.workspace.lineage
        # One transaction: a log file is never recorded without its link to the model.
        with self.workspace.write_engine.begin() as conn:
            record = lineage.add_artifact(
                blob.digest,
                LOG_KIND,
                blob.size,
                name=f"{self.deployment}/{partition}",
                properties=properties,
                conn=conn,
            )
            if model_artifact_id is not None:
                execution = lineage.add_execution(
                    LOGGING_EXECUTION,
                    name=f"{self.deployment}/{partition}",
                    status="finished",
                    properties={"deployment": self.deployment, "model": model, "version": version},
                    conn=conn,
                )
                lineage.link(execution.id, model_artifact_id, "input", "model", conn=conn)
                lineage.link(execution.id, record.id, "output", "prediction_log", conn=conn)
        self.written_rows += table.num_rows
        self.written_files += 1
        if self._on_written is not None:
            self._on_written(table.num_rows)
        return int(table.num_rows)

    def _summary(self, table: pa.Table, model: str, version: int) -> str | None:
        """The digest of the file's summary blob, or None (the monitor then summarises the
        file's rows itself: slower, same result). Never fails the write; a version whose
        summary failed once (say, it has no reference) is not tried again by this writer."""
        if not self.summaries or table.num_rows == 0 or (model, version) in self._unsummarised:
            return None
        if self.strict and table.num_rows < STRICT_SUMMARY_MIN_ROWS:
            return None
        import polars as pl

        try:
            df = pl.from_arrow(table)
            assert isinstance(df, pl.DataFrame)
            raw = summarise_file(df, self._schema_of)
            return self.workspace.artifacts.put_bytes(raw).digest
        except LoopmlError as exc:
            # Expected when the log's workspace lacks the version's training reference.
            self._unsummarised.add((model, version))
            log.info(
                "prediction logs of %s:%s are written without summaries: %s", model, version, exc
            )
            return None
        except Exception:
            self._unsummarised.add((model, version))
            log.warning(
                "could not summarise the prediction log of %s:%s; the monitor will "
                "summarise its rows itself",
                model,
                version,
                exc_info=True,
            )
            return None

    def _schema_of(self, model: str, version: int) -> Schema | None:
        if self._references is None:
            self._references = References(self.workspace)
        return self._references.inputs(model, version).schema

    def _sync(self, digest: str) -> None:
        store = self.workspace.artifacts
        if store.is_local:
            fd = os.open(store.path_of(digest), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _text(value: str, limit: int) -> str:
    return value[:limit].encode("utf-8", "replace").decode("utf-8")


def build_table(records: list[LogRecord]) -> pa.Table:
    counts = [r.inputs.num_rows for r in records]
    n = sum(counts)
    # Per-record values repeated per row by index in Arrow, not by Python loops over
    # rows: this runs on a thread that shares the GIL with the request path.
    owner = pa.array(np.repeat(np.arange(len(records), dtype=np.int64), counts))
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rows = (np.arange(n) - starts).astype(np.int32)
    micros = np.repeat(np.array([int(r.time * 1e6) for r in records], dtype=np.int64), counts)
    inputs = pa.concat_tables([r.inputs for r in records], promote_options="default")
    labels = np.concatenate([np.asarray(r.prediction.labels) for r in records])
    return pa.table(
        {
            "request_id": pa.array([r.request_id for r in records], pa.string()).take(owner),
            "row": pa.array(rows),
            "timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
            "event_time": _event_times(records).take(owner),
            "model": pa.array([r.model for r in records], pa.string()).take(owner),
            "model_version": pa.array(np.repeat([r.version for r in records], counts), pa.int64()),
            "role": pa.array([r.role for r in records], pa.string()).take(owner),
            "latency_ms": pa.array(
                np.repeat([r.latency_ms for r in records], counts), pa.float64()
            ),
            "inputs": pa.StructArray.from_arrays(
                [inputs.column(i).combine_chunks() for i in range(inputs.num_columns)],
                names=inputs.column_names,
            )
            if n
            else pa.nulls(0),
            "prediction": _labels_array(labels),
            "proba": _proba_array(records, n),
        }
    )


def _event_times(records: list[LogRecord]) -> pa.Array:
    micros = [None if r.event_time is None else round(r.event_time * 1e6) for r in records]
    return pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _labels_array(labels: np.ndarray) -> pa.Array:
    if labels.dtype.kind in "biuf":
        return pa.array(labels)
    return pa.array([None if v is None else str(v) for v in labels.tolist()], pa.string())


def _proba_array(records: list[LogRecord], n: int) -> pa.Array:
    if any(r.prediction.proba is None for r in records):
        return pa.nulls(n, pa.list_(pa.float64()))
    blocks = [np.asarray(r.prediction.proba, dtype=np.float64) for r in records]
    flat = np.concatenate([b.reshape(-1) for b in blocks])
    widths = np.concatenate([np.full(b.shape[0], b.shape[1] if b.ndim == 2 else 1) for b in blocks])
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
