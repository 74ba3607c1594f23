"""Batch scoring of Parquet files, the build context, and the committed protobuf stubs."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from loopml.core.errors import ConflictError, InvalidInputError
from loopml.demo.flights import FEATURES
from loopml.serving.build import write_build_context
from loopml.serving.model_source import ModelSource
from loopml.serving.scoring import predict_file
from loopml.store.workspace import Workspace
from tests import needs
from tests.serving.conftest import Data, expected


def test_predict_file_in_chunks(shared_ws: Workspace, data: Data, tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    data.rows.write_parquet(src)
    progress: list[tuple[int, int]] = []
    result = predict_file(
        shared_ws,
        "delay@champion",
        src,
        tmp_path / "out.parquet",
        chunk_rows=300,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert result.rows == data.rows.height and result.model == "delay:1"
    assert progress[-1] == (1000, 1000) and len(progress) == 4
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out.columns[: data.rows.width] == data.rows.columns  # input columns kept
    labels, proba = expected(shared_ws, "delay:1", data.rows)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), labels)
    np.testing.assert_allclose(out["proba_1"].to_numpy(), proba[:, 1])


def test_predict_file_refuses_bad_input(shared_ws: Workspace, data: Data, tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    data.rows.drop("dest").write_parquet(src)
    with pytest.raises(InvalidInputError, match="'dest'"):
        predict_file(shared_ws, "delay@champion", src, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()  # nothing half-written
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidInputError, match="not a readable Parquet"):
        predict_file(shared_ws, "delay@champion", tmp_path / "junk.parquet", tmp_path / "o.parquet")


@pytest.mark.slow
def test_predict_command_on_ray(shared_ws: Workspace, data: Data, tmp_path: Path) -> None:
    """`loopml predict --executor ray` in its own process (Ray forks; keep it clean)."""
    needs.module("ray", "the test extra installs ray")
    src = tmp_path / "in.parquet"
    data.rows.select(FEATURES).write_parquet(src)
    env = {**os.environ, "LOOPML_DB": shared_ws.db_url, "LOOPML_ARTIFACTS": shared_ws.artifacts_url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loopml.cli",
            "predict",
            "delay:2",
            str(src),
            "-o",
            str(tmp_path / "out.parquet"),
            "--executor",
            "ray",
            "--chunk-rows",
            "250",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "scored 1,000 rows with delay:2" in done.stdout
    out = pl.read_parquet(tmp_path / "out.parquet")
    labels = expected(shared_ws, "delay:2", data.rows)[0]
    np.testing.assert_array_equal(out["prediction"].to_numpy(), labels)


def test_cli_errors_are_one_clean_line(shared_ws: Workspace, tmp_path: Path) -> None:
    env = {**os.environ, "LOOPML_DB": shared_ws.db_url, "LOOPML_ARTIFACTS": shared_ws.artifacts_url}
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "serve", "delay@nope", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1  # a missing alias is a NotFoundError: exit 1, as Click's
    assert "has no alias 'nope'" in done.stderr and "Traceback" not in done.stderr


def test_build_context(shared_ws: Workspace, tmp_path: Path, data: Data) -> None:
    out = tmp_path / "ctx"
    result = write_build_context(shared_ws, "delay@champion", out)
    names = {str(p.relative_to(out)) for p in result.files}
    assert names >= {
        "Dockerfile",
        "requirements.txt",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "kserve/inferenceservice.yaml",
    }
    dockerfile = (out / "Dockerfile").read_text()
    assert '"loopml", "serve", "delay@champion"' in dockerfile
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert "scikit-learn==" in "\n".join(requirements)
    # loopml comes from the wheel in the context, by path: no index is asked for it.
    assert requirements[0].startswith("./wheels/loopml-") and requirements[0].endswith(".whl")
    assert (out / requirements[0]).is_file()
    assert not any(r.startswith("loopml==") for r in requirements)
    assert not list(out.rglob("*.lock"))
    deployment = yaml.safe_load((out / "k8s/deployment.yaml").read_text())
    assert deployment["kind"] == "Deployment"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    isvc = yaml.safe_load((out / "kserve/inferenceservice.yaml").read_text())
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    ports = isvc["spec"]["predictor"]["containers"][0]["ports"]
    assert {(p["name"], p["containerPort"]) for p in ports} == {("http1", 8080), ("h2c", 8081)}
    assert not (out / "kserve/inferenceservice-storage-uri.yaml").exists()
    # The bundled workspace serves the very same model.
    bundle = Workspace(
        f"sqlite:///{out / 'workspace' / 'loopml.db'}", str(out / "workspace" / "artifacts")
    )
    try:
        model = ModelSource(bundle).load("delay@champion")
        rows = data.rows.head(20)
        np.testing.assert_array_equal(
            model.predict(model.check(rows.select(FEATURES).to_arrow())).labels,
            expected(shared_ws, "delay:1", rows)[0],
        )
    finally:
        bundle.close()
    with pytest.raises(ConflictError, match="not empty"):
        write_build_context(shared_ws, "delay@champion", out)


def test_build_context_for_kserve_storage_uri(shared_ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    write_build_context(shared_ws, "delay:2", out, storage_uri="s3://models/delay")
    isvc = yaml.safe_load((out / "kserve/inferenceservice-storage-uri.yaml").read_text())
    container = isvc["spec"]["predictor"]["containers"][0]
    assert {"name": "STORAGE_URI", "value": "s3://models/delay"} in container["env"]
    script = container["command"][-1]
    assert script.startswith("cp -r /mnt/models /tmp/loopml && LOOPML_HOME=/tmp/loopml exec")
    assert "loopml serve delay@serving" in script
    with pytest.raises(InvalidInputError, match="not a URI"):
        write_build_context(shared_ws, "delay:2", tmp_path / "other", storage_uri="models/x")
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_build_context_installs_without_an_index_and_serves(
    shared_ws: Workspace, tmp_path: Path, data: Data
) -> None:
    """As the Dockerfile does: pip install -r requirements.txt (here with --no-index, so
    nothing can come from an index), then the Dockerfile's command, then one request."""
    import json
    import urllib.request

    from tests.servers import free_port

    ctx = tmp_path / "ctx"
    write_build_context(shared_ws, "delay@champion", ctx)
    venv = tmp_path / "venv"
    # The machine's packages stand in for the index; loopml itself must come from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LOOPML_"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "-q"]
    done = subprocess.run(
        [*pip, "-r", "requirements.txt"],
        cwd=ctx,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import loopml; print(loopml.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where
    cmd = json.loads((ctx / "Dockerfile").read_text().split("\nCMD ", 1)[1].splitlines()[0])
    http, grpc_port = free_port(), free_port()
    swap = {"0.0.0.0": "127.0.0.1", "8080": str(http), "8081": str(grpc_port)}
    cmd = [swap.get(c, c) for c in cmd]
    env["LOOPML_HOME"] = str(ctx / "workspace")
    server = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[0][-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the built server never became ready"
                time.sleep(0.5)
        row = data.rows.select(FEATURES).head(1).to_dicts()
        request = urllib.request.Request(
            f"http://127.0.0.1:{http}/invocations",
            data=json.dumps({"dataframe_records": row}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.loads(answer.read())
        assert answer.status == 200
        assert body["predictions"][0] == expected(shared_ws, "delay:1", data.rows.head(1))[0][0]
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_committed_protobuf_stubs_are_current(tmp_path: Path) -> None:
    from loopml.serving.proto import generate

    for path in generate.generate(tmp_path):
        committed = generate.HERE / path.name
        assert filecmp.cmp(path, committed, shallow=False), (
            f"{committed.name} is stale: run python -m loopml.serving.proto.generate"
        )


def test_feedback_command(fresh_ws: Workspace, tmp_path: Path) -> None:

    import pyarrow as pa

    from loopml.serving.log_reader import read_feedback
    from loopml.serving.model_source import Prediction
    from loopml.serving.prediction_log import LogRecord, PredictionLog

    # `prod` has answered r1 (one row) and r2 (four rows); feedback needs a deployment
    # that served.
    log = PredictionLog(fresh_ws, "prod")
    for rid, n in (("r1", 1), ("r2", 4)):
        inputs = pa.table({"x": [0.0] * n})
        log.append(
            LogRecord(
                rid,
                time.time(),
                "delay",
                1,
                "primary",
                1.0,
                inputs,
                Prediction(np.zeros(n, dtype=np.int64), None),
            )
        )
    log.close()
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,row,label\nr1,0,1\nr2,3,0\n")
    env = {**os.environ, "LOOPML_DB": fresh_ws.db_url, "LOOPML_ARTIFACTS": fresh_ws.artifacts_url}
    cmd = [sys.executable, "-m", "loopml.cli", "feedback", str(labels), "-d", "prod"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 matched a logged prediction" in " ".join(done.stdout.split())
    stored = read_feedback(fresh_ws, "prod")
    assert stored is not None
    assert stored.select(["request_id", "row", "label"]).to_pylist() == [
        {"request_id": "r1", "row": 0, "label": 1},
        {"request_id": "r2", "row": 3, "label": 0},
    ]
    labels.write_text("id,label\nr1,1\n")
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "request_id" in bad.stderr
