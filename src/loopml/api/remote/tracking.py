"""Tracking through a team server: ``start_run`` / ``get_run`` / ``search_runs`` /
``metric_history`` with the behaviour of :class:`loopml.tracking.tracker.Tracker`.

``log_metric`` only queues a point, as in local mode; one background thread per tracker
sends what accumulated as one ``POST /runs/{id}/batch`` per run, and beats for the runs
still open so the server can tell a client that died (its run reads as killed). A send
that fails for the network or a server error keeps its points for the next attempt;
reads flush first, so a run reads back what was logged to it.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import traceback
import weakref
from collections import defaultdict
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import numpy as np

from loopml.api.remote.connection import Connection
from loopml.core.errors import ConfigError, ConflictError, InvalidInputError, StoreError
from loopml.tracking import environment, validation
from loopml.tracking.records import MetricHistory, Run, RunList
from loopml.tracking.store import END_STATUSES, FAILED, FINISHED
from loopml.tracking.system_metrics import SystemMetricsSampler, check_interval
from loopml.tracking.tracker import DEFAULT_EXPERIMENT, MAX_SEARCH_LIMIT, downsample

log = logging.getLogger(__name__)

# (run_id, key, step, timestamp, value), as the local metric writer queues them.
Point = tuple[str, str, int, float, float]

FLUSH_INTERVAL_S = 0.25
HEARTBEAT_INTERVAL_S = 30.0
# Points per request: well under the server's limit, a few MB of JSON.
BATCH_SIZE = 50_000
# The server answers pages of at most this many runs and histories of at most this many
# bucketed points; larger asks are paged, or downsampled here from the full series.
PAGE = 1000
MAX_SERVER_POINTS = 10_000
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

_open: weakref.WeakSet[RemoteTracker] = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_registered = False


def _close_open() -> None:
    for tracker in list(_open):
        tracker.close()
        tracker.connection.close()  # at exit only: registries may share the connection


def _register(tracker: RemoteTracker) -> None:
    global _hook_registered
    with _hook_lock:
        _open.add(tracker)
        if not _hook_registered:
            atexit.register(_close_open)
            _hook_registered = True


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _run_path(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def run_of(body: Mapping[str, Any]) -> Run:
    """A :class:`Run` from the server's ``RunOut`` (null metrics were non-finite)."""
    return Run(
        id=body["id"],
        experiment=body["experiment"],
        name=body["name"],
        status=body["status"],
        start_time=body["start_time"],
        end_time=body["end_time"],
        params=dict(body["params"]),
        metrics={k: float("nan") if v is None else float(v) for k, v in body["metrics"].items()},
        tags=dict(body["tags"]),
        git_commit=body.get("git_commit"),
        git_dirty=body.get("git_dirty"),
        environment_digest=body.get("environment_digest"),
        error=body.get("error"),
        created_by=body.get("created_by"),
    )


def _floats(values: Sequence[float | None] | None) -> np.ndarray | None:
    return None if values is None else np.array(values, dtype=np.float64)


def history_of(body: Mapping[str, Any]) -> MetricHistory:
    return MetricHistory(
        body["run_id"],
        body["key"],
        np.array(body["steps"], dtype=np.int64),
        np.array(body["timestamps"], dtype=np.float64),
        np.array(body["values"], dtype=np.float64),
        min=_floats(body.get("min")),
        max=_floats(body.get("max")),
        total_points=int(body["total_points"]),
    )


