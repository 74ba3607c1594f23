"""What every handle on a run being recorded shares, local or remote.

Metric points are checked here and queued on a ``MetricWriter``, since a point written
later has no caller left to tell; system metrics are sampled onto the same queue; a run
that has ended refuses more. How params, tags and the end reach their store is the
subclass's (``ActiveRun`` writes the metadata store, ``RemoteRun`` a team server).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self

from loopml.core.errors import ConflictError, InvalidInputError
from loopml.tracking import validation
from loopml.tracking.store import END_STATUSES, FAILED, FINISHED

if TYPE_CHECKING:
    from loopml.tracking.metric_writer import MetricWriter
    from loopml.tracking.system_metrics import SystemMetricsSampler

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class RunHandle:
    """Log metrics, sample system metrics, end; use as a context manager.

    An exception inside the ``with`` block marks the run failed with its traceback,
    keeps everything logged so far, and propagates.
    """

    def __init__(self, writer: MetricWriter, run_id: str, experiment: str, name: str) -> None:
        self._writer = writer
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
        return (
            f"{type(self).__name__}(id={self.id!r}, experiment={self.experiment!r}, "
            f"name={self.name!r})"
        )

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
        if timestamp is None:
            ts = time.time()
        else:
            ts = validation.check_metric_value("timestamp", timestamp)
        self._writer.append((self.id, key, s, ts, v))

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        if not isinstance(values, Mapping):
            raise InvalidInputError("log_metrics takes a mapping of metric names to numbers")
        for key, value in values.items():
            self.log_metric(key, value, step=step)

    def start_system_metrics(self, interval: float) -> None:
        """Sample this machine's CPU, memory, disk, network (and GPUs) every ``interval``
        seconds as ``system/...`` metrics until the run ends."""
        from loopml.tracking.system_metrics import SystemMetricsSampler, check_interval

        interval = check_interval(interval)
        with self._lock:
            if self._ended:
                self._refuse_ended()
            if self._sampler is not None:
                raise ConflictError(f"run {self.id} already samples system metrics")
            self._sampler = SystemMetricsSampler(self._writer, self.id, interval).start()

    # lifecycle ----------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self._ended

    def end(self, status: str = FINISHED, error: str | None = None) -> None:
        """Write the queued points, then end the run as ``finished`` or ``failed``."""
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
        self._finish(status, error)

    def _finish(self, status: str, error: str | None) -> None:
        """Write what is queued and record the end; the store's to say how."""
        raise NotImplementedError

    def __enter__(self) -> Self:
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
