"""Asynchronous, batched metric writes.

``append`` only puts a tuple on a deque, so logging a metric costs about a microsecond.
A background thread hands what accumulated to the writer's ``Sink`` in batches: the
metadata store (``StoreSink``: one transaction per batch, one packed chunk per (run,
metric)) or, in remote mode, a team server. ``flush`` does the same synchronously. A
transient failure (a busy database, a network blip) puts the unwritten points back, so it
delays points instead of losing them; points the sink refuses are dropped and reported.

The same thread beats for the runs of this process that are still open (every
``HEARTBEAT_INTERVAL_S``), so readers can tell a run whose process died from a live one.
One exit hook per process closes every writer still open.
"""

from __future__ import annotations

import atexit
import collections
import logging
import struct
import threading
import time
import weakref
from collections import defaultdict
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from loopml.core.errors import StoreError
from loopml.core.ticker import Ticker
from loopml.tracking.store import RunStore

log = logging.getLogger(__name__)

# (run_id, key, step, timestamp, value)
Point = tuple[str, str, int, float, float]

FLUSH_INTERVAL_S = 0.25
BATCH_SIZE = 50_000
# Past this many unwritten points the logging thread writes itself: memory stays bounded.
BACKLOG_LIMIT = 1_000_000
HEARTBEAT_INTERVAL_S = 30.0

_open_writers: weakref.WeakSet[MetricWriter] = weakref.WeakSet()
_exit_hook = threading.Lock()
_exit_hook_registered = False


def _close_open_writers() -> None:
    for writer in list(_open_writers):
        writer.close()


def _register(writer: MetricWriter) -> None:
    global _exit_hook_registered
    with _exit_hook:
        _open_writers.add(writer)
        if not _exit_hook_registered:
            atexit.register(_close_open_writers)
            _exit_hook_registered = True


class UnsentPoints(StoreError):
    """A write that failed for a reason that may pass; ``points`` were not written and go
    back in the queue for the next attempt."""

    def __init__(self, message: str, points: list[Point]) -> None:
        super().__init__(message)
        self.points = points


class Sink(Protocol):
    """Where a writer's points go."""

    thread_name: str

    def write(self, batch: list[Point]) -> None:
        """Write every point of ``batch``, or raise ``UnsentPoints`` with those that may be
        written later; any other exception means the points were refused for good."""
        ...

    def beat(self, run_ids: list[str]) -> None:
        """Mark these runs alive now; a failure is logged and retried at the next beat."""
        ...


class StoreSink:
    """Points into the metadata store, one transaction a batch."""

    thread_name = "loopml-metric-writer"

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def write(self, batch: list[Point]) -> None:
        chunks, latest = packed(batch)
        try:
            self.store.write_metrics(chunks, latest)
        except SQLAlchemyError as exc:
            raise UnsentPoints(f"could not write {len(batch)} metric points: {exc}", batch) from exc

    def beat(self, run_ids: list[str]) -> None:
        try:
            self.store.beat(run_ids)
        except SQLAlchemyError as exc:
            log.warning("run heartbeat failed, will retry: %s", exc)


