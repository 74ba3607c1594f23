"""A run being recorded: the object ``start_run`` hands out."""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from loopml.core import clock
from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.store.lineage import ArtifactRecord
from loopml.store.metadata.tables import executions, params, tags
from loopml.tracking import validation

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

FINISHED = "finished"
FAILED = "failed"
RUNNING = "running"
END_STATUSES = (FINISHED, FAILED)
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class ActiveRun:
    """Log params, metrics, tags and artifacts; use as a context manager.

    An exception inside the ``with`` block marks the run failed, keeps everything logged
    so far, and propagates.
    """

    def __init__(self, tracker: Tracker, run_id: str, experiment: str, name: str) -> None:
        self._tracker = tracker
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self._ended = False
        self._next_step: dict[str, int] = {}
        self._known_keys: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, experiment={self.experiment!r}, name={self.name!r})"

    # metrics ------------------------------------------------------------------
    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: float | None = None
    ) -> None:
        """Queue one point; returns in about a microsecond. Steps default to 0, 1, 2, ..."""
        if self._ended:
            self._refuse_ended()
        if key not in self._known_keys:
            validation.check_name(key, "metric")
            self._known_keys.add(key)
        # Fast path for the common case: x - x == 0 holds for finite floats only.
        if type(value) is float and value - value == 0.0:
            v = value
        else:
            v = validation.check_metric_value(key, value)
        if step is None:
            s = self._next_step.get(key, 0)
        else:
            s = (
                step
                if type(step) is int and _I64_MIN <= step <= _I64_MAX
                else validation.check_step(key, step)
            )
        self._next_step[key] = s + 1
        self._tracker.writer.append(
            (self.id, key, s, time.time() if timestamp is None else timestamp, v)
        )

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        if not isinstance(values, Mapping):
            raise InvalidInputError("log_metrics takes a mapping of metric names to numbers")
        for key, value in values.items():
            self.log_metric(key, value, step=step)

    # params and tags ----------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, values: Mapping[str, Any]) -> None:
        """Params are write-once: logging a different value for a logged key is refused."""
        if not isinstance(values, Mapping):
            raise InvalidInputError("log_params takes a mapping of names to values")
        if self._ended:
            self._refuse_ended()
        rows = {
            validation.check_name(k, "param"): validation.param_text(k, v)
            for k, v in values.items()
        }
        if not rows:
            return
        with self._tracker.write_engine.begin() as conn:
            existing = dict(
                conn.execute(
                    select(params.c.key, params.c.value).where(
                        params.c.run_id == self.id, params.c.key.in_(list(rows))
                    )
                ).all()
            )
            for key, old in existing.items():
                if old != rows[key]:
                    raise ConflictError(
                        f"param {key!r} of run {self.id} is already {old!r}; params cannot "
                        f"change within a run (tried {rows[key]!r}). Use a tag or a new run"
                    )
            new = [
                {"run_id": self.id, "key": k, "value": v}
                for k, v in rows.items()
                if k not in existing
            ]
            if new:
                conn.execute(params.insert(), new)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise InvalidInputError("set_tags takes a mapping of names to values")
        rows = [
            {
                "run_id": self.id,
                "key": validation.check_name(k, "tag"),
                "value": validation.tag_text(k, v),
            }
            for k, v in values.items()
        ]
        if not rows:
            return
        with self._tracker.write_engine.begin() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = insert(tags)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[tags.c.run_id, tags.c.key],
                    set_={"value": stmt.excluded.value},
                ),
                rows,
            )

    # artifacts ----------------------------------------------------------------
    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> ArtifactRecord:
        """Store a file or folder in the artifact store as an output of this run."""
        if self._ended:
            self._refuse_ended()
        src = os.fspath(path)
        if not os.path.exists(src):
            raise NotFoundError(f"cannot log artifact: nothing at {src!r}")
        store = self._tracker.workspace.artifacts
        label = name or os.path.basename(os.path.abspath(src))
        validation.check_name(label, "artifact")
        if os.path.isdir(src):
            tree = store.put_tree(src)
            digest, size, kind = tree.digest, tree.size, "tree"
        else:
            blob = store.put_file(src)
            digest, size, kind = blob.digest, blob.size, "file"
        lineage = self._tracker.workspace.lineage
        record = lineage.add_artifact(digest, kind, size, name=label)
        lineage.link(self.id, record.id, "output", role=label)
        return record

    # lifecycle ----------------------------------------------------------------
    def end(self, status: str = FINISHED, error: str | None = None) -> None:
        if status not in END_STATUSES:
            raise InvalidInputError(f"a run ends as one of {END_STATUSES}, not {status!r}")
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._tracker.writer.flush()
        with self._tracker.write_engine.begin() as conn:
            conn.execute(
                update(executions)
                .where(executions.c.id == self.id)
                .values(status=status, end_time=clock.now(), error=error)
            )

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end(FINISHED)
        else:
            detail = "".join(traceback.format_exception(exc_type, exc, tb))[-20_000:]
            self.end(FAILED, error=detail)

    def _refuse_ended(self) -> None:
        raise ConflictError(f"run {self.id} has ended; start a new run to log more")
