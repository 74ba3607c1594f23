"""Batch scoring of Parquet files, the build context, and the committed protobuf stubs."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
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
    pytest.importorskip("ray")
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
    assert done.returncode == 2
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
    assert "scikit-learn==" in (out / "requirements.txt").read_text()
    deployment = yaml.safe_load((out / "k8s/deployment.yaml").read_text())
    assert deployment["kind"] == "Deployment"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    isvc = yaml.safe_load((out / "kserve/inferenceservice.yaml").read_text())
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
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


def test_committed_protobuf_stubs_are_current(tmp_path: Path) -> None:
    from loopml.serving.proto import generate

    for path in generate.generate(tmp_path):
        committed = generate.HERE / path.name
        assert filecmp.cmp(path, committed, shallow=False), (
            f"{committed.name} is stale: run python -m loopml.serving.proto.generate"
        )


def test_feedback_command(fresh_ws: Workspace, tmp_path: Path) -> None:
    from loopml.serving.log_reader import read_feedback

    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,row,label\nr1,0,1\nr2,3,0\n")
    env = {**os.environ, "LOOPML_DB": fresh_ws.db_url, "LOOPML_ARTIFACTS": fresh_ws.artifacts_url}
    cmd = [sys.executable, "-m", "loopml.cli", "feedback", str(labels), "-d", "prod"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stored = read_feedback(fresh_ws, "prod")
    assert stored is not None
    assert stored.select(["request_id", "row", "label"]).to_pylist() == [
        {"request_id": "r1", "row": 0, "label": 1},
        {"request_id": "r2", "row": 3, "label": 0},
    ]
    labels.write_text("id,label\nr1,1\n")
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "request_id" in bad.stderr
