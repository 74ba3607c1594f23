"""``loopml loop run`` and ``loopml loop status``, in-process through the CLI's main."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.cli.app import EXIT_USER_ERROR, main
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
    "args, message",
    [
        (["loop", "run", "myloop"], "not a loop reference"),
        (["loop", "run", "nosuch:loop"], "no such module"),
        (["loop", "run", "myloop:missing"], "has no 'missing'"),
        (["loop", "run", "myloop:not_a_loop"], "not an lm.Loop"),
        (["loop", "run", "myloop:loop", "--every", "soon"], "not a duration"),
        (["loop", "run", "myloop:loop", "--ticks", "-1"], "--ticks"),
        (["loop", "status", "nosuch"], "no loop named 'nosuch'"),
        (["loop", "status", "--limit", "0"], "--limit"),
    ],
)
def test_mistakes_are_one_clear_line(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
