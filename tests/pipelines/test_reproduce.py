"""``loopml reproduce``: a recorded pipeline run re-executed in a scratch workspace gives
the same digests, or says for each output that differs the first reason found."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import typer
from rich.console import Console
from sqlalchemy import update
from typer.testing import CliRunner

from loopml.cli import reproduce_cmd
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.data.catalog import Catalog
from loopml.pipelines import records
from loopml.pipelines.reproduce import environment_diff, reproduce
from loopml.pipelines.runner import run_pipeline
from loopml.store.metadata.tables import environments
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests.pipelines import flows
from tests.pipelines.usermod import reload_module

MODULE = """
    from __future__ import annotations
    import polars as pl
    import loopml.api.pipelines as lm

    SEED = 0

    @lm.step
    def data(n: int) -> lm.Dataset:
        from sklearn.datasets import load_breast_cancer
        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        frame = X.iloc[:n, :6].copy()
        frame["target"] = y[:n]
        return pl.from_pandas(frame)

    @lm.step
    def train(table: lm.Dataset, depth: int = 3) -> lm.Model:
        from sklearn.ensemble import RandomForestClassifier
        X = table.drop("target").to_pandas()
        model = RandomForestClassifier(n_estimators=5, max_depth=depth, random_state=SEED)
        return model.fit(X, table["target"].to_numpy())

    @lm.step
    def score(model: lm.Model, table: lm.Dataset) -> dict[str, float]:
        X = table.drop("target").to_pandas()
        return {"accuracy": float((model.predict(X) == table["target"].to_numpy()).mean())}

    @lm.pipeline
    def fit(n: int = 200):
        table = data(n)
        return score(train(table, depth=3), table)
