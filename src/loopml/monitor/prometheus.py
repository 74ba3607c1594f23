"""Prometheus gauges of the latest stored window per monitored name, read at scrape time.

The inference server registers this collector on its ``/metrics``; the figures come from
the metadata store (what ``check``/``history``/``loopml monitor`` stored), so every
replica exports the same values. The shipped alerting rules and Grafana dashboard
(``loopml monitor grafana -o dir/``) use these names.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from loopml.store.metadata.tables import monitor_alerts, monitor_results
from loopml.store.workspace import Workspace

ASSETS = ("loopml-monitoring-rules.yml", "loopml-grafana-dashboard.json")


class MonitorCollector(Collector):
    """Gauges for the newest window of each of ``names`` (all names when empty)."""

    def __init__(self, workspace: Workspace, names: Sequence[str] = ()) -> None:
        self.ws = workspace
        self.names = tuple(names)

    def _latest(self) -> list[tuple[str, float, dict[str, object]]]:
        newest = select(
            monitor_results.c.name, func.max(monitor_results.c.window_end).label("end")
        ).group_by(monitor_results.c.name)
        if self.names:
            newest = newest.where(monitor_results.c.name.in_(self.names))
        sub = newest.subquery()
        q = (
            select(monitor_results.c.name, monitor_results.c.window_end, monitor_results.c.figures)
            .join(
                sub,
                (sub.c.name == monitor_results.c.name)
                & (sub.c.end == monitor_results.c.window_end),
            )
            .order_by(monitor_results.c.computed_at)
        )
        with self.ws.engine.connect() as conn:
            rows = conn.execute(q).all()
        latest: dict[str, tuple[str, float, dict[str, object]]] = {}
        for name, end, figures in rows:
            latest[name] = (name, float(end), dict(figures))  # newest computation wins
        return list(latest.values())

    def _alert_counts(self) -> dict[str, int]:
        q = select(monitor_alerts.c.name, func.count()).group_by(monitor_alerts.c.name)
        with self.ws.engine.connect() as conn:
            return {n: int(c) for n, c in conn.execute(q).all()}

    def collect(self) -> Iterator[Metric]:
        drift = GaugeMetricFamily(
            "loopml_monitor_drift_score",
            "Share of input columns drifted from the training data, newest window.",
            labels=["name"],
        )
        rows = GaugeMetricFamily(
            "loopml_monitor_rows", "Predicted rows in the newest window.", labels=["name"]
        )
        labelled = GaugeMetricFamily(
            "loopml_monitor_labelled_rows",
            "Rows with a ground-truth label in the newest window.",
            labels=["name"],
        )
        anomaly = GaugeMetricFamily(
            "loopml_monitor_anomaly_rate",
            "Share of rows hit by the most frequent input anomaly, newest window.",
            labels=["name"],
        )
        realised = GaugeMetricFamily(
            "loopml_monitor_performance",
            "Realised performance from labels, newest window.",
            labels=["name", "metric"],
        )
        estimated = GaugeMetricFamily(
            "loopml_monitor_estimated_performance",
            "Performance estimated by CBPE before labels, newest window.",
            labels=["name", "metric"],
        )
        latency = GaugeMetricFamily(
            "loopml_monitor_latency_ms",
            "Request latency quantiles of the logged predictions, newest window.",
            labels=["name", "quantile"],
        )
        end = GaugeMetricFamily(
            "loopml_monitor_window_end_timestamp_seconds",
            "End of the newest monitored window (epoch seconds).",
            labels=["name"],
        )
        alerts = GaugeMetricFamily(
            "loopml_monitor_alerts", "Alerts stored for this name so far.", labels=["name"]
        )
        for name, window_end, f in self._latest():
            if f.get("drift_score") is not None:
                drift.add_metric([name], float(f["drift_score"]))  # type: ignore[arg-type]
            rows.add_metric([name], float(f.get("rows") or 0))  # type: ignore[arg-type]
            labelled.add_metric([name], float(f.get("labelled_rows") or 0))  # type: ignore[arg-type]
            anomaly.add_metric([name], _anomaly_rate(f))
            for fam, key in ((realised, "performance"), (estimated, "estimated_performance")):
                for metric, value in dict(f.get(key) or {}).items():  # type: ignore[call-overload]
                    fam.add_metric([name, metric], float(value))
            for q, value in dict(f.get("latency_ms") or {}).items():  # type: ignore[call-overload]
                latency.add_metric([name, q], float(value))
            end.add_metric([name], window_end)
        for name, n in self._alert_counts().items():
            if not self.names or name in self.names:
                alerts.add_metric([name], float(n))
        yield from (drift, rows, labelled, anomaly, realised, estimated, latency, end, alerts)

    def describe(self) -> Iterable[Metric]:
        return []  # collected at scrape time; nothing to check at registration


def _anomaly_rate(f: dict[str, object]) -> float:
    quality = f.get("quality")
    n = float(f.get("rows") or 0)  # type: ignore[arg-type]
    if not isinstance(quality, dict) or not n:
        return 0.0
    counts = [a.get("count") or 0 for a in quality.get("anomalies", [])]
    return min(1.0, max(counts, default=0) / n)


def asset_text(name: str) -> str:
    return (importlib.resources.files("loopml.monitor") / "assets" / name).read_text()


def write_assets(directory: str | Path) -> list[Path]:
    """Write the Prometheus alerting rules and the Grafana dashboard into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ASSETS:
        path = out / name
        path.write_text(asset_text(name))
        written.append(path)
    return written
