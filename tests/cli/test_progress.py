"""Long work reports progress: ``data add``/``data verify`` and ``pipeline run`` feed bars
on a terminal (the CLI under a real pseudo-terminal) and print none when piped; the calls
the library makes reach their totals."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from loopml.core.progress import Progress
from loopml.data.catalog import Catalog
from loopml.pipelines.runner import run_pipeline
from loopml.store.workspace import Workspace
from tests.pipelines import flows

Calls = list[tuple[str, int, int]]


def recorder() -> tuple[Calls, Progress]:
    calls: Calls = []

    def progress(stage: str, done: int, total: int) -> None:
        calls.append((stage, done, total))

    return calls, progress


def last(calls: Calls, stage: str) -> tuple[int, int]:
    seen = [(d, t) for s, d, t in calls if s == stage]
    assert seen, f"no progress for {stage!r} in {sorted({s for s, _, _ in calls})}"
    dones = [d for d, _ in seen]
    assert dones == sorted(dones), f"{stage} went backwards: {dones}"
    return seen[-1]


@pytest.fixture
def table_files(tmp_path: Path) -> Path:
    folder = tmp_path / "parts"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, rows in enumerate((1_000, 2_500, 4_000)):
        pl.DataFrame({"x": rng.random(rows), "k": rng.integers(0, 9, rows)}).write_parquet(
            folder / f"part-{i}.parquet"
        )
    return folder


def test_add_append_and_verify_report_up_to_their_totals(
    workspace: Workspace, table_files: Path
) -> None:
    catalog = Catalog(workspace)
    calls, progress = recorder()
    ds = catalog.add("t", table_files, progress=progress)
    assert last(calls, "profiling rows") == (7_500, 7_500)
    assert last(calls, "storing files") == (3, 3)
    assert ds.num_rows == 7_500

    calls, progress = recorder()
    catalog.append("t", pl.DataFrame({"x": [0.5], "k": [1]}), progress=progress)
    assert last(calls, "profiling rows") == (1, 1)
    assert last(calls, "storing files") == (1, 1)

    calls, progress = recorder()
    report = catalog.verify(progress=progress)
    done, total = last(calls, "re-hashing dataset blobs")
    assert done == total > 0
    done_other, total_other = last(calls, "re-hashing other blobs")
    assert done_other == total_other
    assert report.ok and report.versions == 2


def test_pipeline_progress_counts_executed_and_cached_steps(loopml_home: Path) -> None:
    from loopml.api import fluent

    for expected_status in ("executed", "cached"):
        calls, progress = recorder()
        result = run_pipeline(
            fluent.workspace(),
            flows.training,
            {"depth": 2},
            tracker=fluent.tracker(),
            progress=progress,
        )
        assert last(calls, "steps") == (3, 3), expected_status
        assert {s.status for s in result.steps.values()} == {expected_status}


def _run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """The real CLI with stderr on a pseudo-terminal (where Rich draws bars)."""
    main, follower = os.openpty()
    proc = subprocess.Popen(
        [shutil.which("loopml") or "loopml", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    stdout = proc.communicate(timeout=120)[0].decode()
    return proc.returncode, stdout, b"".join(chunks).decode(errors="replace")


def test_the_cli_draws_bars_on_a_terminal_and_nothing_when_piped(
    loopml_home: Path, table_files: Path
) -> None:
    code, stdout, terminal = _run_on_a_terminal(
        ["data", "add", "t", str(table_files)], loopml_home.parent
    )
    assert code == 0 and "added t:1" in stdout
    for stage in ("profiling rows", "storing files"):
        assert stage in terminal
    assert re.search(r"7,?500/7,?500", terminal), terminal[-2000:]

    code, stdout, terminal = _run_on_a_terminal(["data", "verify"], loopml_home.parent)
    assert code == 0 and "ok" in stdout and "re-hashing dataset blobs" in terminal

    piped = subprocess.run(
        [shutil.which("loopml") or "loopml", "data", "verify"],
        cwd=loopml_home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0 and piped.stderr == ""
