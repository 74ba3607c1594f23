"""``loopml loop run`` and ``loopml loop status``, in-process through the CLI's main."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loopml.cli.app import EXIT_USER_ERROR, main
from loopml.retraining.records import LoopStore
from loopml.store.workspace import Workspace

LOOP_MODULE = """
import loopml as lm
from tests.retraining import flows

loop = lm.Loop(
    "delay",
    flows.retrain,
    triggers=[lm.monitoring.NewLabels(min_rows=10), lm.monitoring.Every("7d")],
    name="nightly",
    pipeline_params={"months": [1, 7]},
)
not_a_loop = 3
"""


@pytest.fixture
def project(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "myloop.py").write_text(LOOP_MODULE.replace("lm.retraining_triggers", "lm"))
    monkeypatch.setenv("LOOPML_DB", ws.db_url)
    monkeypatch.setenv("LOOPML_ARTIFACTS", ws.artifacts_url)
    monkeypatch.delenv("LOOPML_HOME", raising=False)
    monkeypatch.chdir(folder)
    return folder


def test_run_ticks_and_status_shows_the_decisions(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["loop", "run", "myloop:loop", "--ticks", "2", "--every", "1s"]) == 0
    out = capsys.readouterr().out
    assert "tick 1: hold" in out and "tick 2: hold" in out
    assert "0 labelled rows since the last retrain (fewer than 10)" in out
    assert main(["loop", "status"]) == 0
    out = capsys.readouterr().out
    words = " ".join(out.split())  # table cells wrap with the terminal's width
    assert "nightly" in words and "steady" in words and "champion" in words
    assert "no trigger fired" in words
    assert out.count("no trigger fired") == 2  # one decision a tick
    assert main(["loop", "status", "nightly", "--limit", "1"]) == 0
    assert "latest 1 decision(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["loop", "run", "myloop"], "not a loop reference", EXIT_USER_ERROR),
        (["loop", "run", "nosuch:loop"], "no such module", 1),
        (["loop", "run", "myloop:missing"], "has no 'missing'", 1),
        (["loop", "run", "myloop:not_a_loop"], "not an lm.Loop", EXIT_USER_ERROR),
        (["loop", "run", "myloop:loop", "--every", "soon"], "not a duration", EXIT_USER_ERROR),
        (["loop", "run", "myloop:loop", "--ticks", "-1"], "--ticks", EXIT_USER_ERROR),
        (["loop", "status", "nosuch"], "no loop named 'nosuch'", 1),
        (["loop", "status", "--limit", "0"], "--limit", EXIT_USER_ERROR),
    ],
)
def test_mistakes_are_one_clear_line(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
    code: int,
) -> None:
    # Usage mistakes exit 2, something that does not exist 1 (the error table's codes).
    assert main(args) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_status_names_the_process_that_ticks_a_loop(
    project: Path,
    ws: Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loop module binds its workspace when imported: import it afresh for this one.
    monkeypatch.delitem(sys.modules, "myloop", raising=False)
    assert main(["loop", "run", "myloop:loop", "--ticks", "1"]) == 0
    assert "ticking as pid" in capsys.readouterr().out
    LoopStore(ws).acquire("nightly", "pid 9 on elsewhere (abc)", ttl=60)
    assert main(["loop", "status"]) == 0
    assert "loop nightly is being ticked by pid 9 on elsewhere" in capsys.readouterr().out
    # Meanwhile this process may not tick it: it names the holder and does nothing.
    assert main(["loop", "run", "myloop:loop", "--ticks", "1"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "is being ticked by pid 9 on elsewhere (abc)" in err and "Traceback" not in err
