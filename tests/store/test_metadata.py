"""The metadata store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from loopml.core.errors import ConfigError, InvalidInputError, NotFoundError
from loopml.store.metadata import migrate
from loopml.store.metadata.tables import SQLITE_ONLY_INDEXES, metadata
from loopml.store.workspace import Workspace


def test_migrations_create_exactly_the_declared_schema(any_workspace: Workspace) -> None:
    with any_workspace.engine.connect() as conn:
        on_sqlite = conn.dialect.name == "sqlite"

        def declared_here(obj: Any, name: str | None, kind: str, *_: Any) -> bool:
            return on_sqlite or kind != "index" or name not in SQLITE_ONLY_INDEXES

        context = MigrationContext.configure(conn, opts={"include_object": declared_here})
        diff = compare_metadata(context, metadata)
        indexes = {ix["name"] for ix in inspect(conn).get_indexes("params")}
    assert diff == []
    assert ("ix_params_key_value_run" in indexes) == on_sqlite
    assert any_workspace.schema_revision() == migrate.head_revision()


def test_reopening_a_migrated_workspace_is_a_no_op(any_workspace: Workspace) -> None:
    again = Workspace(any_workspace.db_url, any_workspace.artifacts_url)
    assert again.schema_revision() == migrate.head_revision()
    again.close()


def test_doctor_checks_both_stores(any_workspace: Workspace) -> None:
    checks = any_workspace.check()
    assert [c.name for c in checks] == ["metadata", "artifacts"]
    assert all(c.ok for c in checks), checks


def test_unwritable_artifact_store_is_reported_not_raised(tmp_path: Path) -> None:
    ws = Workspace(f"sqlite:///{tmp_path / 'db.sqlite'}", str(tmp_path / "a"))
    (tmp_path / "a" / "objects").chmod(0o500)
    try:
        checks = {c.name: c for c in ws.check()}
        if checks["artifacts"].ok:  # root ignores permissions; the check still ran
            assert checks["artifacts"].detail == "read/write ok"
        else:
            assert "not writable" in checks["artifacts"].detail
    finally:
        (tmp_path / "a" / "objects").chmod(0o700)


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url", "not a database URL"),
        ("mysql://u@h/db", "unsupported metadata database"),
    ],
)
def test_bad_database_urls_are_config_errors(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        Workspace(url, str(tmp_path / "a"))


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    code = (
        "import sys; from loopml.store.workspace import Workspace; "
        f"w = Workspace({db!r}, {str(tmp_path / 'a')!r}); print(w.schema_revision())"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs == [migrate.head_revision()] * 4


def test_lineage_upstream_and_downstream(any_workspace: Workspace) -> None:
    lin = any_workspace.lineage
    raw = lin.add_artifact("b3:" + "1" * 64, "dataset", 10, name="flights:1")
    prep = lin.add_execution("step", name="prepare")
    lin.link(prep.id, raw.id, "input", "data")
    features = lin.add_artifact("b3:" + "2" * 64, "dataset", 5, name="features")
    lin.link(prep.id, features.id, "output", "features")
    train = lin.add_execution("run", name="train")
    lin.link(train.id, features.id, "input", "train")
    model = lin.add_artifact("b3:" + "3" * 64, "model", 7, name="model")
    lin.link(train.id, model.id, "output", "model")
    unrelated = lin.add_artifact("b3:" + "4" * 64, "dataset", 1)

    up = lin.graph(model.id, "upstream")
    assert up.node_ids() == {model.id, train.id, features.id, prep.id, raw.id}
    assert len(up.edges) == 4
    down = lin.graph(raw.id, "downstream")
    assert down.node_ids() == {raw.id, prep.id, features.id, train.id, model.id}
    assert unrelated.id not in down.node_ids()
    assert lin.graph(features.id, "upstream").node_ids() == {features.id, prep.id, raw.id}
    assert [r for r, _ in lin.artifacts_of(train.id, "output")] == ["model"]


def test_lineage_rejects_unknown_nodes_and_bad_event_types(any_workspace: Workspace) -> None:
    lin = any_workspace.lineage
    with pytest.raises(NotFoundError):
        lin.graph("0" * 32, "upstream")
    exe = lin.add_execution("run")
    art = lin.add_artifact("b3:" + "5" * 64, "file", 1)
    with pytest.raises(InvalidInputError, match="input"):
        lin.link(exe.id, art.id, "sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        lin.graph(exe.id, "sideways")  # type: ignore[arg-type]


def test_upgrade_from_0002_carries_metric_points_into_chunks(tmp_path: Path) -> None:
    """A workspace written by an older loopml keeps its metric history across the upgrade."""
    from alembic import command
    from sqlalchemy import text

    from loopml.store.metadata.engine import make_engine
    from loopml.tracking.tracker import Tracker

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = migrate._config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.commit()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO experiments (name, created_at) VALUES ('old', 0)"))
        conn.execute(
            text(
                "INSERT INTO executions (id, kind, name, status, start_time, properties) "
                "VALUES ('r1', 'run', 'old run', 'finished', 0, '{}')"
            )
        )
        conn.execute(text("INSERT INTO runs (id, experiment_id) VALUES ('r1', 1)"))
        conn.execute(text("INSERT INTO params VALUES ('r1', 'depth', '6')"))
        for step, value in ((2, 0.2), (0, 0.5), (1, 0.3)):
            conn.execute(
                text("INSERT INTO metrics VALUES ('r1', 'loss', :s, :t, :v)"),
                {"s": step, "t": 100.0 + step, "v": value},
            )
    engine.dispose()

    ws = Workspace(url, str(tmp_path / "a"))  # migrates to head on open
    tracker = Tracker(ws)
    history = tracker.metric_history("r1", "loss")
    assert [r.id for r in tracker.search_runs(filter="params.depth = '6'")] == ["r1"]
    assert history.steps.tolist() == [0, 1, 2]
    assert history.values.tolist() == [0.5, 0.3, 0.2]
    assert history.timestamps.tolist() == [100.0, 101.0, 102.0]
