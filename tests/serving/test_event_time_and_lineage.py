"""Event times on every protocol, and every prediction log traceable to its model's bytes."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import grpc as grpc_lib
import httpx
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from loopml.demo.flights import FEATURES
from loopml.registry.model_registry import Registry
from loopml.serving.errors import BadRequestError
from loopml.serving.event_time import parse_event_time
from loopml.serving.grpc_service import CONTENTS_FIELD
from loopml.serving.log_reader import read_feedback, read_predictions
from loopml.serving.options import ServeOptions
from loopml.serving.prediction_log import LOG_FORMAT, LOG_KIND
from loopml.serving.proto import inference_pb2 as pb
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import Data, column_arrays, json_inputs
from tests.serving.test_grpc import grpc_inputs

MARCH = datetime(2013, 3, 1, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1362117600, 1362117600.0),
        (1362117600.25, 1362117600.25),
        ("2013-03-01T06:00:00Z", MARCH.timestamp()),
        ("2013-03-01T07:00:00+01:00", MARCH.timestamp()),
        (None, None),
    ],
)
def test_event_time_accepts_epoch_seconds_and_zoned_iso(value: object, seconds: object) -> None:
    assert parse_event_time(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "2013-03-01T06:00:00",  # no zone: refused, not guessed
        "yesterday",
        "",
        True,
        [1362117600],
        {"t": 1},
        float("nan"),
        float("inf"),
        1e300,
        "1362117600",  # text is a number only where it must be (a query parameter)
    ],
)
def test_event_time_refuses_anything_else(value: object) -> None:
    with pytest.raises(BadRequestError, match="event_time"):
        parse_event_time(value)


def test_numeric_text_for_query_parameters() -> None:
    assert parse_event_time("1362117600", numeric_text=True) == 1362117600.0
    with pytest.raises(BadRequestError):
        parse_event_time("nan", numeric_text=True)


def test_event_time_is_logged_from_every_protocol_and_logs_trace_to_the_model(
    fresh_ws: Workspace, data: Data
) -> None:
    options = ServeOptions(
        "delay@champion", port=0, grpc_port=0, deployment="delay-prod", log_flush_interval=0.2
    )
    rows = data.rows.head(2)
    records = rows.select(FEATURES).to_dicts()
    sent: dict[str, float | None] = {}
    iso = "2013-03-01T06:00:00Z"
    with ServerThread(fresh_ws, options) as server, httpx.Client(base_url=server.url) as http:
        body = {"inputs": json_inputs(rows), "parameters": {"event_time": iso}}
        r = http.post("/v2/models/delay/infer", json=body)
        assert r.status_code == 200, r.text
        sent[r.json()["id"]] = MARCH.timestamp()
        r = http.post("/v2/models/delay/infer", json={"inputs": json_inputs(rows)})
        sent[r.json()["id"]] = None
        r = http.post("/invocations", json={"dataframe_records": records, "event_time": 1e9})
        assert r.status_code == 200, r.text
        sent[r.headers["x-request-id"]] = 1e9
        buf = io.BytesIO()
        rows.select(FEATURES).write_csv(buf)
        r = http.post(
            "/invocations",
            content=buf.getvalue(),
            headers={"content-type": "text/csv"},
            params={"event_time": "1000000001.5"},
        )
        assert r.status_code == 200, r.text
        sent[r.headers["x-request-id"]] = 1000000001.5
        assert server._ports is not None
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server._ports.grpc}")
        for i, value in enumerate([1362117600, iso]):
            rid = f"grpc-{i}"
            grpc.infer("delay", grpc_inputs(rows), request_id=rid, parameters={"event_time": value})
            sent[rid] = parse_event_time(value)
        # tritonclient sends no doubles; Triton's and KServe's protos have double_param.
        request = raw_request(rows, "grpc-double")
        request.parameters["event_time"].double_param = 1362117600.5
        channel = grpc_lib.insecure_channel(f"127.0.0.1:{server._ports.grpc}")
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        assert infer(request, timeout=30).id == "grpc-double"
        sent["grpc-double"] = 1362117600.5
        request = raw_request(rows, "grpc-empty")
        request.parameters["event_time"].CopyFrom(pb.InferParameter())
        with pytest.raises(grpc_lib.RpcError) as rpc_err:
            infer(request, timeout=30)
        assert rpc_err.value.code() == grpc_lib.StatusCode.INVALID_ARGUMENT
        channel.close()
        # Bad event times: a clear 4xx / INVALID_ARGUMENT, and nothing logged.
        for bad in ["2013-03-01T06:00:00", "soon", True, [1]]:
            body = {"inputs": json_inputs(rows), "parameters": {"event_time": bad}}
            r = http.post("/v2/models/delay/infer", json=body)
            assert r.status_code == 400 and "event_time" in r.json()["error"], r.text
            r = http.post("/invocations", json={"dataframe_records": records, "event_time": bad})
            assert r.status_code == 400 and "event_time" in r.json()["error"], r.text
        r = http.post(
            "/invocations",
            content=buf.getvalue(),
            headers={"content-type": "text/csv"},
            params={"event_time": "later"},
        )
        assert r.status_code == 400, r.text
        with pytest.raises(InferenceServerException) as err:
            grpc.infer("delay", grpc_inputs(rows), parameters={"event_time": "2013-03-01"})
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
        labels = [{"request_id": rid, "label": 1} for rid in sent]
        assert http.post("/v2/feedback", json={"labels": labels}).status_code == 200
    log = read_predictions(fresh_ws, "delay-prod")
    assert log is not None
    assert log.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    got: dict[str, float | None] = {}
    for row in log.select(["request_id", "event_time"]).to_pylist():
        t = row["event_time"]
        got[row["request_id"]] = None if t is None else t.timestamp()
    assert got == sent

    # Traceability: each log artifact names the model bytes and links to their artifact.
    mv = Registry(fresh_ws).get_version("delay", 1)
    logs = [a for a in _artifacts(fresh_ws, LOG_KIND)]
    assert logs
    for record in logs:
        assert record.properties["format"] == LOG_FORMAT
        assert record.properties["deployment"] == "delay-prod"
        assert record.properties["model_digest"] == mv.digest
        graph = fresh_ws.lineage.graph(record.id, "upstream", max_depth=2)
        assert mv.artifact_id in graph.artifacts
        roles = {(e.role, e.type) for e in graph.edges}
        assert roles == {("model", "input"), ("prediction_log", "output")}
    feedback = _artifacts(fresh_ws, "prediction_feedback")
    assert [f.properties["deployment"] for f in feedback] == ["delay-prod"]
    stored = read_feedback(fresh_ws, "delay-prod")
    assert stored is not None and stored.num_rows == len(sent)


def raw_request(rows: pl.DataFrame, rid: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="delay", id=rid)
    for name, datatype, values in column_arrays(rows):
        request.inputs.add(name=name, datatype=datatype, shape=[rows.height])
        if datatype == "BYTES":
            request.inputs[-1].contents.bytes_contents.extend(v.encode() for v in values)
        else:
            field = CONTENTS_FIELD[datatype]
            getattr(request.inputs[-1].contents, field).extend(values.tolist())
    return request


def _artifacts(ws: Workspace, kind: str) -> list:  # type: ignore[type-arg]
    from sqlalchemy import select

    from loopml.store.metadata.tables import artifacts

    with ws.engine.connect() as conn:
        ids = conn.execute(select(artifacts.c.id).where(artifacts.c.kind == kind)).scalars()
        return [ws.lineage.get_artifact(i) for i in ids]


def test_format_1_logs_without_event_time_still_read(fresh_ws: Workspace) -> None:
    old = pa.table(
        {
            "request_id": ["a", "b"],
            "row": pa.array([0, 0], pa.int32()),
            "timestamp": pa.array([1_000_000, 2_000_000], pa.timestamp("us", tz="UTC")),
            "model": ["delay", "delay"],
            "model_version": [1, 1],
        }
    )
    sink = io.BytesIO()
    pq.write_table(old, sink)
    blob = fresh_ws.artifacts.put_bytes(sink.getvalue())
    fresh_ws.lineage.add_artifact(
        blob.digest,
        LOG_KIND,
        blob.size,
        properties={"format": "loopml.prediction_log/1", "deployment": "old"},
    )
    log = read_predictions(fresh_ws, "old")
    assert log is not None
    assert log.column_names[:4] == ["request_id", "row", "timestamp", "event_time"]
    assert log.column("event_time").null_count == 2
    assert log.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
