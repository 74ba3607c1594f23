"""The CLI, in-process through ``main`` (the same function the ``loopml`` script runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import loopml as lm
from loopml.cli.app import EXIT_USER_ERROR, main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def two_runs(loopml_home: Path) -> list[str]:
    ids = []
    for depth, auc in ((4, 0.71), (8, 0.77)):
        with lm.start_run("flights", name=f"depth-{depth}", params={"depth": depth}) as run:
            run.log_metric("auc", auc)
        ids.append(run.id)
    return ids


def test_runs_ls_show_compare(two_runs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "runs", "ls", "-e", "flights")
    assert code == 0
    assert "2 runs in flights" in out and "depth-4" in out and "0.77" in out
    code, out, _ = run_cli(capsys, "runs", "ls", "--filter", "metrics.auc > 0.75")
    assert code == 0 and "depth-8" in out and "depth-4" not in out
    code, out, _ = run_cli(capsys, "runs", "show", two_runs[0][:12])
    assert code == 0 and two_runs[0] in out and "depth" in out and "0.71" in out
    code, out, _ = run_cli(capsys, "runs", "compare", *two_runs)
    assert code == 0 and "params.depth *" in out


@pytest.mark.parametrize(
    "args, message, exit_code",
    [
        # A malformed request is a usage mistake (2, as Click); a missing thing is not (1).
        (["runs", "ls", "--filter", "metrics.auc >"], "cannot parse filter", 2),
        (["runs", "show", "0" * 32], "no run with id", 1),
        (["runs", "ls", "--limit", "0"], "limit must be", 2),
        (["models", "promote", "m:1", "2"], "give the version once", 2),
    ],
)
def test_user_mistakes_are_one_line_errors_not_tracebacks(
    two_runs: list[str],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
    exit_code: int,
) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == exit_code
    assert message in err
    assert "Traceback" not in err + out


def test_doctor_and_migrate(loopml_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 0
    assert "metadata" in out and "artifacts" in out and "FAILED" not in out
    assert "LOOPML_HOME" in out
    code, out, _ = run_cli(capsys, "migrate")
    assert code == 0 and "schema revision" in out


def test_doctor_reports_a_broken_config_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOPML_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_DB", "mysql://nobody@nowhere/db")
    code, _, err = run_cli(capsys, "doctor")
    assert code == EXIT_USER_ERROR
    assert "unsupported metadata database" in err


def test_installed_entry_point_runs(loopml_home: Path) -> None:
    script = Path(sys.executable).parent / "loopml"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "loopml.cli"]
    lm.start_run("warm-up").end()  # the workspace exists: the lookup itself fails
    done = subprocess.run([*cmd, "runs", "show", "nope"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "no run with id 'nope'" in done.stderr
    assert "Traceback" not in done.stderr
    version = subprocess.run([*cmd, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("loopml ")
