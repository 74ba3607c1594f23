"""The same protocol over gRPC, driven by tritonclient.grpc."""

from __future__ import annotations

import grpc
import numpy as np
import polars as pl
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import Data, column_arrays, expected


def client(server: ServerThread) -> grpcclient.InferenceServerClient:
    assert server._ports is not None and server._ports.grpc is not None
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server._ports.grpc}")


def grpc_inputs(df: pl.DataFrame) -> list[grpcclient.InferInput]:
    inputs = []
    for name, datatype, values in column_arrays(df):
        t = grpcclient.InferInput(name, [df.height], datatype)
        t.set_data_from_numpy(values)
        inputs.append(t)
    return inputs


def test_health_and_metadata(server: ServerThread) -> None:
    c = client(server)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("delay")
    assert c.is_model_ready("delay", "1")
    assert not c.is_model_ready("delay", "5")
    assert not c.is_model_ready("unknown")
    meta = c.get_server_metadata(as_json=True)
    assert meta["name"] == "loopml"
    model = c.get_model_metadata("delay", as_json=True)
    assert model["versions"] == ["1"]
    assert {i["name"] for i in model["inputs"]} >= {"carrier", "temp", "month"}
    assert [o["name"] for o in model["outputs"]] == ["predict", "predict_proba"]
    with pytest.raises(InferenceServerException, match="not served"):
        c.get_model_metadata("unknown")


def test_infer_matches_local_model(server: ServerThread, shared_ws: Workspace, data: Data) -> None:
    rows = data.rows.slice(200, 50)
    result = client(server).infer("delay", grpc_inputs(rows), request_id="grpc-1")
    labels, proba = expected(shared_ws, "delay:1", rows)
    assert result.get_response().id == "grpc-1"
    assert result.get_response().model_version == "1"
    np.testing.assert_array_equal(result.as_numpy("predict"), labels)
    np.testing.assert_allclose(result.as_numpy("predict_proba"), proba)


def test_bad_input_is_invalid_argument(server: ServerThread, data: Data) -> None:
    rows = data.rows.head(3)
    inputs = [t for t in grpc_inputs(rows) if t.name() != "dest"]
    with pytest.raises(InferenceServerException) as err:
        client(server).infer("delay", inputs)
    assert err.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "'dest'" in err.value.message()
    wrong = grpc_inputs(rows)
    wrong[6] = grpcclient.InferInput("temp", [3], "BYTES")
    wrong[6].set_data_from_numpy(np.array(["a", "b", "c"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="'temp' is string"):
        client(server).infer("delay", wrong)
    with pytest.raises(InferenceServerException) as missing:
        client(server).infer("other", grpc_inputs(rows))
    assert missing.value.status() == str(grpc.StatusCode.NOT_FOUND)


def test_raw_contents_size_checked(server: ServerThread) -> None:
    from loopml.serving.proto import inference_pb2 as pb

    assert server._ports is not None
    with grpc.insecure_channel(f"127.0.0.1:{server._ports.grpc}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        request = pb.ModelInferRequest(model_name="delay")
        request.inputs.add(name="temp", datatype="FP64", shape=[4])
        request.raw_input_contents.append(b"\x00" * 7)
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "7 raw bytes" in (err.value.details() or "")