class RemoteTracker:
    """A tracker whose workspace is the team server at ``connection``."""

    def __init__(
        self,
        connection: Connection,
        *,
        flush_interval: float = FLUSH_INTERVAL_S,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.connection = connection
        self._interval = flush_interval
        self._heartbeat_interval = heartbeat_interval
        self._pending: collections.deque[Point] = collections.deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # Held weakly, as the local writer does: a dropped, unended run stops beating.
        self._live: weakref.WeakSet[RemoteRun] = weakref.WeakSet()
        self._live_lock = threading.Lock()
        self._last_beat = time.monotonic()
        self.last_error: Exception | None = None
        _register(self)

    def __repr__(self) -> str:
        return f"RemoteTracker({self.connection.url!r})"

    # starting -----------------------------------------------------------------
    def start_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        system_metrics_interval: float | None = None,
    ) -> RemoteRun:
        """Start a run on the server; use it as a context manager. With
        ``system_metrics_interval`` (seconds) it samples ``system/...`` metrics of this
        machine that often, sent with its other points, until it ends."""
        for what, given in (("params", params), ("tags", tags)):
            if given is not None and not isinstance(given, Mapping):
                raise InvalidInputError(f"{what} must be a mapping of names to values")
        if system_metrics_interval is not None:
            system_metrics_interval = check_interval(system_metrics_interval)
        env = environment.python_environment()
        git = environment.git_state(os.getcwd())
        body = {
            "experiment": experiment,
            "name": name,
            "params": {k: _text(v) for k, v in (params or {}).items()},
            "tags": {k: _text(v) for k, v in (tags or {}).items()},
            # What this machine runs on, captured here as a local run captures it.
            "git_commit": git.commit,
            "git_dirty": git.dirty,
            "environment": {
                "python_version": env.python_version,
                "platform": env.platform,
                "packages": env.packages,
            },
        }
        made = self.connection.post_json("/runs", body)
        run_id = str(made["id"])
        run = self.get_run(run_id)
        remote_run = RemoteRun(self, run.id, run.experiment, run.name)
        if system_metrics_interval is not None:
            remote_run.start_system_metrics(system_metrics_interval)
        return remote_run

    # reading ------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        if not isinstance(run_id, str) or not run_id:
            raise InvalidInputError(f"run id must be a non-empty string, got {run_id!r}")
        self.flush()
        return run_of(self.connection.get_json(_run_path(run_id)))

    def search_runs(
        self,
        experiment: str | Sequence[str] | None = None,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int = 1000,
    ) -> RunList:
        """Runs matching ``filter``, as :meth:`Tracker.search_runs`; paged from the server."""
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 0 < limit <= MAX_SEARCH_LIMIT
        ):
            raise InvalidInputError(f"limit must be an integer from 1 to {MAX_SEARCH_LIMIT}")
        if order_by is not None and not isinstance(order_by, str):
            if not isinstance(order_by, Sequence) or not all(isinstance(i, str) for i in order_by):
                raise InvalidInputError(
                    "order_by is a string such as 'metrics.auc desc', or a list"
                )
            order_by = ", ".join(order_by)
        params: dict[str, Any] = {}
        if experiment is not None:
            params["experiment"] = [experiment] if isinstance(experiment, str) else list(experiment)
        if filter is not None:
            params["filter"] = filter
        if order_by:
            params["order_by"] = order_by
        self.flush()
        found = RunList()
        seen: set[str] = set()
        offset = 0
        while len(found) < limit:
            size = min(PAGE, limit - len(found))
            page = self.connection.get_json(
                "/runs", params={**params, "offset": offset, "limit": size}
            )
            for body in page["runs"]:
                # A run started between two pages shifts the later ones by one.
                if body["id"] not in seen and len(found) < limit:
                    seen.add(body["id"])
                    found.append(run_of(body))
            offset += len(page["runs"])
            if len(page["runs"]) < size or offset >= int(page["total"]):
                break
        return found

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> MetricHistory:
        """A metric's series in step order; with ``max_points``, bucketed for a chart."""
        if max_points is not None and (
            isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2
        ):
            raise InvalidInputError("max_points must be an integer of at least 2")
        self.flush()
        params: dict[str, Any] = {"key": key}
        if max_points is not None and max_points <= MAX_SERVER_POINTS:
            params["max_points"] = max_points
        history = history_of(
            self.connection.get_json(f"{_run_path(run_id)}/metrics/history", params=params)
        )
        if max_points is not None and not history.downsampled and len(history) > max_points:
            return downsample(history, max_points)
        return history

    # sending ------------------------------------------------------------------
    def append(self, point: Point) -> None:
        self._pending.append(point)
        if self._thread is None:
            self._start()

    def extend(self, points: list[Point]) -> None:
        self._pending.extend(points)
        if self._thread is None:
            self._start()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def keep_alive(self, run: RemoteRun) -> None:
        with self._live_lock:
            self._live.add(run)
        if self._thread is None:
            self._start()

    def let_go(self, run: RemoteRun) -> None:
        with self._live_lock:
            self._live.discard(run)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="loopml-remote-writer", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except StoreError as exc:
                log.warning("sending metrics to the server failed, will retry: %s", exc)
            except Exception as exc:  # refused points are dropped; the thread must live on
                log.error("the server refused metric points: %s", exc)
            if time.monotonic() - self._last_beat >= self._heartbeat_interval:
                self.beat()

    def beat(self) -> None:
        """Tell the server this process's open runs are alive (an empty batch each)."""
        self._last_beat = time.monotonic()
        with self._live_lock:
            live = sorted({run.id for run in self._live})
        for run_id in live:
            try:
                self.connection.post_json(f"{_run_path(run_id)}/batch", {})
            except Exception as exc:  # a missed beat is retried at the next one
                log.warning("heartbeat for run %s failed: %s", run_id, exc)

    def flush(self) -> None:
        """Send every point queued so far. A network or server failure keeps the points
        and raises StoreError; points the server refuses (4xx) are dropped and the first
        such error is raised after the rest were sent."""
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
                by_run: dict[str, list[Point]] = defaultdict(list)
                for point in batch:
                    by_run[point[0]].append(point)
                for n, (run_id, points) in enumerate(by_run.items()):
                    try:
                        self._send(run_id, points)
                    except StoreError as exc:
                        unsent = [p for later in list(by_run.values())[n:] for p in later]
                        self._pending.extendleft(reversed(unsent))
                        self.last_error = exc
                        raise
                    except Exception as exc:
                        self.last_error = refused = refused or exc
        if refused is not None:
            raise refused

    def _send(self, run_id: str, points: list[Point]) -> None:
        metrics = [{"key": k, "value": v, "step": s, "timestamp": ts} for _, k, s, ts, v in points]
        self.connection.post_json(f"{_run_path(run_id)}/batch", {"metrics": metrics})

    def close(self) -> None:
        """Stop the thread and send what is left. Safe to call more than once."""
        self._closed = True
        _open.discard(self)
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        try:
            self.flush()
        except Exception as exc:
            log.error("metric points could not be sent at shutdown: %s", exc)


