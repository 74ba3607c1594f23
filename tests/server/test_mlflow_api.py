"""MLflow's own client (mlflow-skinny, unmodified) against a live ``loopml ui``.

The runs it logs are ordinary loopml runs: read back here through loopml's Tracker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests import needs
from tests.server.conftest import Server, start_server, stop
from tests.servers import read_answers

needs.module("mlflow", "the test extra installs mlflow-skinny")


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("mlflow-ws") / "home"
    proc, url = start_server(home)
    try:
        yield Server(url, home)
    finally:
        stop(proc)


def _client_script(server: Server, tmp_path: Path, code: str) -> str:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _tracker(server: Server) -> Tracker:
    ws = Workspace(f"sqlite:///{server.home / 'loopml.db'}", str(server.home / "artifacts"))
    return Tracker(ws)


def test_a_training_script_with_autolog_logs_loopml_runs(fresh_server: Server, tmp_path: Path):
    out = _client_script(
        fresh_server,
        tmp_path,
        """
        import mlflow
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression

        mlflow.set_experiment("autolog-exp")
        # Logged models and their registration are tested in test_mlflow_registry.py.
        mlflow.sklearn.autolog(log_models=False, log_datasets=False)
        X, y = load_breast_cancer(return_X_y=True)
        with mlflow.start_run(run_name="logreg") as run:
            LogisticRegression(C=0.5, max_iter=50).fit(X, y)
            for step in range(20):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        print(run.info.run_id)
        """,
    )
    run_id = out.strip().splitlines()[-1]
    tracker = _tracker(fresh_server)
    try:
        run = tracker.get_run(run_id)
        assert run.experiment == "autolog-exp"
        assert run.name == "logreg"
        assert run.status == "finished"
        assert run.params["C"] == "0.5"
        assert run.params["max_iter"] == "50"
        assert "training_accuracy_score" in run.metrics
        history = tracker.metric_history(run_id, "loss")
        assert history.steps.tolist() == list(range(20))
        assert history.values[-1] == pytest.approx(1 / 20)
        found = tracker.search_runs("autolog-exp", filter="params.C = '0.5'")
        assert [r.id for r in found] == [run_id]
    finally:
        tracker.close()


def test_search_filters_and_order_through_mlflow(fresh_server: Server, tmp_path: Path):
    out = _client_script(
        fresh_server,
        tmp_path,
        """
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_experiment("search-exp")
        ids = {}
        for depth, auc in ((2, 0.61), (4, 0.72), (6, 0.75)):
            with mlflow.start_run(run_name=f"d{depth}") as run:
                mlflow.log_params({"depth": depth})
                mlflow.log_metric("auc", auc)
                mlflow.set_tag("team", "ops" if depth > 2 else "research")
            ids[depth] = run.info.run_id
        found = mlflow.search_runs(
            experiment_names=["search-exp"],
            filter_string="metrics.auc > 0.7 AND tags.team = 'ops'",
            order_by=["metrics.auc DESC"],
            output_format="list",
        )
        assert [r.info.run_id for r in found] == [ids[6], ids[4]], found
        found = mlflow.search_runs(
            experiment_names=["search-exp"],
            filter_string="attributes.status = 'FINISHED' and params.depth = '2'",
            output_format="list",
        )
        assert [r.info.run_id for r in found] == [ids[2]]
        found = mlflow.search_runs(
            experiment_names=["search-exp"], filter_string="run_name = 'd4'", output_format="list"
        )
        assert [r.info.run_id for r in found] == [ids[4]]
        # Paging: two at a time.
        client = MlflowClient()
        exp = client.get_experiment_by_name("search-exp")
        page = client.search_runs([exp.experiment_id], max_results=2, order_by=["metrics.auc ASC"])
        rest = client.search_runs(
            [exp.experiment_id], max_results=2, order_by=["metrics.auc ASC"],
            page_token=page.token,
        )
        assert [r.info.run_id for r in page] + [r.info.run_id for r in rest] == [
            ids[2], ids[4], ids[6]
        ]
        client.delete_run(ids[2])
        active = mlflow.search_runs(experiment_names=["search-exp"], output_format="list")
        assert ids[2] not in [r.info.run_id for r in active]
        client.restore_run(ids[2])
        assert len(mlflow.search_runs(experiment_names=["search-exp"], output_format="list")) == 3
        print("ok")
        """,
    )
    assert out.strip().endswith("ok")


def test_artifacts_round_trip_byte_identical(fresh_server: Server, tmp_path: Path):
    payload = os.urandom(300_000)
    (tmp_path / "blob.bin").write_bytes(payload)
    out = _client_script(
        fresh_server,
        tmp_path,
        """
        import mlflow
        from mlflow import MlflowClient

        with mlflow.start_run() as run:
            mlflow.log_artifact("blob.bin")
            mlflow.log_artifact("blob.bin", artifact_path="nested/dir")
        client = MlflowClient()
        top = sorted(f.path for f in client.list_artifacts(run.info.run_id))
        assert top == ["blob.bin", "nested"], top
        inner = [f.path for f in client.list_artifacts(run.info.run_id, "nested/dir")]
        assert inner == ["nested/dir/blob.bin"], inner
        path = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="nested/dir/blob.bin", dst_path="out"
        )
        print(run.info.run_id)
        print(path)
        """,
    )
    run_id, path = out.strip().splitlines()[-2:]
    assert Path(path).read_bytes() == payload
    tracker = _tracker(fresh_server)
    try:
        # The upload is an output of the run in loopml's lineage.
        outputs = tracker.workspace.lineage.artifacts_of(run_id, "output")
        assert {role for role, _ in outputs} == {"blob.bin", "nested/dir/blob.bin"}
    finally:
        tracker.close()


def _put_head(server: Server, path: str, length: int) -> bytes:
    host = server.url.removeprefix("http://")
    return (
        f"PUT /api/2.0/mlflow-artifacts/artifacts/{path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _eventually(what: str, check: Callable[[], bool]) -> None:
    # The server notices a client's departure on its own schedule; the deadline is
    # generous so a busy machine only makes this slower, never wrong.
    deadline = time.monotonic() + 120
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_an_abandoned_or_oversized_artifact_upload_leaves_nothing(fresh_server: Server):
    store = fresh_server.home / "artifacts"
    objects = _files(store / "objects")
    path = "0/" + "a" * 32 + "/artifacts/model.bin"
    host, port = fresh_server.url.removeprefix("http://").split(":")
    # Declared 8 MB, 3 MB sent, then the client leaves: the part received went to a temp
    # file in the store, which is removed; nothing is stored or listed.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(_put_head(fresh_server, path, 8 * 1024 * 1024) + os.urandom(3 * 1024 * 1024))
        _eventually("the upload never reached the store", lambda: bool(_files(store / "tmp")))
    _eventually("the abandoned upload's temp file stayed", lambda: not _files(store / "tmp"))
    assert _files(store / "objects") == objects
    listed = httpx.get(
        f"{fresh_server.url}/api/2.0/mlflow-artifacts/artifacts",
        params={"path": "0/" + "a" * 32 + "/artifacts"},
        timeout=30,
    )
    assert listed.status_code == 200 and listed.json() == {"files": []}
    # Declared larger than the server takes: refused at once, in MLflow's error shape.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(_put_head(fresh_server, path, 17 * 1024**3) + b"x")
        [(head, body)] = read_answers(sock, 1)
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 413 Request Entity Too Large", head
    assert b'"error_code":' in body and b"LOOPML_MAX_UPLOAD_BYTES" in body, body
    assert _files(store / "objects") == objects and not _files(store / "tmp")


def _post(server: Server, endpoint: str, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/api/2.0/mlflow/{endpoint}", timeout=30, **kwargs)  # type: ignore[arg-type]


def test_bad_requests_answer_mlflow_errors_not_500(fresh_server: Server):
    cases = [
        (_post(fresh_server, "runs/create", content=b"{not json"), 400),
        (_post(fresh_server, "runs/create", json=[1, 2]), 400),
        (_post(fresh_server, "runs/log-metric", json={"key": "x", "value": 1}), 400),
        (
            _post(fresh_server, "runs/log-metric", json={"run_id": "nope", "key": "x", "value": 1}),
            404,
        ),
        (_post(fresh_server, "experiments/create", json={"name": 7}), 400),
        (_post(fresh_server, "experiments/create", json={"name": "bad\nname"}), 400),
        (_post(fresh_server, "runs/search", json={"filter": "metrics.auc >> 1"}), 400),
        (_post(fresh_server, "runs/search", json={"filter": "datasets.name = 'x'"}), 400),
        (_post(fresh_server, "runs/search", json={"page_token": "garbage"}), 400),
        (_post(fresh_server, "runs/search", json={"max_results": "ten"}), 400),
        (_post(fresh_server, "runs/search", json={"experiment_ids": ["1; drop"]}), 400),
        (_post(fresh_server, "runs/set-tag", json={"run_id": "x", "key": "k", "value": 1}), 404),
        (
            _post(
                fresh_server,
                "runs/log-metric",
                json={"run_id": "x", "key": "k", "value": 1, "timestamp": "soon"},
            ),
            400,
        ),
        (httpx.get(f"{fresh_server.url}/api/2.0/mlflow/experiments/get?experiment_id=999"), 404),
        (httpx.get(f"{fresh_server.url}/api/2.0/mlflow/runs/get?run_id=%00"), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.content, response.text)
        body = response.json()
        assert set(body) == {"error_code", "message"}, body
        assert body["message"]


def test_finished_runs_refuse_writes_and_values_must_be_finite(fresh_server: Server):
    run = _post(fresh_server, "runs/create", json={"experiment_id": "0"}).json()["run"]
    run_id = run["info"]["run_id"]
    bad = _post(
        fresh_server, "runs/log-metric", json={"run_id": run_id, "key": "x", "value": "NaN"}
    )
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    ok = _post(fresh_server, "runs/update", json={"run_id": run_id, "status": "KILLED"})
    assert ok.json()["run_info"]["status"] == "KILLED"
    late = _post(fresh_server, "runs/log-metric", json={"run_id": run_id, "key": "x", "value": 1})
    assert late.status_code == 409 and late.json()["error_code"] == "INVALID_STATE"


def test_tag_names_are_checked_as_loopml_checks_them(fresh_server: Server):
    run_id = _post(fresh_server, "runs/create", json={}).json()["run"]["info"]["run_id"]
    for key in ("x" * 300, "bad\nkey", ""):
        r = _post(fresh_server, "runs/set-tag", json={"run_id": run_id, "key": key, "value": "v"})
        assert r.status_code == 400, (key, r.text)
    ok = _post(fresh_server, "runs/set-tag", json={"run_id": run_id, "key": "team", "value": 7})
    assert ok.status_code == 200
    run = httpx.get(f"{fresh_server.url}/api/2.0/mlflow/runs/get?run_id={run_id}").json()["run"]
    assert {"key": "team", "value": "7"} in run["data"]["tags"]


def test_unimplemented_endpoints_name_themselves(fresh_server: Server):
    r = _post(fresh_server, "experiments/delete", json={"experiment_id": "0"})
    assert r.status_code == 501
    assert r.json()["error_code"] == "NOT_IMPLEMENTED"
    assert "experiments/delete" in r.json()["message"]


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "/abs", "a//b", "a\\b"])
def test_artifact_paths_cannot_escape(fresh_server: Server, path: str):
    url = f"{fresh_server.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
    r = httpx.put(url, content=b"x", timeout=30)
    assert r.status_code in (400, 404), r.text
    assert "error_code" in r.json()
