"""trace() from a request id down to dataset digests; alerts to a real local webhook and
to the pipeline scheduler; alert rules from YAML, validated."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.demo.flights import FEATURES
from loopml.monitor import Monitor, trace
from loopml.monitor.alerts import Alerts, Rule, Webhook, stored_alerts
from loopml.pipelines import schedules
from loopml.pipelines.scheduler import Scheduler
from loopml.registry.model_registry import Registry
from loopml.tracking.tracker import Tracker
from tests.monitoring.conftest import Traffic


def test_trace_goes_from_request_id_to_dataset_digests(traffic: Traffic) -> None:
    rid, rows = next(iter(traffic.sent["delay-jul"].items()))
    t = trace(traffic.ws, rid)
    assert t.deployment == "delay-jul" and t.model == "delay" and t.version == 1
    assert len(t.rows) == rows.height
    for logged, sent in zip(t.rows, rows.iter_rows(named=True), strict=True):
        for col in ("temp", "carrier", "distance"):
            assert logged["inputs"][col] == pytest.approx(sent[col]) or (
                logged["inputs"][col] == sent[col]
            )
        assert logged["prediction"] in (0, 1) and len(logged["proba"]) == 2
    mv = Registry(traffic.ws).get_version("delay", 1)
    assert t.model_digest == mv.digest
    downstream = traffic.ws.lineage.graph(mv.artifact_id, "downstream")
    assert t.log_artifact_id in downstream.artifacts  # the log file hangs off the model
    assert t.rows[0]["event_time"] is not None
    assert t.run_id == traffic.run_id and t.run_params == {"max_iter": "20"}
    tracker = Tracker(traffic.ws)
    run = tracker.get_run(traffic.run_id)
    tracker.close()
    if run.git_commit is not None:
        assert t.code_version is not None and t.code_version.startswith(run.git_commit)
    assert [(d.ref, d.digest) for d in t.datasets] == [("flights-jan:1", traffic.dataset_digest)]
    assert set(t.rows[0]["inputs"]) == set(FEATURES)
    json.dumps(t.to_dict(), default=str)
    with pytest.raises(NotFoundError, match="no logged prediction"):
        trace(traffic.ws, "no-such-request")
    with pytest.raises(InvalidInputError):
        trace(traffic.ws, "")


class _Hook(BaseHTTPRequestHandler):
    bodies: list[Any] = []
    failures_left = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        type(self).bodies.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[str, type[_Hook]]]:
    class Hook(_Hook):
        bodies: list[Any] = []
        failures_left = 1

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Hook
    server.shutdown()
    server.server_close()


def test_alerts_reach_a_real_webhook_the_log_and_the_scheduler(
    traffic: Traffic, listener: tuple[str, type[_Hook]], tmp_path: Path
) -> None:
    url, hook = listener
    counter = str(tmp_path / "count")
    schedules.add_event_trigger(
        traffic.ws,
        "retrain-on-drift",
        "tests.pipelines.flows:retrying",
        "delay-drifted",
        params={"counter": counter, "failures": 0},
    )
    alerts = Alerts.from_yaml(
        f"""
rules:
  - metric: drift_score
    above: 0.05
  - metric: rows
    below: 100000
  - metric: performance.roc_auc
    below: 0.01
webhooks:
  - url: {url}
    retries: 2
events: [delay-drifted]
"""
    )
    monitor = Monitor(traffic.ws)  # fresh: the window is computed, so alerts are evaluated
    from loopml.store.metadata.tables import monitor_results

    with traffic.ws.write_engine.begin() as conn:  # forget stored results of delay-jul
        conn.execute(monitor_results.delete().where(monitor_results.c.name == "delay-jul"))
    w = monitor.check("delay-jul", on_result=lambda w: alerts.evaluate_into(traffic.ws, w))
    alerts.wait(60)
    stored = stored_alerts(traffic.ws, "delay-jul")
    assert {a["metric"] for a in stored} == {"drift_score", "rows"}
    drift = next(a for a in stored if a["metric"] == "drift_score")
    assert drift["value"] == pytest.approx(w.drift_score) and drift["threshold"] == 0.05
    assert drift["window_start"] == w.start.timestamp() and drift["result_id"] == w.id
    assert sorted(b["alert"]["metric"] for b in hook.bodies) == ["drift_score", "rows"]
    assert hook.failures_left == 0  # the first POST failed and was retried
    fired = Scheduler(traffic.ws).tick()
    assert len(fired) == 1 and fired[0].reason.startswith("event delay-drifted#")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: []", "non-empty list"),
        ("rules: [{metric: drift, above: 1}]", "unknown alert metric"),
        ("rules: [{metric: drift_score}]", "exactly one of above or below"),
        ("rules: [{metric: drift_score, above: 1, below: 0}]", "exactly one"),
        ("rules: [{metric: drift_score, above: x}]", "must be a number"),
        ("rules: [{metric: rows, below: 1, extra: 2}]", "rules\\[0\\]"),
        ("rules: [{metric: rows, below: 1}]\nwebhooks: [{url: ftp://x}]", "http://"),
        ("rules: [{metric: rows, below: 1}]\nevents: ['bad name!']", "not a valid event name"),
        ("rules: [{metric: rows, below: 1}]\nsurprise: 1", "unknown key"),
        ("rules: [", "does not parse"),
        ("- just a list", "mapping"),
    ],
)
def test_bad_alert_declarations_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Alerts.from_yaml(text)


def test_alerts_in_code() -> None:
    a = Alerts([Rule("estimated.roc_auc", below=0.7)], webhooks=[Webhook("http://127.0.0.1:1/x")])
    assert a.rules[0].label == "estimated.roc_auc < 0.7"
    with pytest.raises(InvalidInputError, match="retries"):
        Webhook("http://127.0.0.1:1/x", retries=-1)
