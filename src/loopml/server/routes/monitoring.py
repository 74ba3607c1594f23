"""Monitoring: windows over time per model or deployment, alerts and loop decisions.

``loopml.monitor`` is imported lazily: until it is installed the endpoints answer that
there is no monitoring yet rather than failing.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from loopml.core import names
from loopml.core.errors import NotFoundError
from loopml.server.routes.common import ERRORS
from loopml.server.state import ServerState, monitoring_module, state
from loopml.server.wire import MonitoringHistoryOut, MonitoringStatusOut, json_safe, nodes_of

router = APIRouter(prefix="/monitoring", tags=["monitoring"], responses=ERRORS)
St = Annotated[ServerState, Depends(state)]
# Executions the monitor and the loop record: checks, alerts and decisions.
EVENT_KINDS = ("monitor", "alert", "loop")
NOT_YET = "no monitoring yet: this loopml has no loopml.monitor package"


@router.get("", response_model=MonitoringStatusOut, summary="Status, alerts and decisions")
def status(s: St) -> MonitoringStatusOut:
    available = monitoring_module() is not None
    events = s.workspace.lineage.latest_executions(EVENT_KINDS)
    detail = "monitoring is available" if available else NOT_YET
    return MonitoringStatusOut(
        available=available, detail=detail, events=nodes_of(events), alerts=alerts(s)
    )


def alerts(s: ServerState, limit: int = 200) -> list[dict[str, Any]]:
    """Stored alerts, newest first (none until monitoring is installed)."""
    if monitoring_module() is None:
        return []
    stored = importlib.import_module("loopml.monitor.alerts").stored_alerts(s.workspace)
    return [json_safe(a) for a in reversed(stored[-limit:])]


@router.get("/{name}/history", response_model=MonitoringHistoryOut, summary="Windows over time")
def history(
    s: St,
    name: str,
    window: Annotated[str, Query(max_length=20, pattern=r"^[0-9]{1,4}[dw]$")] = "1d",
) -> MonitoringHistoryOut:
    """One row per window: drift, quality, realised and estimated performance, latency."""
    names.check_name(name, what="model or deployment name")
    return MonitoringHistoryOut(name=name, window=window, rows=history_rows(s, name, window))


def history_rows(s: ServerState, name: str, window: str) -> list[dict[str, Any]]:
    module: Any = monitoring_module()
    if module is None:
        raise NotFoundError(NOT_YET)
    frame = module.history(s.workspace, name, window=window)
    rows = frame.to_dicts() if hasattr(frame, "to_dicts") else list(frame)
    return [json_safe({k: _plain(v) for k, v in r.items()}) for r in rows]


def _plain(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v
