"""Alerts: thresholds on a window's figures, sent to the log, webhooks and named events.

Rules are declared in code (``Alerts(rules=[Rule("drift_score", above=0.3)], ...)``) or in
YAML (``Alerts.from_yaml``)::

    rules:
      - metric: drift_score          # drift_score, anomaly_rate, error_rate, rows,
        above: 0.3                   #   latency_p50/p95/p99, performance.<m>, estimated.<m>
      - metric: performance.roc_auc
        below: 0.68
      - metric: rows
        below: 1000                  # minimum volume
    webhooks:
      - url: http://127.0.0.1:9000/hook
        retries: 3
    events: [retrain-delay-model]    # fire_event(...) for event-triggered pipelines
    log: true

Every alert raised is stored (``monitor_alerts``) with the window and the value. Webhooks
are posted from a background thread with retries, so nothing that raises an alert (least
of all the serving path) waits on a slow receiver; ``Alerts.wait()`` waits for delivery.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from loopml.core import clock
from loopml.core.errors import InvalidInputError
from loopml.monitor.window import WindowReport
from loopml.store.metadata.tables import monitor_alerts
from loopml.store.workspace import Workspace

log = logging.getLogger("loopml.monitor.alerts")

SIMPLE_METRICS = (
    "drift_score",
    "anomaly_rate",
    "error_rate",
    "rows",
    "labelled_rows",
    "latency_p50",
    "latency_p95",
    "latency_p99",
)
PREFIXES = ("performance.", "estimated.")


def metric_value(w: WindowReport, metric: str) -> float | None:
    """A window's value for ``metric`` (None when the window does not have it)."""
    if metric in ("rows", "labelled_rows"):
        return float(getattr(w, metric))
    if metric in ("drift_score", "anomaly_rate", "error_rate"):
        v = getattr(w, metric)
        return None if v is None else float(v)
    if metric.startswith("latency_"):
        return w.latency_ms.get(metric.removeprefix("latency_"))
    source = w.performance if metric.startswith("performance.") else w.estimated_performance
    if source is None:
        return None
    return source.get(metric.split(".", 1)[1])


