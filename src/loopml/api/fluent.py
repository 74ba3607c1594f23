"""``lm.start_run`` and friends, on the workspace configuration names.

Workspaces and trackers are cached per resolved configuration, so changing
``LOOPML_HOME`` (as tests do) switches workspace instead of reusing a stale one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from loopml.api import config
from loopml.store.workspace import Workspace
from loopml.tracking.active_run import ActiveRun
from loopml.tracking.records import MetricHistory, Run, RunList
from loopml.tracking.tracker import DEFAULT_EXPERIMENT, Tracker


@functools.cache
def _workspace_for(settings: config.Settings) -> Workspace:
    return Workspace(settings.db_url, settings.artifacts_url)


@functools.cache
def _tracker_for(settings: config.Settings) -> Tracker:
    return Tracker(_workspace_for(settings))


def workspace() -> Workspace:
    """The workspace the current configuration names."""
    return _workspace_for(config.resolve())


def tracker() -> Tracker:
    return _tracker_for(config.resolve())


def start_run(
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> ActiveRun:
    """Start recording a run; use it as a context manager."""
    return tracker().start_run(experiment, name=name, params=params, tags=tags)


def get_run(run_id: str) -> Run:
    return tracker().get_run(run_id)


def search_runs(
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: str | Sequence[str] | None = None,
    limit: int = 1000,
) -> RunList:
    """Runs matching a filter such as ``"metrics.auc > 0.7 and params.depth = '6'"``."""
    return tracker().search_runs(experiment, filter=filter, order_by=order_by, limit=limit)


def metric_history(run_id: str, key: str, *, max_points: int | None = None) -> MetricHistory:
    return tracker().metric_history(run_id, key, max_points=max_points)
