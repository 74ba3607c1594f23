"""Prometheus metrics of one server, on its own CollectorRegistry (never the global one).

With several worker processes each worker's values live in memory-mapped files under one
directory (prometheus-client's multiprocess mode, switched on by the supervisor before the
workers import prometheus-client), and ``/metrics`` on any worker sums them all.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._extra: list[Collector] = []
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "loopml_requests",
            "Requests answered, by protocol, endpoint and status code.",
            ["protocol", "endpoint", "code"],
            registry=r,
        )
        self.errors = Counter(
            "loopml_request_errors",
            "Requests answered with an error, by protocol, endpoint and status code.",
            ["protocol", "endpoint", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "loopml_request_latency_seconds",
            "Time from request received to response ready.",
            ["protocol", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "loopml_predicted_rows",
            "Rows predicted, by model version and role (primary, canary, shadow).",
            ["model", "version", "role"],
            registry=r,
        )
        self.inference_latency = Histogram(
            "loopml_inference_latency_seconds",
            "Time from a checked input to its prediction (queueing + batch + model).",
            ["model", "role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "loopml_batch_rows",
            "Rows per model call after micro-batching.",
            ["model", "role"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "loopml_batch_requests",
            "Requests combined into one model call.",
            ["model", "role"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.served_version = Gauge(
            "loopml_served_model_version",
            "The model version each role serves (the value is the version number).",
            ["model", "ref", "role"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.log_pending = Gauge(
            "loopml_prediction_log_pending_rows",
            "Predicted rows not yet written to the prediction log.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_written = Counter(
            "loopml_prediction_log_rows",
            "Predicted rows written to the prediction log.",
            registry=r,
        )
        self.shed = Counter(
            "loopml_requests_shed",
            "Inference requests refused with 503 because too many were waiting for the model.",
            registry=r,
        )
        self.feedback = Counter(
            "loopml_feedback_labels", "Ground-truth labels received.", registry=r
        )

    def add_collector(self, collector: Collector) -> None:
        """Export ``collector`` too (monitoring's gauges); in multiprocess mode as well."""
        self.registry.register(collector)
        self._extra.append(collector)

    def observe_request(self, protocol: str, endpoint: str, code: int, seconds: float) -> None:
        self.requests.labels(protocol, endpoint, str(code)).inc()
        if code >= 400:
            self.errors.labels(protocol, endpoint, str(code)).inc()
        self.latency.labels(protocol, endpoint).observe(seconds)

    def render(self) -> bytes:
        if self.multiprocess_dir and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined, path=self.multiprocess_dir)
            for collector in self._extra:
                combined.register(collector)
            return generate_latest(combined)
        return generate_latest(self.registry)
