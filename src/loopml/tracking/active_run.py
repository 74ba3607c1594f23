"""A run being recorded: the object ``start_run`` hands out."""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.store.lineage import ArtifactRecord
from loopml.tracking import validation
from loopml.tracking.store import END_STATUSES as END_STATUSES
from loopml.tracking.store import FAILED as FAILED
from loopml.tracking.store import FINISHED as FINISHED
from loopml.tracking.store import RUNNING as RUNNING
from loopml.tracking.store import RunStore

if TYPE_CHECKING:
    from loopml.store.workspace import Workspace
    from loopml.tracking.metric_writer import MetricWriter
    from loopml.tracking.system_metrics import SystemMetricsSampler

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class ActiveRun:
    """Log params, metrics, tags and artifacts; use as a context manager.

    An exception inside the ``with`` block marks the run failed, keeps everything logged
    so far, and propagates.
    """

    def __init__(
        self,
        store: RunStore,
        writer: MetricWriter,
        run_id: str,
        experiment: str,
        name: str,
        workspace: Workspace,
    ) -> None:
        self._store = store
        self._writer = writer
        self._workspace = workspace
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self._ended = False
        self._next_step: dict[str, int] = {}
        self._known_keys: set[str] = set()
        self._lock = threading.Lock()
        self._sampler: SystemMetricsSampler | None = None
        writer.keep_alive(self)

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
        self._writer.append((self.id, key, s, time.time() if timestamp is None else timestamp, v))

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
        self._store.add_params(self.id, rows)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise InvalidInputError("set_tags takes a mapping of names to values")
        rows = {
            validation.check_name(k, "tag"): validation.tag_text(k, v) for k, v in values.items()
        }
        if not rows:
            return
        self._store.set_tags(self.id, rows)

    # artifacts ----------------------------------------------------------------
    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> ArtifactRecord:
        """Store a file or folder in the artifact store as an output of this run."""
        if self._ended:
            self._refuse_ended()
        src = os.fspath(path)
        if not os.path.exists(src):
            raise NotFoundError(f"cannot log artifact: nothing at {src!r}")
        store = self._workspace.artifacts
        label = name or os.path.basename(os.path.abspath(src))
        validation.check_name(label, "artifact")
        if os.path.isdir(src):
            tree = store.put_tree(src)
            digest, size, kind = tree.digest, tree.size, "tree"
        else:
            blob = store.put_file(src)
            digest, size, kind = blob.digest, blob.size, "file"
        lineage = self._workspace.lineage
        record = lineage.add_artifact(digest, kind, size, name=label)
        lineage.link(self.id, record.id, "output", role=label)
        return record

    @property
    def workspace(self) -> Workspace:
        """The workspace this run is recorded in."""
        return self._workspace

    # lifecycle ----------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self._ended

    def start_system_metrics(self, interval: float) -> None:
        """Sample CPU, memory, disk, network (and GPUs) every ``interval`` seconds as
        ``system/...`` metrics until the run ends."""
        from loopml.tracking.system_metrics import SystemMetricsSampler, check_interval

        interval = check_interval(interval)
        with self._lock:
            if self._ended:
                self._refuse_ended()
            if self._sampler is not None:
                raise ConflictError(f"run {self.id} already samples system metrics")
            self._sampler = SystemMetricsSampler(self._writer, self.id, interval).start()

    def end(self, status: str = FINISHED, error: str | None = None) -> None:
        if status not in END_STATUSES:
            raise InvalidInputError(f"a run ends as one of {END_STATUSES}, not {status!r}")
        with self._lock:
            if self._ended:
                return
            self._ended = True
            sampler = self._sampler
        if sampler is not None:
            sampler.stop()
        self._writer.let_go(self)
        self._writer.flush()
        self._store.end_run(self.id, status, error)

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
