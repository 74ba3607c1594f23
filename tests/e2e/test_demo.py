"""`loopml demo` in a fresh folder, as a new user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


@pytest.mark.slow
# Three demos at once on a loaded 2-core machine took over ten minutes: the deadline is
# there to stop a hung demo, not to judge its speed.
@pytest.mark.timeout(2400)
def test_demo_trains_tracks_and_prints_a_summary(tmp_path: Path) -> None:
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "COLUMNS": "200",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=2100,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "holdout_auc" in done.stdout
    home = tmp_path / ".loopml"
    tracker = Tracker(Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts")))
    runs = tracker.search_runs("flights-delay")
    assert len(runs) >= 1
    run = runs[-1]
    assert run.status == "finished"
    # real data, real model: better than chance on a month it never saw, but not magic
    assert 0.6 < run.metrics["holdout_auc"] < 0.8
    # scikit-learn scores the initial model too: one point more than iterations
    assert len(tracker.metric_history(run.id, "validation_auc")) == int(run.metrics["n_iter"]) + 1
    assert f"loopml runs show {run.id}" in done.stdout
    # Every gate check is deterministic but the smoke test's timing, and its limit is far
    # above any load: the gate passed, so the demo went on to serve.
    assert "promoted" in done.stdout and "not promoted" not in done.stdout
    assert "Workspace(" not in done.stdout


def test_the_demo_stops_with_a_clear_message_when_the_gate_refuses(tmp_path: Path) -> None:
    """The stop itself, without the ten minutes of a whole demo: a refused promotion."""
    import numpy as np
    import polars as pl
    from sklearn.linear_model import LogisticRegression

    from loopml.cli.app import main
    from loopml.demo.run import DemoStoppedError, require_promoted
    from loopml.models.gates import Gate, Threshold
    from loopml.models.promotion import promote
    from loopml.models.registry import Registry

    ws = Workspace(f"sqlite:///{tmp_path / 'loopml.db'}", str(tmp_path / "artifacts"))
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"a": rng.normal(size=80), "delayed": rng.integers(0, 2, 80)})
    model = LogisticRegression().fit(frame.select("a").to_pandas(), frame["delayed"])
    mv = Registry(ws).register("delay-model", model, frame.select("a").to_pandas())
    gate = Gate((Threshold("roc_auc", min=0.99),), target="delayed")
    result = promote(ws, "delay-model", mv.version, "champion", gate=gate, data=frame)
    assert not result.allowed
    with pytest.raises(DemoStoppedError) as stopped:
        require_promoted(result)
    message = str(stopped.value)
    assert "gate refused delay-model:1 for champion" in message
    assert "loopml models show delay-model:1" in message
    assert main(["--version"]) == 0  # the CLI maps the error like any other: see test_cli
    ws.close()
