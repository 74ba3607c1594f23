"""``check`` and ``history`` on an explicit workspace (the fluent layer resolves it)."""

from __future__ import annotations

import weakref
from typing import Any

import polars as pl

from loopml.monitor.window import Monitor, OnResult, WindowReport
from loopml.store.workspace import Workspace

_monitors: weakref.WeakKeyDictionary[Workspace, Monitor] = weakref.WeakKeyDictionary()


def monitor_of(ws: Workspace) -> Monitor:
    """One monitor per open workspace, so references are built once per process."""
    m = _monitors.get(ws)
    if m is None:
        m = _monitors[ws] = Monitor(ws)
    return m


def _on_result(ws: Workspace, alerts: Any) -> OnResult | None:
    """Evaluate ``alerts`` on each newly computed window (read-back windows were already)."""
    if alerts is None:
        return None
    from loopml.monitor.alerts import as_alerts

    rules = as_alerts(alerts)

    def hook(w: WindowReport) -> None:
        rules.evaluate_into(ws, w)

    return hook


def check(
    ws: Workspace, name: str, since: Any = None, until: Any = None, *, alerts: Any = None
) -> WindowReport:
    """One window of ``name``'s served traffic (a model: all its deployments; or a
    deployment). ``alerts``: an :class:`~loopml.monitor.alerts.Alerts`, or a path to
    its YAML, evaluated on every newly computed window."""
    m = monitor_of(ws)
    return m.check(name, since, until, on_result=_on_result(ws, alerts))


def history(
    ws: Workspace,
    name: str,
    window: str = "1d",
    since: Any = None,
    until: Any = None,
    *,
    alerts: Any = None,
) -> pl.DataFrame:
    """Every window of ``window`` length over the range (default: all logged traffic), one
    row each; unchanged windows are read back from the store, not recomputed."""
    m = monitor_of(ws)
    reports = m.history(name, window, since, until, on_result=_on_result(ws, alerts))
    return history_frame(reports)


def history_frame(reports: list[WindowReport]) -> pl.DataFrame:
    rows = [window_row(w) for w in reports]
    if not rows:
        return pl.DataFrame(
            schema={
                "start": pl.Datetime("us", "UTC"),
                "end": pl.Datetime("us", "UTC"),
                "rows": pl.Int64,
                "labelled_rows": pl.Int64,
                "drift_score": pl.Float64,
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def window_row(w: WindowReport) -> dict[str, Any]:
    row: dict[str, Any] = {
        "start": w.start,
        "end": w.end,
        "model": w.model,
        "deployment": w.deployment,
        "versions": list(w.versions),
        "rows": w.rows,
        "labelled_rows": w.labelled_rows,
        "drift_score": w.drift_score,
        "drifted_columns": [] if w.drift is None else w.drift.drifted_columns,
        "prediction_drift": _prediction_drift(w),
        "anomaly_rate": w.anomaly_rate,
        "latency_p50": w.latency_ms.get("p50"),
        "latency_p95": w.latency_ms.get("p95"),
        "latency_p99": w.latency_ms.get("p99"),
        "errors": sum(w.errors.values()),
        "error_rate": w.error_rate,
    }
    for k, v in (w.performance or {}).items():
        row[f"perf_{k}"] = v
    for k, v in (w.estimated_performance or {}).items():
        row[f"est_{k}"] = v
    for c in () if w.drift is None else w.drift.columns:
        row[f"drift_{c.column}"] = c.statistic
    row["result_id"] = w.id
    return row


def _prediction_drift(w: WindowReport) -> float | None:
    if w.prediction_drift is None:
        return None
    for name in ("score", "prediction"):
        for c in w.prediction_drift.columns:
            if c.column == name:
                return c.statistic
    return None