class MetricWriter:
    def __init__(
        self,
        sink: Sink,
        *,
        flush_interval: float = FLUSH_INTERVAL_S,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.sink = sink
        self._heartbeat_interval = heartbeat_interval
        # Held weakly: a run whose handle is gone (a request-scoped handle in the server,
        # a run the user dropped) stops beating and, unended, reads as killed later.
        self._live: weakref.WeakSet[Any] = weakref.WeakSet()
        self._live_lock = threading.Lock()
        self._last_beat = time.monotonic()
        self._pending: collections.deque[Point] = collections.deque()
        self._flush_lock = threading.Lock()
        self._ticker = Ticker(self._tick, interval=flush_interval, name=sink.thread_name)
        self.last_error: Exception | None = None
        # Held weakly: the exit hook must not keep a dropped writer (and its engine) alive.
        _register(self)

    def keep_alive(self, run: Any) -> None:
        """Beat for ``run`` (anything with an ``id``) until :meth:`let_go` or until it is
        garbage-collected."""
        with self._live_lock:
            self._live.add(run)
        self._ticker.start()

    def let_go(self, run: Any) -> None:
        with self._live_lock:
            self._live.discard(run)

    def append(self, point: Point) -> None:
        self._pending.append(point)
        self._ticker.start()
        if len(self._pending) >= BACKLOG_LIMIT:
            self.flush()

    def extend(self, points: list[Point]) -> None:
        self._pending.extend(points)
        self._ticker.start()
        if len(self._pending) >= BACKLOG_LIMIT:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _tick(self) -> None:
        try:
            self.flush()
        except StoreError as exc:
            log.warning("metric flush failed, will retry: %s", exc)
        except Exception as exc:  # refused points are dropped; the thread must live on
            log.error("metric points were refused: %s", exc)
        if len(self._live) and time.monotonic() - self._last_beat >= self._heartbeat_interval:
            self.beat()

    def beat(self) -> None:
        """Mark this process's open runs alive now."""
        self._last_beat = time.monotonic()
        with self._live_lock:
            live = sorted({run.id for run in self._live})
        self.sink.beat(live)

    def flush(self) -> None:
        """Write every point appended so far. A failure that may pass keeps the unwritten
        points and raises StoreError; points the sink refuses are dropped, and the first
        such error is raised once the rest are written."""
        refused: Exception | None = None
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
                    self.sink.write(batch)
                except UnsentPoints as exc:
                    self._pending.extendleft(reversed(exc.points))
                    self.last_error = exc
                    raise
                except Exception as exc:
                    self.last_error = refused = refused or exc
        if refused is not None:
            raise refused

    def close(self) -> None:
        """Stop the thread and write what is left. Safe to call more than once."""
        _open_writers.discard(self)
        self._ticker.stop()
        try:
            self.flush()
        except Exception as exc:
            log.error("metric points could not be written at shutdown: %s", exc)


def packed(batch: list[Point]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A batch as rows: one packed chunk and one latest point per (run, metric)."""
    if len(batch) == 1:  # a server's lone log-metric, without the grouping
        run_id, key = batch[0][0], batch[0][1]
        return [pack(run_id, key, batch)], [latest_of(run_id, key, batch)]
    series: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for point in batch:
        series[(point[0], point[1])].append(point)
    chunks = [pack(run_id, key, points) for (run_id, key), points in series.items()]
    latest = [latest_of(run_id, key, points) for (run_id, key), points in series.items()]
    return chunks, latest


def pack(run_id: str, key: str, points: list[Point]) -> dict[str, Any]:
    """One chunk row: the points' columns as little-endian arrays (read back with numpy).

    Packed with ``struct`` rather than numpy: from Python numbers it is 2-3x faster at
    every size (1 point: 0.9 against 2.7 us; 10,000: 0.25 against 0.61 ms), and a server
    packs one point per MLflow ``log-metric`` request."""
    _, _, steps, stamps, values = zip(*points, strict=True)
    n = len(points)
    return {
        "run_id": run_id,
        "key": key,
        "count": n,
        "min_step": int(min(steps)),
        "max_step": int(max(steps)),
        "steps": struct.pack(f"<{n}q", *steps),
        "timestamps": struct.pack(f"<{n}d", *stamps),
        "values": struct.pack(f"<{n}d", *values),
    }


def latest_of(run_id: str, key: str, points: list[Point]) -> dict[str, Any]:
    """The row of ``latest_metrics`` for these points of one series: the last by step."""
    _, _, step, stamp, value = max(points, key=lambda p: (p[2], p[3]))
    return {"run_id": run_id, "key": key, "step": step, "timestamp": stamp, "value": value}
