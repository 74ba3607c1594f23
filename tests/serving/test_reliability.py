"""The serving part of issue 11's reliability suite, bounded in count and time, loopback only.

* >= 200 hostile payload kinds over REST and gRPC: no 5xx, no INTERNAL;
* schemathesis against the server's OpenAPI document, request bodies included: no 5xx;
* thousands of idle sockets and slow clients: a well-behaved request is still answered;
* SIGTERM under load with 2 workers: no accepted connection unanswered, no answered
  prediction missing from the log;
* SIGKILL under load in strict durability mode: no answered prediction missing.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import psutil
import pytest

from loopml.demo.flights import FEATURES
from loopml.serving.log_reader import read_predictions
from loopml.serving.proto import inference_pb2 as pb
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import (
    Data,
    column_arrays,
    json_inputs,
    start_server_process,
    stop_process,
)
from tests.serving.test_shutdown import LoadResult, _load, _sigterm_under_load

INFER = "/v2/models/delay/infer"
# Values a hostile or careless client puts where a number or a string belongs, as raw JSON.
BAD_VALUES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e309",
    "-1e309",
    "null",
    "true",
    "false",
    '"x"',
    '""',
    "[]",
    "{}",
    "[[1]]",
    str(10**30),
    str(-(10**30)),
    "1.5",
    '"\\ud800"',
    '"\\u0000"',
    '"' + "Z" * 100_000 + '"',
    "-0.0",
    str(2**63),
    str(2**64),
    '"2013-01-01"',
]
COLUMNS = {"float": "temp", "int": "month", "string": "carrier"}


def _rest_kinds(data: Data) -> Iterator[tuple[str, str, bytes, dict[str, str]]]:
    """(kind, path, body, headers) for every hostile REST payload kind."""
    rows = data.rows.head(2)
    records = rows.select(FEATURES).to_dicts()
    oip = json_inputs(rows)
    sentinel = 123456789.25
    for kind, column in COLUMNS.items():
        for value in BAD_VALUES:
            # OIP JSON: the value in one element of one input tensor.
            body = [dict(t) for t in oip]
            for t in body:
                if t["name"] == column:
                    t["data"] = [sentinel, *t["data"][1:]]
            text = json.dumps({"inputs": body}).replace(json.dumps(sentinel), value, 1)
            yield f"oip-{kind}-{value[:12]}", INFER, text.encode(), {}
            # MLflow records: the value in one field of one row.
            recs = [dict(r) for r in records]
            recs[0][column] = sentinel
            text = json.dumps({"dataframe_records": recs}).replace(json.dumps(sentinel), value, 1)
            yield f"records-{kind}-{value[:12]}", "/invocations", text.encode(), {}
    for value in BAD_VALUES:
        text = '{"labels": [{"request_id": "r", "label": ' + value + "}]}"
        yield f"feedback-label-{value[:12]}", "/v2/feedback", text.encode(), {}
        text = '{"dataframe_records": [{"carrier": "UA"}], "event_time": ' + value + "}"
        yield f"event-time-{value[:12]}", "/invocations", text.encode(), {}
    header = ",".join(FEATURES)
    csv_bodies = {
        "csv-inf": header + "\n" + ",".join(["inf"] * len(FEATURES)),
        "csv-nan": header + "\n" + ",".join(["nan"] * len(FEATURES)),
        "csv-empty-values": header + "\n" + "," * (len(FEATURES) - 1),
        "csv-no-rows": header + "\n",
        "csv-garbage": "\x00\x01\x02",
        "csv-unbalanced-quote": header + '\n"UA,1',
        "csv-extra-column": header + ",extra\n" + ",".join(["1"] * (len(FEATURES) + 1)),
        "csv-wrong-width": header + "\n1,2",
        "csv-only-header-dupes": "a,a,a\n1,2,3",
        "csv-huge-number": header + "\n" + ",".join(["1e400"] * len(FEATURES)),
        "csv-bom-utf16": "\ufeff" + header,
    }
    for kind, text in csv_bodies.items():
        yield (
            kind,
            "/invocations",
            text.encode("utf-8", "surrogatepass"),
            {"content-type": "text/csv"},
        )
    structural: dict[str, Any] = {
        "no-inputs-key": {},
        "inputs-null": {"inputs": None},
        "inputs-string": {"inputs": "x"},
        "input-no-name": {"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]},
        "input-bad-datatype": {"inputs": [{**oip[0], "datatype": "FP128"}]},
        "input-shape-huge": {"inputs": [{**oip[0], "shape": [2**62, 2**62]}]},
        "input-shape-deep": {"inputs": [{**oip[0], "shape": [1] * 50}]},
        "input-shape-float": {"inputs": [{**oip[0], "shape": [1.5]}]},
        "input-data-object": {"inputs": [{**oip[0], "data": {"a": 1}}]},
        "input-data-deep": {"inputs": [{**oip[0], "data": json.loads("[" * 40 + "]" * 40)}]},
        "duplicate-inputs": {"inputs": [oip[0], oip[0]]},
        "unknown-output": {"inputs": oip, "outputs": [{"name": "nope"}]},
        "id-non-printable": {"inputs": oip, "id": "a\nb"},
        "id-long": {"inputs": oip, "id": "x" * 10_000},
        "id-number": {"inputs": oip, "id": 5},
        "parameters-list": {"inputs": oip, "parameters": [1]},
        "binary-size-negative": {
            "inputs": [{**oip[0], "parameters": {"binary_data_size": -1}}, *oip[1:]]
        },
        "binary-size-past-end": {
            "inputs": [{**oip[0], "parameters": {"binary_data_size": 10**9}}, *oip[1:]]
        },
        "records-empty": None,
    }
    for kind, body in structural.items():
        if body is None:
            yield kind, "/invocations", b'{"dataframe_records": []}', {}
        else:
            yield kind, INFER, json.dumps(body).encode(), {}
    mlflow: dict[str, Any] = {
        "split-ragged": {"dataframe_split": {"columns": ["a", "b"], "data": [[1], [1, 2, 3]]}},
        "split-columns-numbers": {"dataframe_split": {"columns": [1, 2], "data": [[1, 2]]}},
        "two-forms": {"instances": [[1]], "inputs": [[1]]},
        "instances-mixed": {"instances": [[1], {"a": 1}]},
        "inputs-columns-ragged": {"inputs": {"temp": [1, 2], "month": [1]}},
        "records-nested": {"dataframe_records": [{"temp": {"x": [1]}}]},
        "records-surrogate-key": None,
    }
    for kind, body in mlflow.items():
        raw = (
            b'{"dataframe_records": [{"\\ud800": 1}]}'
            if body is None
            else json.dumps(body).encode()
        )
        yield kind, "/invocations", raw, {}
    good = json.dumps({"inputs": oip}).encode()
    for kind, headers in {
        "header-length-superscript": {"inference-header-content-length": "\xb2"},
        "header-length-huge": {"inference-header-content-length": "9" * 5000},
        "header-length-negative": {"inference-header-content-length": "-5"},
        "header-length-beyond-body": {"inference-header-content-length": "999999"},
        "content-type-csv-for-json": {"content-type": "text/csv"},
        "request-id-header-control": {"x-request-id": "a\tb"},
    }.items():
        path = "/invocations" if kind == "content-type-csv-for-json" else INFER
        yield kind, path, good, headers


def test_hostile_rest_payloads_never_get_a_5xx(server: ServerThread, data: Data) -> None:
    kinds = list(_rest_kinds(data))
    assert len({k for k, *_ in kinds}) == len(kinds)
    failures = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for kind, path, body, headers in kinds:
            encoded = {k: v.encode("latin-1") for k, v in headers.items()}
            r = http.post(path, content=body, headers=encoded)
            if r.status_code >= 500:
                failures.append(f"{kind}: {r.status_code} {r.text[:200]}")
        assert http.get("/v2/health/ready").status_code == 200
        assert http.post(INFER, json={"inputs": json_inputs(data.rows.head(3))}).is_success
    print(f"\nREST hostile payload kinds: {len(kinds)}, 5xx: {len(failures)}")
    assert not failures, "\n".join(failures)


def _grpc_kinds(data: Data) -> Iterator[tuple[str, pb.ModelInferRequest]]:
    rows = data.rows.head(2)

    def base(model: str = "delay") -> pb.ModelInferRequest:
        request = pb.ModelInferRequest(model_name=model)
        for name, datatype, values in column_arrays(rows):
            t = request.inputs.add(name=name, datatype=datatype, shape=[rows.height])
            if datatype == "BYTES":
                t.contents.bytes_contents.extend(str(v).encode() for v in values)
            elif datatype == "FP64":
                t.contents.fp64_contents.extend(values.tolist())
            elif datatype == "INT32":
                t.contents.int_contents.extend(values.tolist())
            else:
                t.contents.int64_contents.extend(values.tolist())
        return request

    def with_input(name: str, change: Callable[[Any], None]) -> pb.ModelInferRequest:
        request = base()
        for t in request.inputs:
            if t.name == name:
                change(t)
        return request

    for value in [float("nan"), float("inf"), float("-inf"), 1e308, -0.0]:

        def set_float(t: Any, v: float = value) -> None:
            t.contents.fp64_contents[0] = v

        yield f"fp64-{value}", with_input("temp", set_float)

    def bad_utf8(t: Any) -> None:
        t.contents.bytes_contents[0] = b"\xff\xfe"

    yield "bytes-not-utf8", with_input("carrier", bad_utf8)
    for shape in ([2**32, 2**32], [2**62, 4], [-1], [0], [1] * 9, [2, 2], [3]):

        def set_shape(t: Any, s: list[int] = shape) -> None:
            del t.shape[:]
            t.shape.extend(s)

        yield f"shape-{shape[:3]}", with_input("temp", set_shape)
    for datatype in ["FP128", "", "BYTES", "BOOL", "INT8", "UINT64", "FP16"]:

        def set_type(t: Any, d: str = datatype) -> None:
            t.datatype = d

        yield f"datatype-{datatype or 'empty'}", with_input("temp", set_type)
    raw = base()
    for t in raw.inputs:
        t.ClearField("contents")
    raw.raw_input_contents.extend([b"\x00" * 3] * len(raw.inputs))
    yield "raw-wrong-lengths", raw
    short = base()
    short.raw_input_contents.append(b"\x00" * 16)
    yield "raw-count-mismatch", short
    bytes_raw = base()
    for t in bytes_raw.inputs:
        t.ClearField("contents")
    bytes_raw.raw_input_contents.extend([b"\xff\xff\xff\x7f"] * len(bytes_raw.inputs))
    yield "raw-bytes-overrun", bytes_raw
    for name, param in [
        ("bool", pb.InferParameter(bool_param=True)),
        ("int-max", pb.InferParameter(int64_param=2**63 - 1)),
        ("uint-max", pb.InferParameter(uint64_param=2**64 - 1)),
        ("double-nan", pb.InferParameter(double_param=float("nan"))),
        ("double-inf", pb.InferParameter(double_param=float("inf"))),
        ("string-junk", pb.InferParameter(string_param="yesterday")),
        ("string-naive", pb.InferParameter(string_param="2013-01-01T00:00:00")),
        ("empty", pb.InferParameter()),
    ]:
        request = base()
        request.parameters["event_time"].CopyFrom(param)
        yield f"event-time-{name}", request
    for kind, change in {
        "unknown-model": lambda r: setattr(r, "model_name", "nope"),
        "empty-model": lambda r: setattr(r, "model_name", ""),
        "version-junk": lambda r: setattr(r, "model_version", "abc"),
        "version-huge": lambda r: setattr(r, "model_version", "9" * 5000),
        "id-non-printable": lambda r: setattr(r, "id", "a\x00b"),
        "id-long": lambda r: setattr(r, "id", "x" * 10_000),
        "no-inputs": lambda r: r.ClearField("inputs"),
        "duplicate-input": lambda r: r.inputs.append(r.inputs[0]),
        "unknown-output": lambda r: r.outputs.add(name="nope"),
        "input-no-name": lambda r: setattr(r.inputs[0], "name", ""),
        "input-name-surrogate-like": lambda r: setattr(r.inputs[0], "name", "\ufffe"),
    }.items():
        request = base()
        change(request)
        yield kind, request


def test_hostile_grpc_payloads_never_get_internal(server: ServerThread, data: Data) -> None:
    assert server._ports is not None and server._ports.grpc is not None
    channel = grpc.insecure_channel(f"127.0.0.1:{server._ports.grpc}")
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    bad_codes = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
    kinds = list(_grpc_kinds(data))
    failures = []
    for kind, request in kinds:
        try:
            infer(request, timeout=60)
        except grpc.RpcError as exc:
            if exc.code() in bad_codes:
                failures.append(f"{kind}: {exc.code()} {exc.details()}")
    channel.close()
    rest_kinds = len(list(_rest_kinds(data)))
    print(f"\ngRPC hostile payload kinds: {len(kinds)}; with REST: {len(kinds) + rest_kinds}")
    assert len(kinds) + rest_kinds >= 200
    assert not failures, "\n".join(failures)


def test_schemathesis_with_request_bodies_finds_no_5xx(server: ServerThread) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    doc = httpx.get(f"{server.url}/openapi.json").json()
    posts = [p for p, ops in doc["paths"].items() if "requestBody" in ops.get("post", {})]
    assert {"/invocations", "/v2/feedback", "/v2/models/{name}/infer"} <= set(posts)
    # Aim the fuzzer at the served model: random names only ever meet the 404.
    for ops in doc["paths"].values():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param["name"] == "name":
                    param["schema"] = {"type": "string", "enum": ["delay"]}
                elif param["name"] == "version":
                    param["schema"] = {"type": "string", "enum": ["1", "2"]}
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=25,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=server.url, timeout=60)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.path}: {response.status_code}")

            # Unsatisfiable: nothing to vary (GET /v2/health/live has no negative cases).
            with contextlib.suppress(Unsatisfiable):
                run()
    print(f"\nschemathesis: {calls} requests, {len(failures)} 5xx")
    assert calls > 100
    assert not failures, "\n".join(failures[:20])


# idle sockets and slow clients --------------------------------------------------------------
IDLE_SOCKETS = 21_000  # the figure
# Holds idle connections in a process of its own: one process's open-file limit (20,000
# where this was written) is below the figure, so the sockets are spread over several.
_HOLDER = """
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(count):
    try:
        held.append(socket.create_connection((host, port), timeout=30))
    except OSError as exc:
        print("stopped:", exc, file=sys.stderr)
        break
