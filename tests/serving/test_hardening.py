"""Issue 11's serving findings: each once answered 500 (or the wrong thing); now a clear 4xx.

Non-finite and missing values, model exceptions, the 500s found, the CSV row limit,
canary bucketing of lookups, feedback labels, ragged arrays, gRPC shape overflow, and
REST and gRPC agreeing through one error table.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from loopml.demo.flights import FEATURES, TARGET
from loopml.registry.model_registry import Registry
from loopml.serving.batching import MicroBatcher
from loopml.serving.model_source import Prediction
from loopml.serving.options import CanarySpec, ServeOptions
from loopml.serving.proto import inference_pb2 as pb
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import NUMERIC, Data, json_inputs
from tests.serving.test_grpc import grpc_inputs

# numeric:1 was trained on a float matrix without missing values; delay:1 on flights
# data whose temp and humid columns have gaps (nullable).
ROW = [3.0, 1.0, 6.0, 1000.0, 40.0, 60.0]


def matrix_text(value_token: str, column: int = 2, row: int = 1) -> str:
    """Two rows as a JSON array text, one value replaced by a raw token (NaN, null, ...)."""
    text = [[json.dumps(v) for v in r] for r in (ROW, ROW)]
    text[row][column] = value_token
    return "[" + ", ".join("[" + ", ".join(r) + "]" for r in text) + "]"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e309", "null"])
def test_non_finite_and_missing_values_are_422_naming_column_and_row(
    numeric_server: ServerThread, token: str
) -> None:
    with httpx.Client(base_url=numeric_server.url) as http:
        r = http.post(
            "/invocations",
            content=('{"instances": ' + matrix_text(token) + "}").encode(),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, r.text
        assert "row 1" in r.json()["error"]
        columns = Registry_columns(http)
        assert repr(columns[2]) in r.json()["error"]
        # The same on the OIP endpoint with a [rows, columns] tensor.
        oip = (
            '{"inputs": [{"name": "x", "shape": [2, 6], "datatype": "FP64", "data": '
            + matrix_text(token)
            + "}]}"
        )
        r = http.post("/v2/models/numeric/infer", content=oip.encode())
        assert r.status_code == 422, r.text
        assert "row 1" in r.json()["error"]


def Registry_columns(http: httpx.Client) -> list[str]:
    meta = http.get("/v2/models/numeric").json()
    return [t["name"] for t in meta["inputs"]]


def test_non_finite_values_in_csv_and_binary_tensors(numeric_server: ServerThread) -> None:
    with httpx.Client(base_url=numeric_server.url) as http:
        columns = Registry_columns(http)
        csv = ",".join(columns) + "\n" + ",".join(map(str, ROW)) + "\n1,1,inf,1,1,1\n"
        r = http.post("/invocations", content=csv, headers={"content-type": "text/csv"})
        assert r.status_code == 422 and "row 1" in r.json()["error"], r.text
        csv = ",".join(columns) + "\n" + ",".join(map(str, ROW)) + "\n1,1,,1,1,1\n"
        r = http.post("/invocations", content=csv, headers={"content-type": "text/csv"})
        assert r.status_code == 422 and "missing" in r.json()["error"], r.text
    matrix = np.array([ROW, ROW], dtype=np.float64)
    matrix[0, 4] = np.nan
    client = httpclient.InferenceServerClient(numeric_server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("x", list(matrix.shape), "FP64")
    tensor.set_data_from_numpy(matrix, binary_data=True)
    with pytest.raises(InferenceServerException) as err:
        client.infer("numeric", [tensor])
    assert "row 0" in str(err.value) and repr(columns[4]) in str(err.value)
    assert err.value.status() == "422"


def test_nullable_columns_take_missing_values_but_not_infinity(
    server: ServerThread, data: Data
) -> None:
    rows = data.rows.head(2)
    inputs = json_inputs(rows)
    for t in inputs:
        if t["name"] == "temp":
            t["data"] = [None, 50.0]
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/v2/models/delay/infer", json={"inputs": inputs}).status_code == 200
        body = json.dumps({"inputs": inputs}).replace("null", "Infinity", 1)
        r = http.post("/v2/models/delay/infer", content=body)
        assert r.status_code == 422 and "'temp' row 0 holds Infinity" in r.json()["error"]
    # gRPC: INVALID_ARGUMENT with the same message.
    assert server._ports is not None
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server._ports.grpc}")
    tensors = grpc_inputs(rows)
    for t, df_col in zip(tensors, FEATURES, strict=True):
        if df_col == "temp":
            t.set_data_from_numpy(np.array([np.inf, 1.0]))
    with pytest.raises(InferenceServerException) as err:
        c.infer("delay", tensors)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'temp' row 0 holds Infinity" in str(err.value)


# a model that raises for some inputs ------------------------------------------------------
def refuse_negative(x: Any) -> Any:
    if (np.asarray(x) < 0).any():
        raise ValueError("negative distances are not flights")
    return x


def crash_on_huge(x: Any) -> Any:
    if (np.asarray(x) > 1e12).any():
        raise RuntimeError("boom")
    return x


@pytest.fixture(scope="module")
def picky_server(
    tmp_path_factory: pytest.TempPathFactory, data: Data
) -> Iterator[tuple[ServerThread, Workspace]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    root: Path = tmp_path_factory.mktemp("picky")
    ws = Workspace(f"sqlite:///{root / 'loopml.db'}", str(root / "artifacts"))
    X = data.train.select(NUMERIC).fill_null(0).to_pandas().astype(float)
    model = make_pipeline(
        FunctionTransformer(refuse_negative),
        FunctionTransformer(crash_on_huge),
        LogisticRegression(max_iter=300),
    ).fit(X, data.train[TARGET].to_numpy())
    Registry(ws).register("picky", model, X)
    srv = ServerThread(ws, ServeOptions("picky", port=0, grpc_port=0))
    srv.start()
    yield srv, ws
    srv.stop()
    ws.close()


def test_a_model_exception_says_it_came_from_the_model(
    picky_server: tuple[ServerThread, Workspace],
) -> None:
    server, _ = picky_server
    good = dict(zip(NUMERIC, ROW, strict=True))
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/invocations", json={"dataframe_records": [good]}).status_code == 200
        r = http.post("/invocations", json={"dataframe_records": [{**good, "distance": -5.0}]})
        assert r.status_code == 422, r.text
        assert "model picky:1 refused the input" in r.json()["error"]
        assert "negative distances" in r.json()["error"]
        r = http.post("/invocations", json={"dataframe_records": [{**good, "distance": 1e13}]})
        assert r.status_code == 500, r.text
        assert "model picky:1 failed" in r.json()["error"]
        metrics = http.get("/metrics").text
    assert 'loopml_request_errors_total{code="422",endpoint="/invocations",protocol="http"}' in (
        metrics
    )
    assert server._ports is not None
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server._ports.grpc}")
    t = grpcclient.InferInput("x", [1, 6], "FP64")
    t.set_data_from_numpy(np.array([[*ROW[:3], -5.0, *ROW[4:]]]))
    with pytest.raises(InferenceServerException) as err:
        c.infer("picky", [t])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "model picky:1 refused the input" in str(err.value)


def test_a_failing_request_fails_alone_in_its_batch() -> None:
    release = threading.Event()
    calls: list[list[int]] = []

    def predict(table: pa.Table) -> Prediction:
        if not calls:
            release.wait(10)
        values = table.column("x").to_pylist()
        calls.append(values)
        if any(v < 0 for v in values):
            raise ValueError("negative")
        return Prediction(np.array(values) * 2, None)

    async def main() -> None:
        batcher = MicroBatcher(predict, max_batch_rows=100)
        blocker = asyncio.ensure_future(batcher.submit(pa.table({"x": [0]})))
        await asyncio.sleep(0.05)
        good = [asyncio.ensure_future(batcher.submit(pa.table({"x": [i]}))) for i in (1, 2, 3)]
        bad = asyncio.ensure_future(batcher.submit(pa.table({"x": [-1]})))
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        assert [(await g).labels.tolist() for g in good] == [[2], [4], [6]]
        with pytest.raises(ValueError, match="negative"):
            await bad
        await batcher.close()

    asyncio.run(main())
    # The batch of four failed once; bisection then ran the first half (answered), and
    # split the second, where the failure had to be, without running it whole again.
    assert calls == [[0], [1, 2, 3, -1], [1, 2], [3], [-1]]


def _batch_with_one_bad(
    requests: int, bad_at: int
) -> tuple[list[list[int]], list[object], list[list[int]]]:
    """Queue ``requests`` requests as one batch, the one at ``bad_at`` holding a row the
    model raises on; return each request's rows, its outcome, and every model call's rows."""
    release = threading.Event()
    calls: list[list[int]] = []

    def predict(table: pa.Table) -> Prediction:
        if not calls:
            release.wait(10)
        values = table.column("x").to_pylist()
        calls.append(values)
        if any(v < 0 for v in values):
            raise ValueError(f"negative among {values}")
        return Prediction(np.array(values) * 2, None)

    # Request i holds rows 10i+1 and 10i+2; the bad one holds a negative row too.
    rows = [[10 * i + 1, 10 * i + 2] for i in range(requests)]
    rows[bad_at] = [10 * bad_at + 1, -(10 * bad_at + 2)]

    async def main() -> list[object]:
        batcher = MicroBatcher(predict, max_batch_rows=1000)
        blocker = asyncio.ensure_future(batcher.submit(pa.table({"x": [0]})))
        await asyncio.sleep(0.05)
        futures = [asyncio.ensure_future(batcher.submit(pa.table({"x": r}))) for r in rows]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        results = await asyncio.gather(*futures, return_exceptions=True)
        await batcher.close()
        return results

    return rows, asyncio.run(main()), calls


@pytest.mark.parametrize("requests", [2, 5, 8, 13])
def test_bisection_finds_the_failing_request_and_counts_each_rows_runs(requests: int) -> None:
    """For each position of one bad request in a batch, count how often each row went
    through the model: every healthy row is answered, none more than 1 + ceil(log2 n)
    times, and the model runs at most 2 * ceil(log2 n) times after the failed batch
    (re-running each request alone, as before, took n)."""
    depth = math.ceil(math.log2(requests))
    for bad_at in range(requests):
        rows, results, calls = _batch_with_one_bad(requests, bad_at)
        for i, result in enumerate(results):
            if i == bad_at:
                assert isinstance(result, ValueError)
                # Its error came from a call where it ran alone.
                assert str(result) == f"negative among {rows[bad_at]}"
            else:
                assert isinstance(result, Prediction)
                assert result.labels.tolist() == [2 * v for v in rows[i]]
        assert calls[1] == [v for r in rows for v in r]  # one batch first
        runs = {v: sum(v in c for c in calls) for r in rows for v in r}
        healthy = [v for i, r in enumerate(rows) for v in r if i != bad_at]
        assert all(2 <= runs[v] <= 1 + depth for v in healthy), (bad_at, runs)
        assert len(calls) - 2 <= 2 * depth, (bad_at, calls)


# the 500s found, and the CSV row limit -------------------------------------------------
def test_lone_surrogate_column_name_and_non_ascii_header_digits(
    server: ServerThread, data: Data
) -> None:
    with httpx.Client(base_url=server.url) as http:
        body = b'{"dataframe_records": [{"\\ud800": 1}]}'
        r = http.post("/invocations", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "not printable" in r.json()["error"], r.text
        body = b'{"dataframe_split": {"columns": ["\\ud800"], "data": [[1]]}}'
        r = http.post("/invocations", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        payload = json.dumps({"inputs": json_inputs(data.rows.head(1))}).encode()
        # Headers arrive as latin-1: b"\xb2" is "²", which str.isdigit() takes for a digit.
        for header in [b"\xb2", b"1" * 5000, b"-1"]:
            r = http.post(
                "/v2/models/delay/infer",
                content=payload,
                headers={"inference-header-content-length": header},
            )
            assert r.status_code == 400 and "header" in r.json()["error"], (header, r.text)


def test_csv_bodies_obey_the_row_limit(server: ServerThread, data: Data) -> None:
    # The session server takes at most 5000 rows per request.
    buf = io.BytesIO()
    pl.concat([data.rows.select(FEATURES)] * 6).write_csv(buf)
    r = httpx.post(
        f"{server.url}/invocations", content=buf.getvalue(), headers={"content-type": "text/csv"}
    )
    assert r.status_code == 413 and "at most 5000" in r.json()["error"], r.text


# lookups, labels, arrays, shapes --------------------------------------------------------
def test_metadata_and_readiness_describe_the_primary_not_a_canary(fresh_ws: Workspace) -> None:
    # 45 %: the bucket of the literal id "metadata" (44.4) once sent lookups to the canary.
    options = ServeOptions(
        "delay@champion", port=0, grpc_port=0, canary=CanarySpec.parse("delay@challenger:45")
    )
    with ServerThread(fresh_ws, options) as server, httpx.Client(base_url=server.url) as http:
        meta = http.get("/v2/models/delay").json()
        assert meta["parameters"]["role"] == "primary"
        assert meta["parameters"]["version"] == "1"
        assert meta["versions"] == ["1", "2"]
        assert server._ports is not None
        c = grpcclient.InferenceServerClient(f"127.0.0.1:{server._ports.grpc}")
        assert c.is_model_ready("delay")
        assert c.get_model_metadata("delay", as_json=True)["versions"] == ["1", "2"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_feedback_refuses_non_finite_labels(server: ServerThread, token: str) -> None:
    body = '{"labels": [{"request_id": "r1", "label": ' + token + "}]}"
    r = httpx.post(f"{server.url}/v2/feedback", content=body)
    assert r.status_code == 400 and "finite" in r.json()["error"], r.text


def test_ragged_nested_arrays_are_refused(numeric_server: ServerThread) -> None:
    for data in ([[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5, 6], [1, [2]]]):
        body = {"inputs": [{"name": "x", "shape": [2, 6], "datatype": "FP64", "data": data}]}
        r = httpx.post(f"{numeric_server.url}/v2/models/numeric/infer", json=body)
        assert r.status_code == 400 and "shape [2, 6]" in r.json()["error"], r.text
    good = {"inputs": [{"name": "x", "shape": [2, 6], "datatype": "FP64", "data": [ROW, ROW]}]}
    assert httpx.post(f"{numeric_server.url}/v2/models/numeric/infer", json=good).is_success


def test_grpc_shape_product_cannot_overflow(server: ServerThread) -> None:
    assert server._ports is not None
    channel = grpc.insecure_channel(f"127.0.0.1:{server._ports.grpc}")
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    # 2**32 * 2**32 wraps to 0 in int64: it once passed as an empty tensor.
    request = pb.ModelInferRequest(model_name="delay")
    request.inputs.add(name="temp", datatype="FP64", shape=[2**32, 2**32])
    with pytest.raises(grpc.RpcError) as err:
        infer(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    channel.close()


def test_rest_and_grpc_agree_on_a_signature_mismatch(server: ServerThread, data: Data) -> None:
    rows = data.rows.head(1)
    inputs = [t for t in json_inputs(rows) if t["name"] != "temp"]
    r = httpx.post(f"{server.url}/v2/models/delay/infer", json={"inputs": inputs})
    assert r.status_code == 422 and "missing input" in r.json()["error"]
    assert server._ports is not None
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{server._ports.grpc}")
    tensors = [t for t in grpc_inputs(rows) if t.name() != "temp"]
    with pytest.raises(InferenceServerException) as err:
        c.infer("delay", tensors)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'loopml_request_errors_total{code="422",endpoint="ModelInfer",protocol="grpc"}' in (
        metrics
    )
