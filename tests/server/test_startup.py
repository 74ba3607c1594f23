"""A server process keeps what its startup built out of garbage collection (create_app's
``freeze_after_start``, set by ``loopml server``); an app inside a test process does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import gc, sys, threading
from fastapi.testclient import TestClient
from loopml.server.app import create_app
from loopml.store.workspace import Workspace

ws = Workspace(f"sqlite:///{sys.argv[1]}/db.sqlite", f"{sys.argv[1]}/artifacts")
app = create_app(ws, freeze_after_start=sys.argv[2] == "yes")
with TestClient(app) as c:
    assert c.post("/api/2.0/mlflow/experiments/search", json={}).status_code == 200
    for thread in threading.enumerate():
        if thread.name == "loopml-warm-imports":
            thread.join(timeout=120)
    print(gc.get_freeze_count())
ws.close()
"""


@pytest.mark.parametrize("freeze", ["yes", "no"])
def test_startup_objects_are_frozen_only_in_a_server_process(tmp_path: Path, freeze: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), freeze],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    frozen = int(done.stdout.strip().splitlines()[-1])
    assert (frozen > 10_000) is (freeze == "yes"), frozen