class RemoteRun:
    """A run being recorded on the server; the same methods as a local run.

    An exception inside the ``with`` block marks the run failed with its traceback, keeps
    everything logged so far, and propagates.
    """

    def __init__(self, tracker: RemoteTracker, run_id: str, experiment: str, name: str):
        self._tracker = tracker
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self._ended = False
        self._next_step: dict[str, int] = {}
        self._known_keys: set[str] = set()
        self._lock = threading.Lock()
        self._sampler: SystemMetricsSampler | None = None
        tracker.keep_alive(self)

    def __repr__(self) -> str:
        return f"RemoteRun(id={self.id!r}, experiment={self.experiment!r}, name={self.name!r})"

    # metrics ------------------------------------------------------------------
    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: float | None = None
    ) -> None:
        """Queue one point; sent in the background. Steps default to 0, 1, 2, ...

        Checked here, as locally: a point sent later has no caller left to tell."""
        if self._ended:
            self._refuse_ended()
        if key not in self._known_keys:
            validation.check_name(key, "metric")
            self._known_keys.add(key)
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
        self._tracker.append((self.id, key, s, ts, v))

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
        if values:
            self._batch({"params": {k: _text(v) for k, v in values.items()}})

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise InvalidInputError("set_tags takes a mapping of names to values")
        if values:
            self._batch({"tags": {k: _text(v) for k, v in values.items()}})

    def _batch(self, body: dict[str, Any]) -> None:
        self._tracker.connection.post_json(f"{_run_path(self.id)}/batch", body)

    def log_artifact(self, path: str, name: str | None = None) -> Any:
        raise ConfigError(
            "log_artifact is not available in remote mode yet (LOOPML_URI is set); log "
            "the file from a machine with the workspace's stores, or unset LOOPML_URI"
        )

    # lifecycle ----------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self._ended

    def start_system_metrics(self, interval: float) -> None:
        """Sample this machine's CPU, memory, disk, network (and GPUs) every ``interval``
        seconds as ``system/...`` metrics until the run ends."""
        interval = check_interval(interval)
        with self._lock:
            if self._ended:
                self._refuse_ended()
            if self._sampler is not None:
                raise ConflictError(f"run {self.id} already samples system metrics")
            self._sampler = SystemMetricsSampler(self._tracker, self.id, interval).start()

    def end(self, status: str = FINISHED, error: str | None = None) -> None:
        """Send the queued points, then end the run as ``finished`` or ``failed``."""
        if status not in END_STATUSES:
            raise InvalidInputError(f"a run ends as one of {END_STATUSES}, not {status!r}")
        with self._lock:
            if self._ended:
                return
            self._ended = True
            sampler = self._sampler
        if sampler is not None:
            sampler.stop()
        self._tracker.let_go(self)
        try:
            self._tracker.flush()
        finally:
            body: dict[str, Any] = {"status": status}
            if error is not None:
                body["error"] = error
            self._tracker.connection.post_json(f"{_run_path(self.id)}/end", body)

    def __enter__(self) -> RemoteRun:
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
