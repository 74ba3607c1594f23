"""The README's tour runs as written, top to bottom, in an empty folder.

Python blocks run in one namespace, in order, as a reader pasting them into one session would
run them; a block whose first line is ``# name.py`` is the file the text asks to save. Each
line of a bash block after the install commands at the top runs through the CLI's ``main``
(commands separated by ``;`` one by one) and must exit 0. Only the commands that run
until stopped (``serve``, ``ui``, ``server``, ``loop run``) are left out: their own tests
start them.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from loopml.cli.app import main

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
RUNS_UNTIL_STOPPED = ({"serve"}, {"ui"}, {"server"}, {"loop", "run"})


def blocks() -> list[tuple[str, str]]:
    found = [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]
    # The first block is the two install-and-run commands: the test suite cannot run itself.
    assert found[0][0] == "bash" and "pip install" in found[0][1]
    return found[1:]


def commands(script: str) -> list[list[str]]:
    out = []
    for line in script.splitlines():
        for part in line.split(";"):
            words = shlex.split(part, comments=True)
            if words:
                assert words[0] == "loopml", f"the README's bash blocks run loopml, not {part!r}"
                out.append(words[1:])
    return out


def test_readme_names_nothing_outside_the_repository() -> None:
    text = README.read_text()
    assert "../" not in text and "/work/" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in target:
            assert (README.parent / target).exists(), f"README links to missing {target}"


def test_readme_top_keeps_exactly_the_two_commands() -> None:
    text = README.read_text()
    top = BLOCK.search(text)
    assert top is not None
    assert top.group(2).strip().splitlines() == [
        "python -m pip install -e . && loopml demo",
        "python -m pip install -e '.[test]' && python -m pytest -n 2",
    ]


@pytest.mark.slow
def test_the_tour_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("LOOPML_HOME", "LOOPML_DB", "LOOPML_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    # A script run from this folder has it on sys.path: `from flows import training`.
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {"__name__": "__readme__"}
    ran_python = ran_cli = 0
    try:
        for lang, body in blocks():
            if lang == "python":
                first = body.splitlines()[0]
                if re.fullmatch(r"# [\w.]+\.py", first):
                    (tmp_path / first[2:]).write_text(body)
                    continue
                exec(compile(body, f"README python block {ran_python + 1}", "exec"), namespace)
                ran_python += 1
            elif lang == "bash":
                for args in commands(body):
                    if any(words <= set(args[:2]) for words in RUNS_UNTIL_STOPPED):
                        continue
                    code = main(args)
                    captured = capsys.readouterr()
                    assert code == 0, (args, captured.out[-2000:], captured.err[-2000:])
                    ran_cli += 1
    finally:
        sys.modules.pop("flows", None)
    assert ran_python >= 4 and ran_cli >= 15
    assert (tmp_path / ".loopml" / "loopml.db").is_file()
    assert (tmp_path / "build" / "Dockerfile").is_file() and (tmp_path / "drift.html").is_file()