print(len(held), flush=True)
sys.stdin.read()
"""


def _fd_limit() -> int:
    """This process's soft limit on open files, raised to the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _hold_idle_sockets(host: str, port: int, total: int) -> tuple[list[subprocess.Popen[str]], int]:
    """Open ``total`` idle connections from holder processes; return them and the count."""
    per_process = max(1000, min(total, _fd_limit() - 500))
    holders: list[subprocess.Popen[str]] = []
    held = 0
    while held < total:
        count = min(per_process, total - held)
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, host, str(port), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout is not None
        opened = int(holder.stdout.readline() or 0)  # the holder's deadline is per connect
        held += opened
        if opened < count:
            break  # the kernel ran out (ports, memory): the assertion below says so
    return holders, held


@pytest.mark.slow
def test_idle_sockets_and_slow_clients_do_not_lock_out_a_good_request(
    shared_ws: Workspace, tmp_path: Path, data: Data
) -> None:
    # Against a server allowed far fewer open files than there are idle sockets, so
    # without a connection cap its descriptors run out.
    server_fds = 4096
    server = start_server_process(shared_ws, tmp_path, fd_limit=server_fds)
    host, port = server.url.removeprefix("http://").split(":")
    holders: list[subprocess.Popen[str]] = []
    slow: list[socket.socket] = []
    stop = threading.Event()

    def dribble() -> None:
        # Slow clients: one byte of a request every 0.2 s.
        request = b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n0123456789"
        i = 0
        while not stop.is_set() and i < len(request):
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(request[i : i + 1])
            i += 1
            stop.wait(0.2)

    try:
        holders, idle = _hold_idle_sockets(host, int(port), IDLE_SOCKETS)
        slow = [socket.create_connection((host, int(port)), timeout=30) for _ in range(50)]
        dribbler = threading.Thread(target=dribble)
        dribbler.start()
        body = {"inputs": json_inputs(data.rows.head(2))}
        started = time.perf_counter()
        r = httpx.post(f"{server.url}{INFER}", json=body, timeout=30)
        seconds = time.perf_counter() - started
        assert r.status_code == 200, r.text
        assert httpx.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200
        print(
            f"\n{idle} idle sockets + {len(slow)} slow clients against a server with "
            f"{server_fds} file descriptors: a good request answered in {seconds:.3f} s"
        )
    finally:
        stop.set()
        for s in slow:
            s.close()
        for holder in holders:
            holder.kill()
            holder.wait(30)
        stop_process(server)
    assert idle >= IDLE_SOCKETS


