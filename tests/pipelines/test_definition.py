"""Bad definitions and inputs: a clear error before anything runs or is recorded."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import func, select

import loopml.api.pipelines as lm
from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.pipelines.graph import Graph, ref
from loopml.pipelines.loader import load_pipeline
from loopml.pipelines.step import step
from loopml.store.metadata.tables import executions
from loopml.store.workspace import Workspace
from tests.pipelines import flows


def _nothing_recorded(ws: Workspace) -> bool:
    with ws.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(executions)).scalar() == 0


@lm.step
def make_socket() -> socket.socket:
    return socket.socket()


@lm.pipeline
def unstorable_annotation():
    return make_socket()


@lm.step
def sneaky() -> object:
    return {1, 2, 3}  # a set: no JSON spelling


@lm.pipeline
def unstorable_value():
    return sneaky()


def test_an_unstorable_return_annotation_fails_before_anything_runs(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="annotated to return socket, which loopml cannot"):
        unstorable_annotation.run(workspace=workspace)
    assert _nothing_recorded(workspace)


def test_an_unstorable_returned_value_fails_the_step_clearly(workspace: Workspace) -> None:
    with pytest.raises(
        lm.PipelineFailedError, match=r"returned a builtins\.set, which loopml cannot"
    ):
        unstorable_value.run(workspace=workspace)


def test_a_cycle_is_reported_with_its_path() -> None:
    @step
    def a(x: int) -> int:
        return x

    @step
    def b(x: int) -> int:
        return x

    with pytest.raises(InvalidInputError, match=r"has a cycle: .*(a -> b|b -> a)"):
        Graph.from_nodes("loop", {"a": (a, {"x": ref("b")}), "b": (b, {"x": ref("a")})})
    with pytest.raises(InvalidInputError, match="not a node of this pipeline"):
        Graph.from_nodes("dangling", {"a": (a, {"x": ref("nowhere")})})
    ok = Graph.from_nodes("fine", {"a": (a, {"x": 1}), "b": (b, {"x": ref("a")})})
    assert ok.order() == ["a", "b"]


def test_missing_and_unknown_parameters(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"needs a value for parameter.*flag"):
        flows.failing.run(workspace=workspace, counter=str(tmp_path / "c"))
    with pytest.raises(InvalidInputError, match=r"has no parameter.*dpeth"):
        flows.training.run(workspace=workspace, dpeth=3)
    assert _nothing_recorded(workspace)


@lm.step
def needs_two(a: int, b: int) -> int:
    return a + b


@lm.pipeline
def wrong_call():
    return needs_two(1)


@lm.pipeline
def uses_placeholder_value():
    data = flows.load(1)
    if data.height > 10:  # the value does not exist yet while the DAG is built
        return flows.evaluate(flows.train(data), data)
    return None


@lm.pipeline
def table_as_literal():
    import polars as pl

    return flows.rows_by_carrier(pl.DataFrame({"carrier": ["AA"]}))


@lm.pipeline
def model_into_table_param():
    data = flows.load(1)
    return flows.rows_by_carrier(flows.train(data))


@pytest.mark.parametrize(
    ("pipe", "message"),
    [
        (wrong_call, "step needs_two called with bad arguments: missing a required argument: 'b'"),
        (uses_placeholder_value, r"returns a placeholder for its output.*\.height"),
        (table_as_literal, "must be a JSON value.*Pass tables and models between steps"),
        (model_into_table_param, "receives the model output of train"),
    ],
)
def test_bad_pipeline_functions(workspace: Workspace, pipe: lm.Pipeline, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        pipe.run(workspace=workspace)
    assert _nothing_recorded(workspace)


def test_bad_step_and_pipeline_declarations() -> None:
    with pytest.raises(InvalidInputError, match=r"\*args/\*\*kwargs are not supported"):

        @lm.step
        def splat(*values: int) -> int:
            return sum(values)

    with pytest.raises(InvalidInputError, match="retries must be a whole number"):
        lm.step(retries=-1)(flows.double.fn)
    with pytest.raises(InvalidInputError, match="reserved for run options"):

        @lm.pipeline
        def clash(executor: str):
            return None

    with pytest.raises(InvalidInputError, match="calling it directly is not supported"):
        flows.training()


def test_steps_are_plain_functions_outside_a_pipeline() -> None:
    assert flows.double(21) == 42


def test_unknown_executor_and_steps_workers_cannot_import(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="unknown executor 'gpu'"):
        flows.training.run(workspace=workspace, executor="gpu")

    @lm.step
    def local_step() -> int:
        return 1

    @lm.pipeline
    def local_pipe():
        return local_step()

    with pytest.raises(InvalidInputError, match="defined inside a function"):
        local_pipe.run(workspace=workspace, executor="processes")
    assert local_pipe.run(workspace=workspace).output == 1  # fine in-process


def test_loading_pipelines_by_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_flow.py").write_text("import polars as pl\nraise ValueError('oops')\n")
    with pytest.raises(InvalidInputError, match="'broken_flow' failed to import: ValueError: oops"):
        load_pipeline("broken_flow:training")
    with pytest.raises(NotFoundError, match="no such module"):
        load_pipeline("no_such_module_here:training")
    with pytest.raises(NotFoundError, match="has no pipeline 'nope'"):
        load_pipeline("tests.pipelines.flows:nope")
    with pytest.raises(InvalidInputError, match="not a pipeline"):
        load_pipeline("tests.pipelines.flows:load")
    with pytest.raises(InvalidInputError, match="write module:pipeline"):
        load_pipeline("tests.pipelines.flows")
    assert load_pipeline("tests.pipelines.flows:training") is flows.training
    assert all(issubclass(e, LoopmlError) for e in (InvalidInputError, NotFoundError))
