"""The CLI (monitor table + HTML report, trace, grafana assets) and the real Prometheus:
it loads the shipped rules and scrapes the monitoring gauges off the inference server."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from loopml.cli.app import main
from loopml.monitor import check
from loopml.serving.options import ServeOptions
from loopml.serving.server import ServerThread
from tests import needs
from tests.monitoring.conftest import Traffic
from tests.servers import free_port


@pytest.fixture
def cli_env(traffic: Traffic, monkeypatch: pytest.MonkeyPatch) -> Traffic:
    monkeypatch.delenv("LOOPML_HOME", raising=False)
    monkeypatch.setenv("LOOPML_DB", traffic.ws.db_url)
    monkeypatch.setenv("LOOPML_ARTIFACTS", traffic.ws.artifacts_url)
    return traffic


def test_monitor_prints_windows_and_writes_an_offline_html_report(
    cli_env: Traffic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    assert main(["monitor", "delay-jul", "--html", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "delay-jul: 12 window(s) of 1d" in printed
    text = report.read_text()
    assert "Drift per input column" in text and "Realised (perf_)" in text and "Latency" in text
    # Plotly's library is inlined (megabytes), nothing is loaded from elsewhere.
    assert "<script src=" not in text and "Plotly" in text and len(text) > 1_000_000


def test_monitor_refuses_bad_input_cleanly(
    cli_env: Traffic, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", "no-such-thing"]) == 1  # not found: not a usage mistake
    assert "no served traffic for 'no-such-thing'" in capsys.readouterr().err
    assert main(["monitor", "delay-jan", "--window", "3h"]) == 2
    assert "whole UTC days" in capsys.readouterr().err
    assert main(["trace", "nope"]) == 1
    assert "no logged prediction" in capsys.readouterr().err


def test_trace_cli_prints_the_lineage(cli_env: Traffic, capsys: pytest.CaptureFixture[str]) -> None:
    rid = next(iter(cli_env.sent["delay-jan"]))
    assert main(["trace", rid, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["request_id"] == rid and data["datasets"][0]["digest"] == cli_env.dataset_digest


def test_grafana_assets_are_written_and_promtool_accepts_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", "grafana", "-o", str(tmp_path / "out")]) == 0
    rules = tmp_path / "out" / "loopml-monitoring-rules.yml"
    dashboard = json.loads((tmp_path / "out" / "loopml-grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("loopml_monitor_drift_score" in e for e in exprs)
    promtool = needs.program("promtool", "Debian package prometheus")
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_prometheus_loads_the_rules_and_scrapes_the_gauges(
    traffic: Traffic, tmp_path: Path
) -> None:
    binary = needs.program("prometheus", "Debian package prometheus")
    w = check(traffic.ws, "delay-jan")  # a stored window for the server to export
    assert w.drift_score is not None
    from loopml.monitor.prometheus import write_assets

    write_assets(tmp_path)
    options = ServeOptions("delay@champion", port=0, deployment="delay-jan")
    with ServerThread(traffic.ws, options) as server:
        target = server.url.removeprefix("http://")
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [loopml-monitoring-rules.yml]\n"
            f"scrape_configs: [{{job_name: loopml, static_configs: [{{targets: ['{target}']}}]}}]\n"
        )
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            api = f"http://127.0.0.1:{port}/api/v1"
            deadline = time.monotonic() + 90
            value = groups = None
            while time.monotonic() < deadline and (value is None or not groups):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.5)
                try:
                    q = httpx.get(
                        f"{api}/query",
                        params={"query": 'loopml_monitor_drift_score{name="delay-jan"}'},
                    ).json()
                    found = q["data"]["result"]
                    value = float(found[0]["value"][1]) if found else None
                    groups = httpx.get(f"{api}/rules").json()["data"]["groups"]
                except (httpx.HTTPError, KeyError, ValueError):
                    continue
            assert value == pytest.approx(w.drift_score)
            assert groups and groups[0]["name"] == "loopml-monitoring"
            assert len(groups[0]["rules"]) == 8
            assert all(r["health"] != "err" for r in groups[0]["rules"])
        finally:
            proc.terminate()
            proc.wait(30)