# shutdown and crashes under load ------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_under_load_with_two_workers(
    fresh_ws: Workspace, tmp_path: Path, data: Data
) -> None:
    _sigterm_under_load(fresh_ws, tmp_path, data, "--workers", "2")


@pytest.mark.slow
def test_sigkill_in_strict_mode_loses_no_answered_prediction(
    fresh_ws: Workspace, tmp_path: Path, data: Data
) -> None:
    server = start_server_process(
        fresh_ws, tmp_path, "--log-durability", "strict", "--name", "strict", "--workers", "2"
    )
    result = LoadResult()
    stop = threading.Event()
    body = {"inputs": json_inputs(data.rows.head(4))}
    threads = [
        threading.Thread(target=_load, args=(server.url, body, result, stop, i % 2 == 0))
        for i in range(8)
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(result.answered) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Supervisor and workers die at once, mid-load, with no chance to flush.
        for proc in [*psutil.Process(server.proc.pid).children(recursive=True), server.proc]:
            proc.send_signal(signal.SIGKILL)
        server.proc.wait(30)
    finally:
        stop.set()
        for t in threads:
            t.join()
        stop_process(server)
    answered = list(result.answered)
    assert len(answered) >= 300
    log = read_predictions(fresh_ws, "strict")
    assert log is not None
    missing = set(answered) - set(log.column("request_id").to_pylist())
    print(f"\nSIGKILL in strict mode: {len(answered)} answered, {len(missing)} missing")
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions lost"
    assert np.all(log.column("row").to_numpy() < 4)
