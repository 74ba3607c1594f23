"""``lm.monitoring.check/history/trace`` on the configured workspace.

``name`` is a registered model (all its deployments) or a deployment (``loopml serve
--name``); ``since``/``until`` take datetimes or epoch seconds. Windows are whole UTC days.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from loopml.api.fluent import workspace

# The loop's triggers read as monitoring conditions: lm.monitoring.DriftAbove(0.2).
from loopml.api.loop import DriftAbove as DriftAbove
from loopml.api.loop import Every as Every
from loopml.api.loop import NewLabels as NewLabels
from loopml.api.loop import PerformanceBelow as PerformanceBelow
from loopml.monitor import api as _api
from loopml.monitor import trace as _trace
from loopml.monitor.alerts import Alert as Alert
from loopml.monitor.alerts import Alerts as Alerts
from loopml.monitor.alerts import Rule as Rule
from loopml.monitor.alerts import Webhook as Webhook
from loopml.monitor.trace import Trace as Trace
from loopml.monitor.window import WindowReport as WindowReport


def check(name: str, since: Any = None, until: Any = None, *, alerts: Any = None) -> WindowReport:
    """One window of ``name``'s served traffic against the training data that answered it."""
    return _api.check(workspace(), name, since, until, alerts=alerts)


def history(
    name: str, window: str = "1d", since: Any = None, until: Any = None, *, alerts: Any = None
) -> pl.DataFrame:
    """One row per window (drift, performance, volume, latency); stored windows are reused."""
    return _api.history(workspace(), name, window, since, until, alerts=alerts)


def trace(request_id: str) -> Trace:
    """A logged request's inputs and outputs, model version + digest, run and datasets."""
    return _trace(workspace(), request_id)
