"""The Open Inference Protocol over REST, driven by NVIDIA's own client (tritonclient.http)."""

from __future__ import annotations

import httpx
import numpy as np
import polars as pl
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import NUMERIC, Data, column_arrays, expected, json_inputs


def client(server: ServerThread) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.url.removeprefix("http://"))


def triton_inputs(df: pl.DataFrame, *, binary: bool) -> list[httpclient.InferInput]:
    inputs = []
    for name, datatype, values in column_arrays(df):
        t = httpclient.InferInput(name, [df.height], datatype)
        t.set_data_from_numpy(values, binary_data=binary)
        inputs.append(t)
    return inputs


def test_health_and_metadata(server: ServerThread) -> None:
    c = client(server)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("delay")
    assert c.is_model_ready("delay", "1")
    assert not c.is_model_ready("delay", "2")
    assert not c.is_model_ready("no-such-model")
    meta = c.get_server_metadata()
    assert meta["name"] == "loopml" and "binary_tensor_data" in meta["extensions"]
    model = c.get_model_metadata("delay")
    assert model["versions"] == ["1"]
    assert model["platform"] == "loopml-sklearn"
    by_name = {t["name"]: t for t in model["inputs"]}
    assert by_name["carrier"]["datatype"] == "BYTES"
    assert by_name["temp"]["datatype"] == "FP64"
    assert [o["name"] for o in model["outputs"]] == ["predict", "predict_proba"]
    assert model["outputs"][1]["shape"] == [-1, 2]
    assert c.get_model_metadata("delay", "1")["name"] == "delay"
    with pytest.raises(InferenceServerException, match="not served"):
        c.get_model_metadata("delay", "7")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-extension"])
def test_infer_one_tensor_per_column(
    server: ServerThread, shared_ws: Workspace, data: Data, binary: bool
) -> None:
    rows = data.rows.head(37)
    result = client(server).infer(
        "delay", triton_inputs(rows, binary=binary), request_id=f"client-id-{binary}"
    )
    labels, proba = expected(shared_ws, "delay:1", rows)
    assert result.get_response()["id"] == f"client-id-{binary}"
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_array_equal(result.as_numpy("predict"), labels)
    assert result.as_numpy("predict").dtype == np.int8  # typed per the signature
    np.testing.assert_allclose(result.as_numpy("predict_proba"), proba)


def test_requested_outputs_and_versioned_url(
    server: ServerThread, shared_ws: Workspace, data: Data
) -> None:
    rows = data.rows.slice(100, 5)
    outputs = [httpclient.InferRequestedOutput("predict_proba", binary_data=False)]
    result = client(server).infer(
        "delay", triton_inputs(rows, binary=False), model_version="1", outputs=outputs
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba"]
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), expected(shared_ws, "delay:1", rows)[1]
    )
    with pytest.raises(InferenceServerException, match="version '9'"):
        client(server).infer("delay", triton_inputs(rows, binary=False), model_version="9")


def test_request_id_in_every_response(server: ServerThread, data: Data) -> None:
    body = {"id": "mine-1", "inputs": json_inputs(data.rows.head(2))}
    r = httpx.post(f"{server.url}/v2/models/delay/infer", json=body)
    assert r.status_code == 200
    assert r.json()["id"] == "mine-1" and r.headers["x-request-id"] == "mine-1"
    generated = httpx.post(f"{server.url}/v2/models/delay/infer", json={"inputs": body["inputs"]})
    assert generated.json()["id"] == generated.headers["x-request-id"]
    assert len(generated.json()["id"]) == 32
    header = httpx.post(
        f"{server.url}/v2/models/delay/infer",
        json={"inputs": body["inputs"]},
        headers={"X-Request-ID": "from-header"},
    )
    assert header.json()["id"] == "from-header"
    for path in ("/v2/health/live", "/v2", "/nowhere"):
        assert httpx.get(f"{server.url}{path}").headers["x-request-id"]
    bad = httpx.post(
        f"{server.url}/v2/models/delay/infer", content=b"{", headers={"X-Request-ID": "b1"}
    )
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "b1"


def test_single_2d_tensor(numeric_server: ServerThread, shared_ws: Workspace, data: Data) -> None:
    rows = data.rows.head(20)
    matrix = rows.select(NUMERIC).fill_null(0).to_numpy().astype(np.float64)
    t = httpclient.InferInput("input-0", list(matrix.shape), "FP64")
    t.set_data_from_numpy(matrix, binary_data=False)
    result = client(numeric_server).infer("numeric", [t])
    from loopml.registry.model_registry import Registry

    local = Registry(shared_ws).load("numeric:1").predict(matrix)
    np.testing.assert_array_equal(result.as_numpy("predict"), local)
    wrong = httpclient.InferInput("input-0", [20, 3], "FP64")
    wrong.set_data_from_numpy(matrix[:, :3], binary_data=False)
    with pytest.raises(InferenceServerException, match=r"\[20, 3\].*takes 6 columns"):
        client(numeric_server).infer("numeric", [wrong])
