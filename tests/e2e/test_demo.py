"""`loopml demo` in a fresh folder, as a new user would run it: the whole loop on
nycflights13 through the real server. Checks outcomes, never how long anything took."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopml.registry.model_registry import Registry
from loopml.retraining.records import LoopStore
from loopml.retraining.traffic import Traffic
from loopml.serving.deployment import _bucket
from loopml.store.workspace import Workspace

MONTH_LINE = re.compile(r"^\s+(\d{1,2})\s+([\d,]+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S.*)$", re.M)


@pytest.mark.slow
# About 2 minutes of CPU: 7 min wall at load average 20 on 2 shared cores; the deadline
# leaves a busy CI machine more than twice that.
@pytest.mark.timeout(1260)
def test_demo_runs_the_loop_month_by_month(tmp_path: Path) -> None:
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "COLUMNS": "250",
        "HOME": str(tmp_path),
        # The code under test, also when it is a checkout on PYTHONPATH.
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    }
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout

    # One line per replayed month: rows, drift score, estimated and realised AUC, action.
    lines = {int(m.group(1)): m for m in MONTH_LINE.finditer(out)}
    assert sorted(lines) == list(range(3, 13)), out[-3000:]
    for month, line in lines.items():
        assert int(line.group(2).replace(",", "")) > 20_000, month
        assert 0 <= float(line.group(3)) <= 1
        assert 0.5 < float(line.group(4)) < 1 and 0.5 < float(line.group(5)) < 1
    assert "the loop vs never retraining" in out and "mean" in out

    home = tmp_path / ".loopml"
    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    try:
        registry = Registry(ws)
        assert len(registry.versions("delay-model")) >= 2
        # The first promotion went through the gate, on flights the model was not trained on.
        first = registry.history("delay-model", "champion")[0]
        assert first.to_version == 1 and first.allowed and not first.forced
        assert first.gate_result is not None and first.gate_result["passed"]
        decisions = LoopStore(ws).decisions("delay-model")
        assert sorted({d.tick for d in decisions}) == list(range(1, 11))  # a tick a month
        assert all(d.reasons for d in decisions)
        kinds = {d.kind for d in decisions}
        assert {"trigger", "retrain", "gate"} <= kinds
        # Decisions are dated by the data's time (the end of each month of 2013).
        assert min(d.at for d in decisions) == datetime(2013, 4, 1, tzinfo=UTC).timestamp()
        # Every answer was logged with its flight's departure hour as event time.
        traffic = Traffic(ws, "delay-model")
        times = traffic.predictions["t"]
        assert times.min() >= datetime(2013, 3, 1, tzinfo=UTC).timestamp()  # type: ignore[operator]
        assert times.max() < datetime(2014, 1, 1, tzinfo=UTC).timestamp()  # type: ignore[operator]
        assert traffic.labels.height == traffic.predictions.height
        # The server took the canary share from the loop (10%): a request went to the canary
        # exactly when its id's bucket is below 10.
        roles = traffic.predictions.unique("request_id")
        for request_id, role in zip(roles["request_id"], roles["role"], strict=True):
            assert (role == "canary") == (_bucket(request_id) < 10), request_id
    finally:
        ws.close()
    report = tmp_path / "loopml-report.html"
    assert report.exists() and "plotly" in report.read_text().lower()


IMPOSSIBLE_GATE = """\
name: impossible
target: delayed
checks:
  - type: threshold
    metric: roc_auc
    min: 0.99
"""


@pytest.mark.slow
def test_demo_stops_before_serving_when_the_gate_refuses_the_first_model(
    tmp_path: Path,
) -> None:
    (tmp_path / "gate.yaml").write_text(IMPOSSIBLE_GATE)
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "COLUMNS": "250",
        "HOME": str(tmp_path),
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    }
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "demo", "--gate", "gate.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    said = done.stdout + done.stderr
    assert "Traceback" not in said
    assert "gate 'impossible' refused delay-model:1 for champion" in said
    assert "serves nothing" in said
    assert "FAIL  roc_auc >= 0.99" in done.stdout
    assert "server http" not in said

    home = tmp_path / ".loopml"
    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    try:
        registry = Registry(ws)
        assert [v.version for v in registry.versions("delay-model")] == [1]
        assert registry.aliases("delay-model") == {}  # nothing to serve
        history = registry.history("delay-model")
        assert [(e.alias, e.allowed) for e in history] == [("champion", False)]
        assert Traffic(ws, "delay-model").predictions.is_empty()  # nothing was served
        assert LoopStore(ws).all() == []  # the loop never started
    finally:
        ws.close()
    assert not (tmp_path / "loopml-report.html").exists()
