"""Running the real CLI on a workspace, and what the importer tests read back from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from loopml.store.metadata import tables as t
from loopml.store.workspace import Workspace


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS")}
    env["LOOPML_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "loopml.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def open_ws(home: Path) -> Workspace:
    return Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))


def counts(home: Path) -> dict[str, int]:
    ws = open_ws(home)
    try:
        with ws.engine.connect() as conn:
            return {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in (
                    t.executions,
                    t.runs,
                    t.params,
                    t.tags,
                    t.metric_chunks,
                    t.latest_metrics,
                    t.artifacts,
                    t.events,
                    t.model_versions,
                    t.alias_events,
                )
            }
    finally:
        ws.close()


def assert_refused(home: Path, done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0]
    if (home / "loopml.db").exists():
        assert counts(home)["runs"] == 0
