"""The record of every write to the server (``api_writes``), written in batches.

A row per request written in its own transaction, after a hop to a worker thread, cost a
tracking client about as much as the metric it logged. Rows are queued instead and a
background thread writes what accumulated in one transaction, every ``FLUSH_INTERVAL_S``
at most. Closing (the server's clean stop: SIGTERM or Ctrl-C) writes every queued row.

What a crash may lose: the rows queued since the last batch, at most the last
``FLUSH_INTERVAL_S`` of writes, when the process is killed outright (SIGKILL, power loss).
The writes themselves are not lost with them; only their audit rows. A batch that fails
for a reason that may pass (a locked or unreachable database) is kept and retried.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from loopml.core import clock
from loopml.core.errors import StoreError
from loopml.core.ticker import Ticker
from loopml.store.metadata.tables import api_writes
from loopml.store.workspace import Workspace

log = logging.getLogger("loopml.server")

FLUSH_INTERVAL_S = 0.1
# Past this many queued rows the oldest are dropped (and said so), so a database that
# stays down cannot grow the server's memory without bound.
MAX_QUEUED = 100_000


class AuditLog:
    def __init__(self, workspace: Workspace, *, interval: float = FLUSH_INTERVAL_S) -> None:
        self.workspace = workspace
        self._rows: collections.deque[dict[str, Any]] = collections.deque()
        self._flush_lock = threading.Lock()
        self._dropped = 0
        self._ticker = Ticker(self._tick, interval=interval, name="loopml-audit")

    def record(self, token_name: str | None, method: str, path: str, status: int) -> None:
        """Queue one row; returns at once (no I/O)."""
        self._ticker.start()
        if len(self._rows) >= MAX_QUEUED:
            self._rows.popleft()
            self._dropped += 1
        self._rows.append(
            {
                "token_name": token_name,
                "method": method,
                "path": path[:1000],
                "status": status,
                "created_at": clock.now(),
            }
        )

    @property
    def interval(self) -> float:
        """Seconds between the background thread's writes (a flush writes at once)."""
        return self._ticker.interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        self._ticker.interval = seconds

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush(self) -> None:
        """Write every queued row now, in one transaction; on failure they stay queued."""
        with self._flush_lock:
            if self._dropped:
                log.error("%d audit rows were dropped: the database refused writes", self._dropped)
                self._dropped = 0
            batch = []
            while self._rows:
                batch.append(self._rows.popleft())
            if not batch:
                return
            try:
                with self.workspace.write_engine.begin() as conn:
                    conn.execute(insert(api_writes), batch)
            except (SQLAlchemyError, StoreError):
                self._rows.extendleft(reversed(batch))
                raise

    def _tick(self) -> None:
        try:
            self.flush()
        except (SQLAlchemyError, StoreError) as exc:
            log.warning("audit rows could not be written yet, will retry: %s", exc)

    def close(self) -> None:
        """Stop the thread and write what is queued. Safe to call more than once."""
        self._ticker.stop()
        try:
            self.flush()
        except (SQLAlchemyError, StoreError) as exc:
            log.error("%d audit rows could not be written at shutdown: %s", self.pending, exc)
