"""The ``loopml pipeline`` sub-app and the fluent API on the configured workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import loopml.api.pipelines as lmp
from loopml.api import fluent
from loopml.cli import pipeline_cmd
from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.pipelines import records
from tests.pipelines import flows


@pytest.fixture
def cli() -> typer.Typer:
    # The sub-app as the main CLI mounts it.
    app = typer.Typer()
    app.add_typer(pipeline_cmd.app, name="pipeline")
    return app


def invoke(app: typer.Typer, *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.output, exc


def test_run_ls_show_and_a_cached_rerun(loopml_home: Path, cli: typer.Typer) -> None:
    ref = "tests.pipelines.flows:training"
    code, output, exc = invoke(cli, "pipeline", "run", ref, "-p", "depth=3")
    assert code == 0, exc
    assert "finished" in output and "executed" in output and "train <- load" in output
    code, output, _ = invoke(cli, "pipeline", "run", ref, "-p", "depth=3")
    assert output.count("cached") == 3
    code, output, _ = invoke(cli, "pipeline", "ls")
    assert code == 0 and "0 ran, 3 cached" in output
    assert "3 ran, 0 cached" in output
    latest = records.list_runs(fluent.workspace(), None, 1)[0]
    code, output, _ = invoke(cli, "pipeline", "show", latest.id[:12])
    assert code == 0 and latest.id[:12] in output and "evaluate <- load, train" in output
    code, output, _ = invoke(cli, "pipeline", "run", ref, "-p", "depth=3", "--no-cache")
    assert output.count("executed") == 3


def test_resume_from_the_cli(loopml_home: Path, cli: typer.Typer, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    args = ["-p", f"counter={tmp_path / 'c'}", "-p", f"flag={flag}"]
    code, _, exc = invoke(cli, "pipeline", "run", "tests.pipelines.flows:failing", *args)
    assert isinstance(exc, LoopmlError) and "failed at step fragile" in str(exc)
    failed = records.list_runs(fluent.workspace(), None, 1)[0]
    code, output, _ = invoke(cli, "pipeline", "show")
    assert "failed" in output and "RuntimeError: flag" in output and "resume with" in output
    flag.unlink()
    code, output, exc = invoke(cli, "pipeline", "resume", failed.id[:12])
    assert code == 0, exc
    assert "reused" in output and "finished" in output


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["run", "no_such_mod:p"], NotFoundError, "no such module"),
        (["run", "tests.pipelines.flows:nope"], NotFoundError, "has no pipeline 'nope'"),
        (["run", "tests.pipelines.flows:training", "-p", "depth"], InvalidInputError, "name=value"),
        (["run", "tests.pipelines.flows:training", "-p", "x=1"], InvalidInputError, "no parameter"),
        (["run", "tests.pipelines.flows:training", "-x", "gpu"], InvalidInputError, "executor"),
        (["show", "0000ffff"], NotFoundError, "no pipeline run"),
        (
            ["schedule", "tests.pipelines.flows:training", "--name", "s"],
            InvalidInputError,
            "exactly one",
        ),
    ],
)
def test_user_mistakes_raise_loopml_errors(
    loopml_home: Path, cli: typer.Typer, args: list[str], error: type, message: str
) -> None:
    _, _, exc = invoke(cli, "pipeline", *args)
    assert isinstance(exc, error) and message in str(exc)


def test_params_parse_as_json_text_or_catalog_datasets(loopml_home: Path) -> None:
    from loopml.data.catalog import Catalog

    Catalog(fluent.workspace()).add("tiny", flows._month(1).head(10))
    parsed = pipeline_cmd.parse_params(["a=8", "b=0.5", "c=hello", 'd=["x"]', "e=@tiny:1"])
    assert parsed["a"] == 8 and parsed["b"] == 0.5 and parsed["c"] == "hello"
    assert parsed["d"] == ["x"] and parsed["e"].ref == "tiny:1"


def test_fluent_run_uses_the_configured_workspace(loopml_home: Path) -> None:
    run = flows.training.run(depth=3)
    assert run.status == "finished"
    assert lmp.get_pipeline_run(run.id).output == run.output
    assert lmp.run("tests.pipelines.flows:training", depth=3).executed == []
    assert [r.id for r in lmp.pipeline_runs("training")][1] == run.id
    lmp.schedule(
        "tests.pipelines.flows:training", name="on-drift", on_event="drift", params={"depth": 3}
    )
    assert lmp.fire_event("drift") >= 1
