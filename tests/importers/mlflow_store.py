"""Build a real MLflow tracking store with MLflow's own client (mlflow-skinny), in a child
process so MLflow's global state never touches the test process.

    python tests/importers/mlflow_store.py DIR

writes DIR/mlflow.db, DIR/mlruns/... and DIR/expected.json: what the client logged, taken
from the client's side (ids it was given, values and timestamps it sent, bytes it
uploaded), for the test to compare the import against.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
warnings.filterwarnings("ignore")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

T0 = 1_700_000_000_000  # ms: fixed timestamps, so the test compares exact values


def main(folder: Path) -> None:
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.chdir(folder)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    root = (folder / "mlruns").as_uri()
    exp_a = client.create_experiment("flights-a", artifact_location=f"{root}/1")
    exp_b = client.create_experiment("flights-b", artifact_location=f"{root}/2")
    expected: dict[str, object] = {"experiments": ["flights-a", "flights-b"], "runs": {}}
    runs: dict[str, dict[str, object]] = {}

    # A training run: params, tags, two metric histories with explicit steps and times,
    # one NaN point, artifacts (text and binary, nested), a model logged and registered.
    mlflow.set_experiment(experiment_id=exp_a)
    data = load_breast_cancer(as_frame=True)
    X = data.frame[list(data.feature_names[:4])].rename(columns=lambda c: c.replace(" ", "_"))
    y = data.target
    with mlflow.start_run(run_name="train-lr") as run:
        rid = run.info.run_id
        mlflow.log_params({"C": 0.5, "solver": "lbfgs"})
        mlflow.set_tags({"team": "ops", "stage": "dev"})
        loss = [(step, T0 + 1000 * step, 1.0 / (step + 1)) for step in range(40)]
        client.log_batch(rid, metrics=[Metric("loss", v, ts, s) for s, ts, v in loss])
        acc = [(0, T0, 0.5), (1, T0 + 7, 0.75), (1, T0 + 9, 0.8)]  # a repeated step
        for s, ts, v in acc:
            client.log_metric(rid, "acc", v, timestamp=ts, step=s)
        client.log_metric(rid, "acc", float("nan"), timestamp=T0 + 20, step=2)
        text = folder / "report.txt"
        text.write_text("loss went down\n")
        blob = folder / "weights.bin"
        blob.write_bytes(np.random.default_rng(0).bytes(70_000))
        mlflow.log_artifact(str(text))
        mlflow.log_artifact(str(blob), artifact_path="nested/deeper")
        model = LogisticRegression(C=0.5, max_iter=500).fit(X, y)
        mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=X.head(5),
            serialization_format="cloudpickle",
            registered_model_name="cancer-clf",
        )
    info = client.get_run(rid).info
    runs[rid] = {
        "experiment": "flights-a",
        "name": "train-lr",
        "status": "finished",
        "start_ms": info.start_time,
        "end_ms": info.end_time,
        "params": {"C": "0.5", "solver": "lbfgs"},
        "tags": {"team": "ops", "stage": "dev"},
        "metrics": {"loss": loss, "acc": acc},
        "files": {
            "report.txt": _b64(text.read_bytes()),
            "nested/deeper/weights.bin": _b64(blob.read_bytes()),
        },
    }
    expected["train_run"] = rid
    expected["predict_rows"] = X.head(20).to_dict(orient="list")
    expected["predictions_v1"] = model.predict(X.head(20)).tolist()

    # A second version of the model from a failed run, by MlflowClient.
    run2 = client.create_run(exp_a, run_name="train-lr-2", start_time=T0)
    rid2 = run2.info.run_id
    client.log_batch(
        rid2,
        metrics=[Metric("loss", 0.25, T0 + 5, 0)],
        params=[Param("C", "2.0")],
        tags=[RunTag("team", "ops")],
    )
    with mlflow.start_run(run_id=rid2):
        model2 = LogisticRegression(C=2.0, max_iter=500).fit(X, y)
        mlflow.sklearn.log_model(
            model2,
            name="model",
            input_example=X.head(5),
            serialization_format="cloudpickle",
            registered_model_name="cancer-clf",
        )
    client.set_terminated(rid2, status="FAILED", end_time=T0 + 60_000)
    runs[rid2] = {
        "experiment": "flights-a",
        "name": "train-lr-2",
        "status": "failed",
        "start_ms": T0,
        "end_ms": T0 + 60_000,
        "params": {"C": "2.0"},
        "tags": {"team": "ops"},
        "metrics": {"loss": [(0, T0 + 5, 0.25)]},
        "files": {},
    }
    expected["predictions_v2"] = model2.predict(X.head(20)).tolist()
    client.set_registered_model_alias("cancer-clf", "champion", "1")
    client.set_registered_model_alias("cancer-clf", "challenger", "2")
    client.update_registered_model("cancer-clf", description="Flags malignant tumours.")
    client.set_registered_model_tag("cancer-clf", "owner", "oncology")

    # A child run in the other experiment, pointing at its parent by MLflow's tag.
    child = client.create_run(
        exp_b, run_name="child", start_time=T0, tags={"mlflow.parentRunId": rid}
    )
    client.log_metric(child.info.run_id, "score", 3.0, timestamp=T0 + 1, step=7)
    client.set_terminated(child.info.run_id, "KILLED", end_time=T0 + 2)
    runs[child.info.run_id] = {
        "experiment": "flights-b",
        "name": "child",
        "status": "killed",
        "start_ms": T0,
        "end_ms": T0 + 2,
        "params": {},
        "tags": {"mlflow.parentRunId": rid},
        "metrics": {"score": [(7, T0 + 1, 3.0)]},
        "files": {},
    }

    # A model version loopml cannot serve: a custom python_function model.
    custom = folder / "custom-model"
    custom.mkdir()
    (custom / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: my_company.models\n"
    )
    (custom / "weights.json").write_text("{}")
    client.create_registered_model("custom-scorer", description="Scores in-house.")
    client.create_model_version("custom-scorer", str(custom), run_id=rid)

    # Not copied: a run still running, and a deleted run.
    running = client.create_run(exp_a, run_name="still-running")
    deleted = client.create_run(exp_a, run_name="deleted")
    client.set_terminated(deleted.info.run_id)
    client.delete_run(deleted.info.run_id)
    expected["running_run"] = running.info.run_id
    expected["deleted_run"] = deleted.info.run_id
    expected["runs"] = runs
    (folder / "expected.json").write_text(json.dumps(expected))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
