"""lm.autolog() through the fluent API, locally and against a live ``loopml server``: the
fitted model is saved as the run's output either way (uploaded to the server remotely),
and the training data's digest is the run's input either way (remotely, only the digest
and shape are sent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

import loopml as lm
from loopml.api import fluent
from loopml.registry.artifact import load_model, save_model
from loopml.server.app import create_app
from loopml.store.workspace import Workspace
from tests.remote.conftest import Target

FEATURES = ["distance", "hour", "sched_dep_time", "temp"]


def test_a_fit_logs_into_the_active_run_with_its_model_locally_or_remotely(
    api: Target,
) -> None:
    from loopml.api.remote.artifacts import cache_store, download_tree
    from loopml.demo.flights import flights_with_weather

    df = flights_with_weather([1]).drop_nulls(FEATURES).head(800).to_pandas()
    X = df[FEATURES].astype("float64")
    X = (X - X.mean()) / X.std()
    y = df["delayed"]
    lm.autolog(libraries=["sklearn"])
    try:
        with lm.start_run("autolog") as run:
            model = LogisticRegression(C=0.5).fit(X, y)
    finally:
        lm.autolog(disable=True)
    got = lm.get_run(run.id)
    assert got.status == "finished"
    assert got.params["C"] == "0.5"
    assert got.metrics["training_score"] == pytest.approx(model.score(X, y))
    assert got.tags["autolog.training_data_digest"].startswith("b3:")
    assert np.isfinite(got.metrics["training_log_loss"])
    ws = api.workspace()
    try:
        outputs = dict(ws.lineage.artifacts_of(run.id, "output"))
        inputs = dict(ws.lineage.artifacts_of(run.id, "input"))
    finally:
        ws.close()
    saved = outputs["model"]
    assert got.tags["autolog.model_artifact_id"] == saved.id
    assert saved.kind == "model"
    assert saved.properties["flavor"] == "sklearn"
    assert saved.properties["class"].endswith("LogisticRegression")
    assert saved.properties["source"] == "autolog"
    if api.remote:  # fetched back through the server, whatever store it writes to
        store = cache_store()
        remote = fluent.remote_tracker()
        assert remote is not None
        download_tree(remote.connection, store, saved.digest)
    else:
        store = lm.workspace().artifacts
    loaded = load_model(store, saved.digest)
    assert loaded.signature.columns == FEATURES
    np.testing.assert_array_equal(np.asarray(loaded.predict(X.head(50))), model.predict(X.head(50)))
    # The data stays with the client; its digest and shape are an input either way.
    assert inputs["training_data"].kind == "training_data"
    assert (
        inputs["training_data"].properties["content_digest"]
        == (got.tags["autolog.training_data_digest"])
    )
    assert inputs["training_data"].properties["rows"] == len(X)


def test_partial_fit_batches_are_one_run_with_its_model_locally_or_remotely(
    api: Target,
) -> None:
    from sklearn.linear_model import SGDClassifier

    rng = np.random.RandomState(0)
    X = rng.randn(400, 3)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    model = SGDClassifier(loss="log_loss", random_state=0)
    # An experiment of its own: the target's stores are shared by this module's tests.
    lm.autolog(libraries=["sklearn"], experiment="stream")
    try:
        for i in range(0, 400, 100):
            model.partial_fit(X[i : i + 100], y[i : i + 100], classes=[0, 1])
    finally:
        lm.autolog(disable=True)  # ends the stream: its model is saved, its run finished
    (run,) = lm.search_runs("stream")
    assert run.status == "finished" and run.tags["autolog.method"] == "partial_fit"
    assert lm.metric_history(run.id, "training_rows_seen").values.tolist() == [100, 200, 300, 400]
    ws = api.workspace()
    try:
        saved = dict(ws.lineage.artifacts_of(run.id, "output"))["model"]
    finally:
        ws.close()
    assert run.tags["autolog.model_artifact_id"] == saved.id
    assert saved.properties["class"].endswith("SGDClassifier")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Workspace]]:
    ws = Workspace(f"sqlite:///{tmp_path / 'l.db'}", str(tmp_path / "a"))
    with TestClient(create_app(ws), raise_server_exceptions=False) as c:
        yield c, ws
    ws.close()


def test_a_bad_model_upload_is_refused_and_records_nothing(
    client: tuple[TestClient, Workspace],
) -> None:
    c, ws = client
    run_id = c.post("/api/v1/runs", json={"experiment": "e"}).json()["id"]
    # A file that is not a model tree, and a model tree with a file missing.
    plain = ws.artifacts.put_bytes(b"not a manifest").digest
    rows = np.arange(20, dtype=float).reshape(10, 2)
    good = save_model(ws.artifacts, LogisticRegression().fit(rows, [0, 1] * 5), rows)
    tree = ws.artifacts.get_tree(good.digest)
    broken = save_model(ws.artifacts, LogisticRegression(C=2).fit(rows, [0, 1] * 5), rows)
    shared = {e.digest for e in tree.entries}
    lost = next(e for e in ws.artifacts.get_tree(broken.digest).entries if e.digest not in shared)
    ws.artifacts.delete(lost.digest)
    cases = [
        (f"/runs/{run_id}/models", {"digest": "b3:nothex"}, 400),
        (f"/runs/{run_id}/models", {"digest": "b3:" + "0" * 64}, 404),
        (f"/runs/{run_id}/models", {"digest": plain}, 400),
        (f"/runs/{run_id}/models", {"digest": broken.digest}, 404),  # a file not uploaded
        (f"/runs/{run_id}/models", {"digest": good.digest, "source": "a b"}, 400),
        (f"/runs/{run_id}/models", {"digest": good.digest, "extra": 1}, 400),
        (f"/runs/{run_id}/models", [good.digest], 400),
        ("/runs/nope/models", {"digest": good.digest}, 404),
    ]
    for path, body, status in cases:
        r = c.post(f"/api/v1{path}", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]
    assert dict(ws.lineage.artifacts_of(run_id, "output")) == {}
    ok = c.post(f"/api/v1/runs/{run_id}/models", json={"digest": good.digest})
    assert ok.status_code == 200, ok.text
    assert ok.json()["kind"] == "model" and ok.json()["properties"]["flavor"] == "sklearn"
    assert dict(ws.lineage.artifacts_of(run_id, "output"))["model"].digest == tree.digest
    assert c.post(f"/api/v1/runs/{run_id}/end", json={"status": "finished"}).status_code == 200
    ended = c.post(f"/api/v1/runs/{run_id}/models", json={"digest": good.digest})
    assert ended.status_code == 409, ended.text


def test_training_data_sent_by_digest_is_checked_and_linked_once(
    client: tuple[TestClient, Workspace],
) -> None:
    c, ws = client
    run_id = c.post("/api/v1/runs", json={"experiment": "e"}).json()["id"]
    digest = "b3:" + "a" * 64
    good = {
        "content_digest": digest,
        "rows": 10,
        "columns": [{"name": "x", "type": "double"}],
        "has_target": True,
    }
    cases = [
        ({**good, "content_digest": "b3:nothex"}, 400),
        ({**good, "rows": -1}, 400),
        ({**good, "columns": [{"name": "x"}]}, 400),
        ({**good, "role": "a;b"}, 400),
        ({**good, "extra": 1}, 400),
        ([good], 400),
    ]
    for body, status in cases:
        r = c.post(f"/api/v1/runs/{run_id}/training-data", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]
    missing = c.post("/api/v1/runs/nope/training-data", json=good)
    assert missing.status_code == 404
    assert dict(ws.lineage.artifacts_of(run_id, "input")) == {}
    first = c.post(f"/api/v1/runs/{run_id}/training-data", json=good)
    again = c.post(f"/api/v1/runs/{run_id}/training-data", json=good)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["id"] == again.json()["id"] and first.json()["role"] == "training_data"
    inputs = ws.lineage.artifacts_of(run_id, "input")
    assert [(role, a.kind) for role, a in inputs] == [("training_data", "training_data")]
    assert inputs[0][1].properties["content_digest"] == digest
    assert c.post(f"/api/v1/runs/{run_id}/end", json={"status": "finished"}).status_code == 200
    ended = c.post(f"/api/v1/runs/{run_id}/training-data", json=good)
    assert ended.status_code == 409, ended.text
