"""Versions, references, lineage, aliases and concurrent registration."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.registry.model_registry import Registry
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests.models.conftest import Flights, git_checkout, to_features


@pytest.fixture
def workspace(any_workspace: Workspace) -> Workspace:
    """Every registry test runs on SQLite and on a real PostgreSQL server."""
    return any_workspace


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for tests that open one engine per writer, as processes do."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ws.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _dataset(workspace: Workspace, flights: Flights) -> str:
    blob = workspace.artifacts.put_bytes(flights.train.write_ipc(None).getvalue())
    return workspace.lineage.add_artifact(blob.digest, "dataset", blob.size, name="jan:1").id


def test_versions_count_up_and_resolve(
    registry: Registry, flights: Flights, hgb_model: Any, weak_model: Any
) -> None:
    v1 = registry.register("delay-model", hgb_model, flights.X, description="first")
    v2 = registry.register(
        "delay-model", weak_model, flights.train.select("distance"), tags={"kind": "baseline"}
    )
    assert (v1.version, v2.version) == (1, 2)
    assert v1.ref == "delay-model:1" and v1.flavor == "sklearn"
    assert [v.version for v in registry.versions("delay-model")] == [1, 2]
    assert registry.resolve("delay-model").version == 2
    assert registry.resolve("delay-model:latest").version == 2
    assert registry.resolve("delay-model:1").description == "first"
    assert registry.resolve("delay-model:2").tags == {"kind": "baseline"}
    assert registry.models()[0].latest_version == 2
    updated = registry.update_version("delay-model", 1, tags={"owner": "ops"}, description="d")
    assert updated.tags == {"owner": "ops"} and updated.description == "d"
    loaded = registry.load("delay-model:1")
    assert (loaded.predict(flights.eval) == hgb_model.predict(to_features(flights.eval))).all()


def test_bad_names_and_refs(registry: Registry, flights: Flights, hgb_model: Any) -> None:
    with pytest.raises(InvalidInputError, match="model name"):
        registry.register("bad name!", hgb_model, flights.X)
    with pytest.raises(NotFoundError, match="no registered model named 'nope'"):
        registry.resolve("nope")
    registry.register("m", hgb_model, flights.X)
    with pytest.raises(NotFoundError, match="has no version 7; the latest is 1"):
        registry.resolve("m:7")
    with pytest.raises(NotFoundError, match="has no alias 'champion'"):
        registry.resolve("m@champion")
    with pytest.raises(InvalidInputError, match="not a model reference"):
        registry.resolve("m@a@b")
    with pytest.raises(InvalidInputError, match="must be a positive whole number"):
        registry.resolve("m:one")


def test_lineage_links_run_datasets_and_code_version(
    workspace: Workspace, registry: Registry, flights: Flights, hgb_model: Any, tmp_path: Path
) -> None:
    commit = git_checkout(tmp_path / "repo")
    tracker = Tracker(workspace)
    dataset_id = _dataset(workspace, flights)
    with tracker.start_run("flights", cwd=str(tmp_path / "repo")) as run:
        code_version = tracker.code_version(run.id)
        mv = registry.register(
            "delay",
            hgb_model,
            flights.X,
            run_id=run.id,
            dataset_artifact_ids=[dataset_id],
            code_version=code_version,
        )
    (tmp_path / "repo" / "train.py").write_text("print('changed')\n")
    with tracker.start_run("flights", cwd=str(tmp_path / "repo")) as dirty:
        assert tracker.code_version(dirty.id) == f"{commit}+dirty"
    tracker.close()
    assert code_version == commit
    assert mv.run_id == run.id and mv.dataset_artifact_ids == (dataset_id,)
    assert registry.get_version("delay", 1).code_version == commit
    upstream = workspace.lineage.graph(mv.artifact_id, "upstream")
    assert run.id in upstream.executions and dataset_id in upstream.artifacts
    kinds = {e.kind for e in upstream.executions.values()}
    assert "model_registration" in kinds
    assert workspace.lineage.get_execution(run.id).kind == "run"


def test_unknown_run_or_dataset_registers_nothing(
    workspace: Workspace, registry: Registry, flights: Flights, hgb_model: Any
) -> None:
    with pytest.raises(NotFoundError, match="no run with id 'r0'"):
        registry.register("delay", hgb_model, flights.X, run_id="r0")
    with pytest.raises(NotFoundError, match="no dataset artifact"):
        registry.register("delay", hgb_model, flights.X, dataset_artifact_ids=["d0"])
    assert registry.models() == []


def test_concurrent_registration_gets_distinct_versions(
    db_url: str, tmp_path: Path, flights: Flights, weak_model: Any
) -> None:
    store = str(tmp_path / "artifacts")
    Workspace(db_url, store).close()  # migrate once
    X = flights.train.select("distance")
    versions: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        ws = Workspace(db_url, store)  # each writer has its own engine, as separate processes do
        try:
            start.wait(timeout=60)
            for _ in range(3):
                versions.append(Registry(ws).register("busy", weak_model, X).version)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            ws.close()

    _run_all(worker, 4)
    assert not errors
    assert sorted(versions) == list(range(1, 13))


def test_concurrent_promotions_chain_in_history(
    db_url: str, tmp_path: Path, flights: Flights, weak_model: Any
) -> None:
    """20 writers race to move one alias (the first ones to create it): each move starts
    where the previous ended, and a loser is refused and recorded, never an SQL error."""
    store = str(tmp_path / "artifacts")
    ws = Workspace(db_url, store)
    registry = Registry(ws)
    X = flights.train.select("distance")
    for _ in range(3):
        registry.register("m", weak_model, X)
    writers = 20
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def worker(i: int) -> None:
        own = Workspace(db_url, store)
        try:
            reg = Registry(own)
            start.wait(timeout=60)
            for round_ in range(2):
                current = reg.alias_version("m", "champion")
                target = [v for v in (1, 2, 3) if v != current][(i + round_) % 2]
                reg.move_alias(
                    "m", "champion", target, action="promote", reason="", expected_from=current
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            own.close()

    _run_all(worker, writers)
    assert not errors
    history = registry.history("m", "champion")
    assert len(history) == 2 * writers
    at: int | None = None
    for event in history:
        assert event.from_version == at, history
        if event.allowed:
            at = event.to_version
        else:
            assert "moved to version" in event.reason
    assert at == registry.alias_version("m", "champion")
    assert history[0].allowed and history[0].from_version is None
    ws.close()


def _run_all(target: Any, n: int) -> None:
    threads = [
        threading.Thread(target=target, args=() if target.__code__.co_argcount == 0 else (i,))
        for i in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a writer hung"


def test_alias_history_and_rollback_stack(
    registry: Registry, flights: Flights, weak_model: Any
) -> None:
    X = flights.train.select("distance")
    for _ in range(3):
        registry.register("m", weak_model, X)
    for v in (1, 2, 3):
        registry.move_alias(
            "m",
            "champion",
            v,
            action="promote",
            reason=f"v{v}",
            expected_from=registry.alias_version("m", "champion"),
        )
    assert registry.resolve("m@champion").version == 3
    assert registry.get_version("m", 3).aliases == ("champion",)
    assert registry.rollback("m", "champion").to_version == 2
    assert registry.rollback("m", "champion", reason="bad").to_version == 1
    with pytest.raises(ConflictError, match="no earlier version"):
        registry.rollback("m", "champion")
    history = registry.history("m", "champion")
    assert [(e.action, e.from_version, e.to_version) for e in history] == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]
    assert history[-1].reason == "bad" and all(e.allowed for e in history)


def test_stale_decision_is_refused_and_recorded(
    registry: Registry, flights: Flights, weak_model: Any
) -> None:
    X = flights.train.select("distance")
    registry.register("m", weak_model, X)
    registry.register("m", weak_model, X)
    registry.move_alias("m", "champion", 1, action="promote", reason="", expected_from=None)
    event = registry.move_alias("m", "champion", 2, action="promote", reason="", expected_from=None)
    assert not event.allowed and "moved to version 1" in event.reason
    assert registry.alias_version("m", "champion") == 1


def test_bad_alias(registry: Registry, flights: Flights, weak_model: Any) -> None:
    registry.register("m", weak_model, flights.train.select("distance"))
    for alias in ("latest", "1st", "has space"):
        with pytest.raises(InvalidInputError, match="alias"):
            registry.move_alias("m", alias, 1, action="promote", reason="", expected_from=None)
