"""Tracking through a team server: ``start_run`` / ``get_run`` / ``search_runs`` /
``metric_history`` with the behaviour of :class:`loopml.tracking.tracker.Tracker`.

``log_metric`` only queues a point: the queue, its background thread and the heartbeats
are the local ``MetricWriter``'s, with the server as its sink (``ServerSink``: one
``POST /runs/{id}/batch`` per run; a beat is an empty batch), so the server can tell a
client that died (its run reads as killed). A send that fails for the network or a server
error keeps its points for the next attempt; reads flush first, so a run reads back what
was logged to it.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from loopml.api.remote.connection import Connection
from loopml.core.errors import InvalidInputError, NotFoundError, StoreError
from loopml.store.lineage import ArtifactRecord
from loopml.tracking import environment, validation
from loopml.tracking.metric_writer import (
    FLUSH_INTERVAL_S,
    HEARTBEAT_INTERVAL_S,
    MetricWriter,
    Point,
    UnsentPoints,
)
from loopml.tracking.records import MetricHistory, Run, RunList
from loopml.tracking.run_handle import RunHandle
from loopml.tracking.search import check_max_points, check_search_limit, order_by_text
from loopml.tracking.system_metrics import check_interval
from loopml.tracking.tracker import DEFAULT_EXPERIMENT, downsample

log = logging.getLogger(__name__)

# The server answers pages of at most this many runs and histories of at most this many
# bucketed points; larger asks are paged, or downsampled here from the full series.
PAGE = 1000
MAX_SERVER_POINTS = 10_000

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


def artifact_of(body: Mapping[str, Any]) -> ArtifactRecord:
    """An artifact the server sent (``ArtifactOut``)."""
    return ArtifactRecord(
        id=body["id"],
        digest=body["digest"],
        kind=body["kind"],
        name=body["name"],
        size=int(body["size"]),
        created_at=float(body["created_at"]),
        properties=dict(body.get("properties") or {}),
    )


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
        self.writer = MetricWriter(
            ServerSink(connection),
            flush_interval=flush_interval,
            heartbeat_interval=heartbeat_interval,
        )
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
        check_search_limit(limit)
        order = order_by_text(order_by)
        params: dict[str, Any] = {}
        if experiment is not None:
            params["experiment"] = [experiment] if isinstance(experiment, str) else list(experiment)
        if filter is not None:
            params["filter"] = filter
        if order:
            params["order_by"] = order
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

    def run_outputs(self, run_id: str) -> list[tuple[str, ArtifactRecord]]:
        """What the run wrote (models, artifacts, datasets), each with its role."""
        body = self.connection.get_json(f"{_run_path(run_id)}/artifacts")
        return [(a["role"] or "", artifact_of(a)) for a in body["outputs"]]

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> MetricHistory:
        """A metric's series in step order; with ``max_points``, bucketed for a chart."""
        check_max_points(max_points)
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

    # sending: the local writer's queue and thread, with the server as its sink --------
    def append(self, point: Point) -> None:
        self.writer.append(point)

    def extend(self, points: list[Point]) -> None:
        self.writer.extend(points)

    @property
    def pending(self) -> int:
        return self.writer.pending

    @property
    def last_error(self) -> Exception | None:
        return self.writer.last_error

    def keep_alive(self, run: RemoteRun) -> None:
        self.writer.keep_alive(run)

    def let_go(self, run: RemoteRun) -> None:
        self.writer.let_go(run)

    def beat(self) -> None:
        self.writer.beat()

    def flush(self) -> None:
        """Send every point queued so far. A network or server failure keeps the points
        and raises StoreError; points the server refuses (4xx) are dropped and the first
        such error is raised after the rest were sent."""
        self.writer.flush()

    def close(self) -> None:
        """Stop the thread and send what is left. Safe to call more than once."""
        _open.discard(self)
        self.writer.close()


class ServerSink:
    """Points sent as one ``POST /runs/{id}/batch`` a run; a beat is an empty batch."""

    thread_name = "loopml-remote-writer"

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def write(self, batch: list[Point]) -> None:
        by_run: dict[str, list[Point]] = defaultdict(list)
        for point in batch:
            by_run[point[0]].append(point)
        refused: Exception | None = None
        runs = list(by_run.items())
        for n, (run_id, points) in enumerate(runs):
            metrics = [
                {"key": k, "value": v, "step": st, "timestamp": ts} for _, k, st, ts, v in points
            ]
            try:
                self.connection.post_json(f"{_run_path(run_id)}/batch", {"metrics": metrics})
            except StoreError as exc:  # the network or the server: the rest waits
                unsent = [p for _, later in runs[n:] for p in later]
                raise UnsentPoints(str(exc), unsent) from exc
            except Exception as exc:  # refused (4xx): these points are dropped
                refused = refused or exc
        if refused is not None:
            raise refused

    def beat(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            try:
                self.connection.post_json(f"{_run_path(run_id)}/batch", {})
            except Exception as exc:  # a missed beat is retried at the next one
                log.warning("heartbeat for run %s failed: %s", run_id, exc)


class RemoteRun(RunHandle):
    """A run being recorded on the server; the same methods as a local run. Metric points
    are checked here, as locally: a point sent later has no caller left to tell."""

    def __init__(self, tracker: RemoteTracker, run_id: str, experiment: str, name: str):
        self._tracker = tracker
        super().__init__(tracker.writer, run_id, experiment, name)

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

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> ArtifactRecord:
        """Upload a file or folder (what the server lacks of it) and record it on the
        server as an output of this run."""
        from loopml.api.remote.artifacts import upload_path

        if self._ended:
            self._refuse_ended()
        src = os.fspath(path)
        if not os.path.exists(src):
            raise NotFoundError(f"cannot log artifact: nothing at {src!r}")
        label = validation.check_artifact_name(name or os.path.basename(os.path.abspath(src)))
        digest, kind, _ = upload_path(self._tracker.connection, src)
        body = {"digest": digest, "kind": kind, "name": label}
        return artifact_of(
            self._tracker.connection.post_json(f"{_run_path(self.id)}/artifacts", body)
        )

    # lifecycle ----------------------------------------------------------------
    def _finish(self, status: str, error: str | None) -> None:
        try:
            self._writer.flush()
        finally:
            body: dict[str, Any] = {"status": status}
            if error is not None:
                body["error"] = error
            self._tracker.connection.post_json(f"{_run_path(self.id)}/end", body)