@dataclass(frozen=True)
class Rule:
    """Alert when ``metric`` is above ``above`` or below ``below`` (one of them)."""

    metric: str
    above: float | None = None
    below: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not (
            self.metric in SIMPLE_METRICS
            or (self.metric.startswith(PREFIXES) and len(self.metric.split(".", 1)[1]) > 0)
        ):
            raise InvalidInputError(
                f"unknown alert metric {self.metric!r}; use one of {', '.join(SIMPLE_METRICS)}, "
                "or performance.<metric> / estimated.<metric> (e.g. performance.roc_auc)"
            )
        if (self.above is None) == (self.below is None):
            raise InvalidInputError(f"alert on {self.metric}: give exactly one of above or below")
        for v in (self.above, self.below):
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            ):
                raise InvalidInputError(f"alert on {self.metric}: the limit must be a number")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.metric} {'>' if self.above is not None else '<'} {self.limit:g}"

    @property
    def limit(self) -> float:
        return float(self.above if self.above is not None else self.below)  # type: ignore[arg-type]

    def fired(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value > self.limit if self.above is not None else value < self.limit


@dataclass(frozen=True)
class Webhook:
    url: str
    retries: int = 3
    timeout: float = 5.0
    backoff: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"webhook url must start with http:// or https://: {self.url!r}"
            )
        if (
            isinstance(self.retries, bool)
            or not isinstance(self.retries, int)
            or not (0 <= self.retries <= 20)
        ):
            raise InvalidInputError("webhook retries must be an integer from 0 to 20")
        if not isinstance(self.timeout, int | float) or not 0 < self.timeout <= 300:
            raise InvalidInputError("webhook timeout must be between 0 and 300 seconds")

    def post(self, body: dict[str, Any]) -> bool:
        data = json.dumps(body, default=str).encode()
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(
                self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    if 200 <= resp.status < 300:
                        return True
            except (urllib.error.URLError, OSError) as exc:
                log.warning("webhook %s failed (attempt %d): %s", self.url, attempt + 1, exc)
            if attempt < self.retries:
                time.sleep(self.backoff * (2**attempt))
        return False


@dataclass(frozen=True)
class Alert:
    name: str
    rule: str
    metric: str
    value: float | None
    threshold: float
    window_start: float
    window_end: float
    result_id: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Alerts:
    rules: Sequence[Rule]
    webhooks: Sequence[Webhook] = ()
    events: Sequence[str] = ()
    log: bool = True
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    delivered: list[tuple[str, bool]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.rules = tuple(self.rules)
        self.webhooks = tuple(self.webhooks)
        self.events = tuple(self.events)
        for r in self.rules:
            if not isinstance(r, Rule):
                raise InvalidInputError(f"alert rules must be Rule objects, not {r!r}")
        from loopml.monitor.events import check_event_name

        for e in self.events:
            check_event_name(e)

    @classmethod
    def from_dict(cls, d: Any, where: str = "alerts") -> Alerts:
        if not isinstance(d, dict):
            raise InvalidInputError(f"{where} must be a mapping with 'rules'")
        unknown = set(d) - {"rules", "webhooks", "events", "log"}
        if unknown:
            raise InvalidInputError(f"{where}: unknown key(s) {sorted(unknown)}")
        rules_in = d.get("rules")
        if not isinstance(rules_in, list) or not rules_in:
            raise InvalidInputError(f"{where}: 'rules' must be a non-empty list")
        rules = []
        for i, r in enumerate(rules_in):
            if not isinstance(r, dict) or set(r) - {"metric", "above", "below", "name"}:
                raise InvalidInputError(
                    f"{where}: rules[{i}] must be a mapping of metric, above or below, name"
                )
            try:
                rules.append(Rule(**r))
            except TypeError as exc:
                raise InvalidInputError(f"{where}: rules[{i}]: {exc}") from None
            except InvalidInputError as exc:
                raise InvalidInputError(f"{where}: rules[{i}]: {exc}") from None
        hooks = []
        for i, h in enumerate(d.get("webhooks") or []):
            if not isinstance(h, dict) or set(h) - {"url", "retries", "timeout"}:
                raise InvalidInputError(f"{where}: webhooks[{i}] must have url (retries, timeout)")
            try:
                hooks.append(Webhook(**h))
            except TypeError as exc:
                raise InvalidInputError(f"{where}: webhooks[{i}]: {exc}") from None
        events = d.get("events") or []
        if not isinstance(events, list):
            raise InvalidInputError(f"{where}: 'events' must be a list of event names")
        flag = d.get("log", True)
        if not isinstance(flag, bool):
            raise InvalidInputError(f"{where}: 'log' must be true or false")
        return cls(rules, hooks, events, flag)

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Alerts:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"alerts YAML does not parse: {exc}") from None
        return cls.from_dict(data)

    # raising ---------------------------------------------------------------------------
    def evaluate(self, w: WindowReport) -> list[Alert]:
        out = []
        for r in self.rules:
            value = metric_value(w, r.metric)
            if r.fired(value):
                out.append(
                    Alert(
                        w.name,
                        r.label,
                        r.metric,
                        value,
                        r.limit,
                        w.start.timestamp(),
                        w.end.timestamp(),
                        w.id or "",
                    )
                )
        return out

    def evaluate_into(self, ws: Workspace, w: WindowReport) -> list[Alert]:
        """Evaluate the rules on a stored window; store and send every alert raised."""
        raised = self.evaluate(w)
        for a in raised:
            self._send(ws, a)
        return raised

    def _send(self, ws: Workspace, a: Alert) -> None:
        sinks: dict[str, Any] = {"log": self.log, "webhooks": [h.url for h in self.webhooks]}
        if self.log:
            log.warning(
                "alert %s on %s: %s = %s (limit %s) in window %s..%s",
                a.rule,
                a.name,
                a.metric,
                a.value,
                a.threshold,
                a.window_start,
                a.window_end,
            )
        fired = []
        if self.events:
            from loopml.monitor.events import fire

            for e in self.events:
                fired.append(fire(ws, e, a.to_dict()))
        sinks["events"] = dict(zip(self.events, fired, strict=True))
        with ws.write_engine.begin() as conn:
            conn.execute(
                insert(monitor_alerts).values(
                    result_id=a.result_id,
                    name=a.name,
                    rule=a.rule,
                    metric=a.metric,
                    value=a.value,
                    threshold=a.threshold,
                    window_start=a.window_start,
                    window_end=a.window_end,
                    sinks=sinks,
                    created_at=clock.now(),
                )
            )
        for h in self.webhooks:
            t = threading.Thread(
                target=self._deliver, args=(h, a), name="loopml-webhook", daemon=True
            )
            t.start()
            self._threads.append(t)

    def _deliver(self, hook: Webhook, a: Alert) -> None:
        ok = hook.post({"alert": a.to_dict()})
        self.delivered.append((hook.url, ok))

    def wait(self, timeout: float = 60.0) -> None:
        """Wait (up to ``timeout`` seconds in all) for webhook deliveries to finish."""
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))


def as_alerts(x: Any) -> Alerts:
    if isinstance(x, Alerts):
        return x
    if isinstance(x, str | Path):
        path = Path(x)
        if not path.is_file():
            raise InvalidInputError(f"no alerts file at {str(path)!r}")
        return Alerts.from_yaml(path.read_text())
    raise InvalidInputError("alerts must be an Alerts object or the path of an alerts YAML file")


def stored_alerts(ws: Workspace, name: str | None = None) -> list[dict[str, Any]]:
    q = select(monitor_alerts).order_by(monitor_alerts.c.id)
    if name is not None:
        q = q.where(monitor_alerts.c.name == name)
    with ws.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q).all()]