"""


def _files(ws: Workspace) -> set[str]:
    root = Path(ws.artifacts_url)
    return {str(p) for p in root.rglob("*") if p.is_file()}


def test_a_recorded_run_reproduces_without_touching_the_workspace(
    workspace: Workspace, user_module: tuple[Path, str]
) -> None:
    folder, name = user_module
    mod = reload_module(folder, name, MODULE, 1)
    run = run_pipeline(workspace, mod.fit, {})
    runs_before, files_before = len(records.list_runs(workspace)), _files(workspace)
    found = reproduce(workspace, run.id[:12])
    assert found.ok and found.status == "finished" and found.error is None
    assert [(o.node, o.same, o.reason) for o in found.outputs] == [
        ("data", True, None),
        ("train", True, None),
        ("score", True, None),
    ]
    assert [o.recorded for o in found.outputs] == [
        run.steps[n].output_digest for n in ("data", "train", "score")
    ]
    assert found.environment == ()  # the same process: the same packages
    # Nothing was written to the user's workspace, and the scratch one is gone.
    assert len(records.list_runs(workspace)) == runs_before
    assert _files(workspace) == files_before

    # One step's run reproduces on its own too.
    step = reproduce(workspace, run.steps["train"].run_id or "")
    assert step.node == "train" and [o.node for o in step.outputs] == ["train"] and step.ok


def test_a_changed_step_body_is_the_reason(
    workspace: Workspace, user_module: tuple[Path, str]
) -> None:
    folder, name = user_module
    mod = reload_module(folder, name, MODULE, 1)
    run = run_pipeline(workspace, mod.fit, {})
    reload_module(folder, name, MODULE.replace("max_depth=depth,", "max_depth=depth + 1,"), 2)
    found = reproduce(workspace, run.id)
    assert not found.ok
    reasons = {o.node: o.reason for o in found.outputs}
    assert reasons == {
        "data": None,
        "train": "code of step train changed since the recorded run",
        "score": "input model digest changed (its producer, step train, differs)",
    }


def test_a_changed_param_is_the_reason(workspace: Workspace, user_module: tuple[Path, str]) -> None:
    folder, name = user_module
    mod = reload_module(folder, name, MODULE, 1)
    run = run_pipeline(workspace, mod.fit, {})
    reload_module(folder, name, MODULE.replace("depth=3), table)", "depth=5), table)"), 2)
    found = reproduce(workspace, run.id)
    train = next(o for o in found.outputs if o.node == "train")
    assert not train.same and train.reason == "param depth 3 -> 5"


def test_an_unfixed_seed_is_the_reason(workspace: Workspace, user_module: tuple[Path, str]) -> None:
    folder, name = user_module
    mod = reload_module(folder, name, MODULE.replace("SEED = 0", "SEED = None"), 1)
    run = run_pipeline(workspace, mod.fit, {})
    found = reproduce(workspace, run.id)
    train = next(o for o in found.outputs if o.node == "train")
    assert not train.same
    assert train.reason == "seed not fixed: the model's random_state is None"
    assert next(o for o in found.outputs if o.node == "data").same


def test_the_environment_check_names_the_packages_that_differ(
    workspace: Workspace, user_module: tuple[Path, str]
) -> None:
    assert environment_diff({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "2.1", "d": "4"}) == [
        "b 2 -> 2.1",
        "-c 3",
        "+d 4",
    ]
    folder, name = user_module
    mod = reload_module(folder, name, MODULE, 1)
    run = run_pipeline(workspace, mod.fit, {})
    tracker = Tracker(workspace)
    digest = tracker.get_run(run.id).environment_digest
    packages = dict(tracker.environment(digest or "")["packages"])
    tracker.close()
    current_sklearn = packages["scikit-learn"]
    packages["scikit-learn"] = "0.1"
    with workspace.write_engine.begin() as conn:
        conn.execute(
            update(environments).where(environments.c.digest == digest).values(packages=packages)
        )
    found = reproduce(workspace, run.id)
    assert found.environment == (f"scikit-learn 0.1 -> {current_sklearn}",)
    assert found.ok  # the outputs still came back: a difference is reported, not a failure


def test_what_cannot_be_reproduced_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no pipeline run or run"):
        reproduce(workspace, "0000ffff")
    tracker = Tracker(workspace)
    with tracker.start_run("plain") as plain:
        pass
    tracker.close()
    with pytest.raises(InvalidInputError, match="not made by a pipeline step"):
        reproduce(workspace, plain.id)
    flag = tmp_path / "flag"
    flag.touch()
    params = {"counter": str(tmp_path / "c"), "flag": str(flag)}
    failed = run_pipeline(workspace, flows.failing, params, raise_on_failure=False)
    with pytest.raises(InvalidInputError, match="only a finished run"):
        reproduce(workspace, failed.id)


def test_a_catalog_input_is_read_by_its_recorded_digest(workspace: Workspace) -> None:
    v1 = Catalog(workspace).add("flights", flows._month(1).head(300))
    run = flows.from_catalog.run(workspace=workspace, data=v1)
    found = reproduce(workspace, run.id)
    assert found.ok and len(found.outputs) == 2
    # A dataset and its profile are content: the same table gives the same digests.
    other = Workspace(
        f"sqlite:///{Path(workspace.artifacts_url).parent / 'other.db'}",
        str(Path(workspace.artifacts_url).parent / "other-artifacts"),
    )
    again = Catalog(other).add("flights", flows._month(1).head(300))
    assert (again.digest, again.profile_digest) == (v1.digest, v1.profile_digest)
    other.close()


def test_cli_prints_the_table_and_exits_1_on_a_difference(
    loopml_home: Path, user_module: tuple[Path, str]
) -> None:
    from loopml.api import fluent

    folder, name = user_module
    mod = reload_module(folder, name, MODULE, 1)
    run = run_pipeline(fluent.workspace(), mod.fit, {})
    app = typer.Typer()
    app.command()(reproduce_cmd.reproduce)
    same = CliRunner().invoke(app, [run.id[:12]], env={"COLUMNS": "200"})
    assert same.exit_code == 0, same.output
    assert "reproduced: 3 of 3 outputs identical" in same.output
    assert run.steps["train"].output_digest[:15] in same.output  # type: ignore[index]
    # lm.reproduce returns the same as a record.
    import loopml as lm
    from loopml.api.pipelines import Reproduction

    record = lm.reproduce(run.id)
    assert isinstance(record, Reproduction)
    assert record.ok and [o.same for o in record.outputs] == [True, True, True]
    reload_module(folder, name, MODULE.replace("max_depth=depth,", "max_depth=depth + 1,"), 2)
    changed = CliRunner().invoke(app, [run.id[:12]], env={"COLUMNS": "200"})
    assert changed.exit_code == 1
    assert "code of step train changed since the recorded run" in changed.output
    assert "not reproduced: 1 of 3 outputs identical" in changed.output


@pytest.mark.slow
def test_the_demo_training_pipeline_reproduces_to_identical_digests(
    workspace: Workspace,
) -> None:
    from loopml.demo.replay import month_start
    from loopml.demo.run import delay_training

    run = run_pipeline(workspace, delay_training, {"until": month_start(2)})
    found = reproduce(workspace, run.id)
    buf = io.StringIO()
    reproduce_cmd.show(found, Console(file=buf, width=160))
    assert found.ok, buf.getvalue()
    assert [o.node for o in found.outputs] == list(run.steps)
    assert all(o.recorded == o.new for o in found.outputs)
    assert "reproduced: 2 of 2 outputs identical" in buf.getvalue()
