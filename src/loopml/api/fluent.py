"""``lm.start_run`` and friends, on the workspace configuration names.

Workspaces and trackers are cached per resolved configuration, so changing
``LOOPML_HOME`` (as tests do) switches workspace instead of reusing a stale one. When the
configuration names a server (``LOOPML_URI``), the same functions talk to it instead
(:mod:`loopml.api.remote`), and what needs the stores themselves says so.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from loopml.api import config
from loopml.core.errors import ConfigError
from loopml.store.lineage import ArtifactRecord
from loopml.store.workspace import Workspace
from loopml.tracking.active_run import ActiveRun
from loopml.tracking.records import MetricHistory, Run, RunList
from loopml.tracking.tracker import DEFAULT_EXPERIMENT, Tracker

if TYPE_CHECKING:
    from loopml.api.remote import (
        Connection,
        RemoteCatalog,
        RemoteRegistry,
        RemoteRun,
        RemoteTracker,
    )


@functools.cache
def _workspace_for(settings: config.Settings) -> Workspace:
    return Workspace(settings.db_url, settings.artifacts_url, actor=config.os_user())


@functools.cache
def _tracker_for(settings: config.Settings) -> Tracker:
    return Tracker(_workspace_for(settings))


@functools.cache
def _connection_for(settings: config.Settings) -> Connection:
    from loopml.api.remote import Connection

    assert settings.uri is not None
    return Connection(settings.uri, settings.token)


@functools.cache
def _remote_tracker_for(settings: config.Settings) -> RemoteTracker:
    from loopml.api.remote import RemoteTracker

    return RemoteTracker(_connection_for(settings))


def _local(settings: config.Settings, what: str) -> config.Settings:
    if settings.remote:
        raise ConfigError(
            f"{what} needs the workspace's stores, but LOOPML_URI names a server "
            f"({settings.uri}); in remote mode the Python API offers start_run (with "
            "log_artifact), get_run, search_runs, metric_history, every lm.models call and "
            "every lm.datasets call. Unset LOOPML_URI to work on the stores directly"
        )
    return settings


def workspace() -> Workspace:
    """The workspace the current configuration names."""
    return _workspace_for(_local(config.resolve(), "this call"))


def tracker() -> Tracker:
    return _tracker_for(_local(config.resolve(), "this call"))


def remote_tracker() -> RemoteTracker | None:
    """The tracker of the server the configuration names; None in local mode."""
    settings = config.resolve()
    return _remote_tracker_for(settings) if settings.remote else None


def remote_registry() -> RemoteRegistry | None:
    """The registry of the server the configuration names; None in local mode."""
    from loopml.api.remote import RemoteRegistry

    settings = config.resolve()
    return RemoteRegistry(_connection_for(settings)) if settings.remote else None


def remote_catalog() -> RemoteCatalog | None:
    """The dataset catalog of the server the configuration names; None in local mode."""
    from loopml.api.remote import RemoteCatalog

    settings = config.resolve()
    return RemoteCatalog(_connection_for(settings)) if settings.remote else None


def _any_tracker() -> Tracker | RemoteTracker:
    settings = config.resolve()
    return _remote_tracker_for(settings) if settings.remote else _tracker_for(settings)


def start_run(
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    system_metrics: bool | None = None,
    system_metrics_interval: float | None = None,
) -> ActiveRun | RemoteRun:
    """Start recording a run; use it as a context manager.

    ``system_metrics=True`` samples CPU, memory, disk and network I/O (and GPUs) every
    ``system_metrics_interval`` seconds (default 10) as ``system/...`` metrics; unset, the
    ``LOOPML_SYSTEM_METRICS`` environment variable (``1``/``0``) decides, and it is off.
    In remote mode (``LOOPML_URI``) the samples are of this machine, sent to the server
    with the run's other points.
    """
    interval = config.system_metrics_interval(system_metrics, system_metrics_interval)
    any_tracker = _any_tracker()
    run = any_tracker.start_run(
        experiment, name=name, params=params, tags=tags, system_metrics_interval=interval
    )
    _started().append(weakref.ref(run))
    return run


class _Started(threading.local):
    def __init__(self) -> None:
        self.runs: list[weakref.ref[ActiveRun | RemoteRun]] = []


# Runs this thread started here, newest last: ``active_run`` is the newest one not yet
# ended, which is what autologging logs into. Per thread, as in MLflow, so fits running in
# a thread pool each get a run rather than all writing into one. Weak, so a dropped run
# handle is not kept alive by this list.
_thread_runs = _Started()


def _started() -> list[weakref.ref[ActiveRun | RemoteRun]]:
    return _thread_runs.runs


def active_run() -> ActiveRun | RemoteRun | None:
    """The newest run this thread started with :func:`start_run` that has not ended."""
    started = _started()
    while started:
        run = started[-1]()
        if run is not None and not run.ended:
            return run
        started.pop()
    return None


def get_run(run_id: str) -> Run:
    return _any_tracker().get_run(run_id)


def run_outputs(run_id: str) -> list[tuple[str, ArtifactRecord]]:
    """What a run wrote (its logged artifacts, models and datasets), each with its role."""
    remote = remote_tracker()
    if remote is not None:
        return remote.run_outputs(run_id)
    return workspace().lineage.artifacts_of(run_id, "output")


def search_runs(
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: str | Sequence[str] | None = None,
    limit: int = 1000,
) -> RunList:
    """Runs matching a filter such as ``"metrics.auc > 0.7 and params.depth = '6'"``."""
    return _any_tracker().search_runs(experiment, filter=filter, order_by=order_by, limit=limit)


def metric_history(run_id: str, key: str, *, max_points: int | None = None) -> MetricHistory:
    return _any_tracker().metric_history(run_id, key, max_points=max_points)
