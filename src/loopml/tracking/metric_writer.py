"""Asynchronous, batched metric writes.

``append`` only puts a tuple on a deque, so logging a metric costs about a microsecond.
A background thread writes what accumulated in one transaction per batch; ``flush`` does
the same synchronously. A failed write puts its rows back, so a transient error (a busy
database, a network blip) delays points instead of losing them.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import weakref
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from loopml.core.errors import StoreError
from loopml.store.metadata.tables import latest_metrics, metrics

log = logging.getLogger(__name__)

# (run_id, key, step, timestamp, value)
Point = tuple[str, str, int, float, float]

FLUSH_INTERVAL_S = 0.25
BATCH_SIZE = 50_000
# Past this many unwritten points the logging thread writes itself: memory stays bounded.
BACKLOG_LIMIT = 1_000_000


class MetricWriter:
    def __init__(self, write_engine: Engine, *, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        self._engine = write_engine
        self._interval = flush_interval
        self._pending: collections.deque[Point] = collections.deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.last_error: Exception | None = None
        # A weak reference: the exit hook must not keep a dropped writer (and its engine) alive.
        atexit.register(_close_if_alive, weakref.ref(self))

    def append(self, point: Point) -> None:
        self._pending.append(point)
        if self._thread is None:
            self._start()
        if len(self._pending) >= BACKLOG_LIMIT:
            self.flush()

    def extend(self, points: list[Point]) -> None:
        self._pending.extend(points)
        if self._thread is None:
            self._start()
        if len(self._pending) >= BACKLOG_LIMIT:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="loopml-metric-writer", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except StoreError as exc:
                log.warning("metric flush failed, will retry: %s", exc)

    def flush(self) -> None:
        """Write every point appended so far; raise StoreError if the database refuses."""
        with self._flush_lock:
            while self._pending:
                batch: list[Point] = []
                pop = self._pending.popleft
                try:
                    for _ in range(BATCH_SIZE):
                        batch.append(pop())
                except IndexError:
                    pass
                try:
                    self._write(batch)
                except SQLAlchemyError as exc:
                    self._pending.extendleft(reversed(batch))
                    self.last_error = exc
                    raise StoreError(f"could not write {len(batch)} metric points: {exc}") from exc

    def _write(self, batch: list[Point]) -> None:
        rows: list[dict[str, Any]] = [
            {"run_id": r, "key": k, "step": s, "timestamp": t, "value": v}
            for (r, k, s, t, v) in batch
        ]
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            ident = (row["run_id"], row["key"])
            cur = latest.get(ident)
            if cur is None or (row["step"], row["timestamp"]) >= (cur["step"], cur["timestamp"]):
                latest[ident] = row
        with self._engine.begin() as conn:
            conn.execute(metrics.insert(), rows)
            conn.execute(_upsert_latest(conn.dialect.name), list(latest.values()))

    def close(self) -> None:
        """Stop the thread and write what is left. Safe to call more than once."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        try:
            self.flush()
        except StoreError as exc:
            log.error("metric points could not be written at shutdown: %s", exc)


def _close_if_alive(ref: weakref.ref[MetricWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.close()


def _upsert_latest(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(latest_metrics)
    ex = stmt.excluded
    cur = latest_metrics.c
    newer = (ex.step > cur.step) | ((ex.step == cur.step) & (ex.timestamp >= cur.timestamp))
    return stmt.on_conflict_do_update(
        index_elements=[cur.run_id, cur.key],
        set_={"step": ex.step, "timestamp": ex.timestamp, "value": ex.value},
        where=newer,
    )
