"""`loopml demo` in a fresh folder, as a new user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker


@pytest.mark.slow
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
        timeout=600,
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
