"""A pipeline run as a script (``python my_flow.py``) and by name share references and cache;
parameters of the wrong type are refused before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from loopml.cli import pipeline_cmd
from loopml.core.errors import InvalidInputError
from loopml.pipelines import records, schedules
from loopml.pipelines.module_names import name_of_file
from loopml.store.workspace import Workspace
from tests.pipelines import flows

SCRIPT = """
    from __future__ import annotations
    import loopml.api.pipelines as lm

    @lm.step
    def numbers(n: int) -> list[int]:
        return list(range(n))

    @lm.step
    def total(values: list[int], scale: int) -> int:
        return sum(values) * scale

    @lm.pipeline
    def training(n: int = 4, scale: int = 2):
        return total(numbers(n), scale)

    if __name__ == "__main__":
        run = training.run(n=5)
        print("ran", run.id, run.executed)
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS")}
    env["LOOPML_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


@pytest.mark.slow
def test_a_script_run_and_a_named_run_share_the_cache(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_flow.py").write_text(textwrap.dedent(SCRIPT))
    home = tmp_path / "home"
    env = _env(home)
    script = subprocess.run(
        [sys.executable, "my_flow.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert script.returncode == 0, script.stderr
    assert "['numbers', 'total']" in script.stdout
    by_name = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "pipeline", "run", "my_flow:training", "-p", "n=5"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert by_name.returncode == 0, by_name.stderr
    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    named, scripted = records.list_runs(ws)
    assert scripted.ref == named.ref == "my_flow:training"
    assert named.cached == ["numbers", "total"] and named.executed == []
    for node in ("numbers", "total"):
        assert named.steps[node].code_version == scripted.steps[node].code_version
    ws.close()


def test_the_name_of_a_file_is_its_dotted_path_below_its_packages(tmp_path: Path) -> None:
    pkg = tmp_path / "proj" / "flows"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").touch()
    (pkg / "train.py").touch()
    (tmp_path / "proj" / "solo.py").touch()
    assert name_of_file(pkg / "train.py") == "flows.train"
    assert name_of_file(tmp_path / "proj" / "solo.py") == "solo"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"depth": "abc"}, "parameter depth must be int, got str 'abc'"),
        ({"depth": True}, "parameter depth must be int, got bool True"),
        ({"month": 1.5}, "parameter month must be int, got float 1.5"),
    ],
)
def test_a_parameter_of_the_wrong_type_is_refused_before_the_run(
    workspace: Workspace, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        flows.training.run(workspace=workspace, **params)
    assert records.list_runs(workspace) == []  # nothing started, nothing recorded
    with pytest.raises(InvalidInputError, match=message):
        schedules.add_cron(
            workspace, "n", "tests.pipelines.flows:training", "0 3 * * *", params=params
        )


def test_cli_names_the_parameter_and_its_type(loopml_home: Path) -> None:
    app = typer.Typer()
    app.add_typer(pipeline_cmd.app, name="pipeline")
    result = CliRunner().invoke(
        app, ["pipeline", "run", "tests.pipelines.flows:training", "-p", "depth=abc"]
    )
    assert isinstance(result.exception, InvalidInputError)
    assert "parameter depth must be int, got str 'abc'" in str(result.exception)


def test_cli_text_parameters_keep_the_text_as_written() -> None:
    parsed = pipeline_cmd.parse_params(["flag=007", "counter=[1]"], flows.failing)
    assert parsed == {"flag": "007", "counter": "[1]"}
    assert pipeline_cmd.parse_params(["depth=007"]) == {"depth": "007"}  # not JSON: text
