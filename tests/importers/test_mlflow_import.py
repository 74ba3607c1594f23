"""``loopml import mlflow`` from a real MLflow store made by MLflow's own client.

The store is built once per module by ``mlflow_store.py`` in a child process; each test
imports into its own fresh workspace with the real CLI and compares with what the client
logged (values, steps, timestamps, bytes), and re-imports to check nothing is duplicated.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from loopml.core.errors import LoopmlError, StoreError
from loopml.importers import import_mlflow
from loopml.importers.mlflow_sqlite import SqlSource
from loopml.registry.model_registry import Registry
from loopml.store.metadata import tables as t
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests import needs
from tests.importers.cli_run import assert_refused, cli, counts, open_ws

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Store:
    folder: Path
    expected: dict[str, Any]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    needs.module("mlflow", "pip install mlflow-skinny (the test extra has it)")
    folder = tmp_path_factory.mktemp("mlflow-store")
    done = subprocess.run(
        [sys.executable, str(HERE / "mlflow_store.py"), str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Store(folder, json.loads((folder / "expected.json").read_text()))


@pytest.fixture(scope="module")
def imported(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("imported") / "home"
    done = cli(home, "import", "mlflow", "--from", store.url)
    assert done.returncode == 0, done.stderr
    assert "3 copied" in done.stdout
    yield home


def test_runs_arrive_with_params_tags_times_and_status(store: Store, imported: Path) -> None:
    ws = open_ws(imported)
    tracker = Tracker(ws)
    try:
        found = {r.id: r for r in tracker.search_runs(limit=100)}
        expected = store.expected["runs"]
        # MLflow's run ids are kept; the running and the deleted run are not copied.
        assert set(found) == set(expected)
        for run_id, want in expected.items():
            run = found[run_id]
            assert run.experiment == want["experiment"]
            assert run.name == want["name"]
            assert run.status == want["status"]
            assert run.params == want["params"]
            assert want["tags"].items() <= run.tags.items()
            assert run.tags["mlflow.source_run_id"] == run_id
            if "start_ms" in want:
                assert run.start_time == want["start_ms"] / 1000
                assert run.end_time == want["end_ms"] / 1000
        # Searchable as any loopml run, across experiments.
        hits = tracker.search_runs(filter="params.C = '0.5' and metrics.loss < 0.1")
        assert [r.id for r in hits] == [store.expected["train_run"]]
        assert {r.experiment for r in tracker.search_runs(limit=100)} == {"flights-a", "flights-b"}
    finally:
        tracker.close()
        ws.close()


def test_metric_histories_are_exact(store: Store, imported: Path) -> None:
    ws = open_ws(imported)
    tracker = Tracker(ws)
    try:
        for run_id, want in store.expected["runs"].items():
            for key, points in want["metrics"].items():
                history = tracker.metric_history(run_id, key)
                steps, stamps, values = (list(col) for col in zip(*points, strict=True))
                assert history.steps.tolist() == steps
                assert history.timestamps.tolist() == [ts / 1000 for ts in stamps]
                assert history.values.tolist() == values
        # The latest value is the last point at the highest step; the NaN one is skipped.
        run = tracker.get_run(store.expected["train_run"])
        assert run.metrics["acc"] == 0.8
        assert run.metrics["loss"] == 1.0 / 40
    finally:
        tracker.close()
        ws.close()


def test_artifacts_arrive_byte_identical_and_linked(store: Store, imported: Path) -> None:
    ws = open_ws(imported)
    try:
        for run_id, want in store.expected["runs"].items():
            files = {
                role: ws.artifacts.get_bytes(a.digest)
                for role, a in ws.lineage.artifacts_of(run_id, "output")
                if a.kind == "mlflow_file"
            }
            assert files == {rel: base64.b64decode(b) for rel, b in want["files"].items()}
    finally:
        ws.close()


def test_registered_models_become_servable_versions_with_aliases(
    store: Store, imported: Path
) -> None:
    ws = open_ws(imported)
    try:
        registry = Registry(ws)
        versions = registry.versions("cancer-clf")
        assert [(v.version, v.tags["mlflow.version"], v.flavor) for v in versions] == [
            (1, "1", "sklearn"),
            (2, "2", "sklearn"),
        ]
        assert versions[0].run_id == store.expected["train_run"]
        assert registry.aliases("cancer-clf") == {"champion": 1, "challenger": 2}
        # The registered models' own description and tags came along.
        clf = registry.get_model("cancer-clf")
        assert clf.description == "Flags malignant tumours."
        assert clf.tags == {"owner": "oncology"}
        assert registry.get_model("custom-scorer").description == "Scores in-house."
        rows = pd.DataFrame(store.expected["predict_rows"])
        for ref, key in (
            ("cancer-clf@champion", "predictions_v1"),
            ("cancer-clf:2", "predictions_v2"),
        ):
            # Stored as MLflow saved it (never unpickled at import); loopml loads it to serve.
            predicted = registry.load(ref).predict(rows)
            assert predicted.tolist() == store.expected[key]
        # The custom python_function model is stored as a version that says why it cannot
        # be served, as the server's MLflow registry stores one.
        assert [m.name for m in registry.models()] == ["cancer-clf", "custom-scorer"]
        (custom,) = registry.versions("custom-scorer")
        assert custom.tags["mlflow.version"] == "1"
        assert "python_function" in custom.tags["loopml.not_servable"]
        assert custom.run_id == store.expected["train_run"]
        files = {e.path for e in ws.artifacts.get_tree(custom.digest).entries}
        assert {"model/MLmodel", "model/weights.json"} <= files
        with pytest.raises(LoopmlError, match="python_function"):
            registry.load("custom-scorer:1")
    finally:
        ws.close()


def test_cli_shows_imported_runs_and_models(store: Store, imported: Path) -> None:
    shown = cli(imported, "runs", "show", store.expected["train_run"])
    assert shown.returncode == 0, shown.stderr
    assert "train-lr" in shown.stdout and "solver" in shown.stdout
    models = cli(imported, "models", "ls")
    assert "cancer-clf" in models.stdout and "champion" in models.stdout


def test_reimport_copies_only_what_is_new(store: Store, tmp_path: Path) -> None:
    # A copy of the store, so the module's one stays as built.
    source = tmp_path / "store"
    shutil.copytree(store.folder, source)
    url = f"sqlite:///{source / 'mlflow.db'}"
    home = tmp_path / "home"
    assert cli(home, "import", "mlflow", "--from", url).returncode == 0
    before = counts(home)
    again = cli(home, "import", "mlflow", "--from", url)
    assert again.returncode == 0, again.stderr
    assert "0 copied, 3 already here" in again.stdout
    assert counts(home) == before

    # An edit made in loopml survives a re-import; a tag MLflow gained since arrives.
    ws = open_ws(home)
    try:
        Registry(ws).update_model("cancer-clf", description="Edited in loopml.")
    finally:
        ws.close()
    with sqlite3.connect(source / "mlflow.db") as conn:
        conn.execute(
            "INSERT INTO registered_model_tags (key, value, name) VALUES (?, ?, ?)",
            ("reviewed", "yes", "cancer-clf"),
        )

    # The run that was still running ends in MLflow; the next import copies it alone.
    running = store.expected["running_run"]
    with sqlite3.connect(source / "mlflow.db") as conn:
        conn.execute(
            "UPDATE runs SET status = 'FINISHED', end_time = start_time + 5 WHERE run_uuid = ?",
            (running,),
        )
    third = cli(home, "import", "mlflow", "--from", url)
    assert third.returncode == 0, third.stderr
    assert "1 copied, 3 already here" in third.stdout
    after = counts(home)
    assert after["runs"] == before["runs"] + 1
    assert after["model_versions"] == before["model_versions"]
    assert after["alias_events"] == before["alias_events"]
    ws = open_ws(home)
    try:
        clf = Registry(ws).get_model("cancer-clf")
    finally:
        ws.close()
    assert clf.description == "Edited in loopml."
    assert clf.tags == {"owner": "oncology", "reviewed": "yes"}


# --- hostile input: one clear line, exit 1, nothing imported -------------------------------
def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "mlflow.db"
    junk.write_text("this is not a database\n" * 100)
    done = cli(tmp_path / "home", "import", "mlflow", "--from", f"sqlite:///{junk}")
    assert_refused(tmp_path / "home", done, str(junk))


def test_a_database_that_is_not_mlflow(tmp_path: Path) -> None:
    other = open_ws(tmp_path / "other")  # a loopml workspace: SQLite, but not MLflow
    other.close()
    done = cli(
        tmp_path / "home", "import", "mlflow", "--from", f"sqlite:///{tmp_path / 'other/loopml.db'}"
    )
    assert_refused(tmp_path / "home", done, "not an MLflow tracking store")


def test_a_missing_artifacts_folder(store: Store, tmp_path: Path) -> None:
    done = cli(
        tmp_path / "home", "import", "mlflow", "--from", store.url, "--artifacts", "/no/such/dir"
    )
    assert_refused(tmp_path / "home", done, "--artifacts", "/no/such/dir")


def test_a_missing_file_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    done = cli(tmp_path / "home", "import", "mlflow", "--from", f"sqlite:///{missing}")
    assert_refused(tmp_path / "home", done, "does not exist")
    assert not missing.exists()


def test_a_newer_schema_revision_is_read_and_reported(store: Store, tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    shutil.copy(store.folder / "mlflow.db", db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff00001111'")
    home = tmp_path / "home"
    done = cli(home, "import", "mlflow", "--from", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr
    assert "3 copied" in done.stdout
    said = " ".join(done.stdout.split())  # however the console wrapped it
    assert "note:" in said and "'ffff00001111', which this loopml does not know" in said
    assert counts(home)["runs"] == 3


def test_a_newer_schema_revision_without_a_column_it_reads(store: Store, tmp_path: Path) -> None:
    db = tmp_path / "changed.db"
    shutil.copy(store.folder / "mlflow.db", db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'ffff00001111'")
        conn.execute("ALTER TABLE runs DROP COLUMN artifact_uri")
    done = cli(tmp_path / "home", "import", "mlflow", "--from", f"sqlite:///{db}")
    assert_refused(tmp_path / "home", done, "'runs' lacks artifact_uri")


def test_an_unreachable_server(tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    done = cli(tmp_path / "home", "import", "mlflow", "--from", url)
    assert_refused(tmp_path / "home", done, "cannot reach", url)


def test_a_corrupt_run_stops_the_import_and_leaves_only_whole_runs(
    store: Store, tmp_path: Path
) -> None:
    db = tmp_path / "corrupt.db"
    shutil.copy(store.folder / "mlflow.db", db)
    runs = store.expected["runs"]
    child = next(r for r, v in runs.items() if v["name"] == "child")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES ('score', 'not a number', 5, ?, 8, 0)",
            (child,),
        )
    home = tmp_path / "home"
    done = cli(home, "import", "mlflow", "--from", f"sqlite:///{db}")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"run {child}" in done.stderr and "malformed" in done.stderr
    ws = open_ws(home)
    tracker = Tracker(ws)
    try:
        # The runs before the broken one are whole; the broken one left nothing behind.
        copied = {r.id: r for r in tracker.search_runs(limit=100)}
        assert child not in copied
        with ws.engine.connect() as conn:
            assert not conn.execute(
                select(t.executions.c.id).where(t.executions.c.id == child)
            ).first()
            assert not conn.execute(
                select(t.metric_chunks.c.id).where(t.metric_chunks.c.run_id == child)
            ).first()
        for run_id in copied:
            assert copied[run_id].params == runs[run_id]["params"]
    finally:
        tracker.close()
        ws.close()
    # Once the store is mended the next import copies the rest.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM metrics WHERE value = 'not a number'")
    again = cli(home, "import", "mlflow", "--from", f"sqlite:///{db}")
    assert again.returncode == 0, again.stderr
    assert counts(home)["runs"] == 3


@pytest.mark.postgres
def test_a_run_the_workspace_refuses_leaves_nothing_and_names_it(
    store: Store, tmp_path: Path, postgres_url: str
) -> None:
    # PostgreSQL enforces the 250-character experiment name that SQLite does not: the
    # run's transaction fails inside, after its params and tags were sent.
    db = tmp_path / "long-name.db"
    shutil.copy(store.folder / "mlflow.db", db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE experiments SET name = ? WHERE name = 'flights-b'", ("b" * 255,))
    ws = Workspace(postgres_url, str(tmp_path / "artifacts"))
    source = SqlSource(f"sqlite:///{db}")
    try:
        with pytest.raises(StoreError, match="could not be written") as refused:
            import_mlflow(ws, source)
        child = next(r for r, v in store.expected["runs"].items() if v["name"] == "child")
        assert f"MLflow run {child}" in str(refused.value)
        with ws.engine.connect() as conn:
            for table, column in (
                (t.executions, t.executions.c.id),
                (t.params, t.params.c.run_id),
                (t.tags, t.tags.c.run_id),
                (t.metric_chunks, t.metric_chunks.c.run_id),
            ):
                assert conn.execute(select(table).where(column == child)).first() is None
    finally:
        source.close()
        ws.close()
