"""Connection cap, header and body deadlines, load shedding: a server that keeps answering."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from loopml.demo.flights import TARGET
from loopml.registry.model_registry import Registry
from loopml.serving.options import ServeOptions
from loopml.serving.proto import inference_pb2 as pb
from loopml.serving.server import ServerThread
from loopml.store.workspace import Workspace
from tests.serving.conftest import NUMERIC, Data

ROW = dict(zip(NUMERIC, [3.0, 1.0, 6.0, 1000.0, 40.0, 60.0], strict=True))
HOLD_DISTANCE = 777.0
# The model blocks on this while it predicts a row with distance 777: the test decides
# when the request in flight finishes (the server runs in this process).
release = threading.Event()
# Set when the model has such a row in hand: its call is then admitted and in progress.
entered = threading.Event()


def hold(x: Any) -> Any:
    if (np.asarray(x)[:, NUMERIC.index("distance")] == HOLD_DISTANCE).any():
        entered.set()
        release.wait(60)
    return x


@pytest.fixture(scope="module")
def hold_ws(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Iterator[Workspace]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    root = tmp_path_factory.mktemp("hold")
    ws = Workspace(f"sqlite:///{root / 'loopml.db'}", str(root / "artifacts"))
    X = data.train.select(NUMERIC).fill_null(0).to_pandas().astype(float)
    model = make_pipeline(FunctionTransformer(hold), LogisticRegression(max_iter=300))
    Registry(ws).register("hold", model.fit(X, data.train[TARGET].to_numpy()), X)
    yield ws
    ws.close()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_slow_headers_and_slow_bodies_get_408_and_are_closed(hold_ws: Workspace) -> None:
    options = ServeOptions("hold", port=0, header_timeout=0.5, body_timeout=0.5)
    with ServerThread(hold_ws, options) as server:
        # One byte of a request line, then silence (a slowloris).
        slow = _connect(server.url)
        slow.sendall(b"P")
        answer = _read_all(slow)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        # A connection that never sends anything is closed the same way.
        silent = _connect(server.url)
        assert _read_all(silent).startswith(b"HTTP/1.1 408")
        # Headers in time, then a body that stalls.
        stalled = _connect(server.url)
        stalled.sendall(
            b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"dataframe_records": '
        )
        answer = _read_all(stalled)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"did not arrive within" in answer
        for s in (slow, silent, stalled):
            s.close()
        # Well-behaved clients were never affected.
        r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": [ROW]})
        assert r.status_code == 200, r.text


def test_idle_connections_cannot_lock_out_a_client(hold_ws: Workspace) -> None:
    options = ServeOptions("hold", port=0, max_connections=40)
    with ServerThread(hold_ws, options) as server:
        idle = [_connect(server.url) for _ in range(200)]
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for _ in range(5):
                    r = http.post("/invocations", json={"dataframe_records": [ROW]})
                    assert r.status_code == 200, r.text
                assert http.get("/v2/health/live").status_code == 200
            # The oldest idle sockets were closed to make room.
            idle[0].settimeout(30)
            assert idle[0].recv(1) == b""
        finally:
            for s in idle:
                s.close()


def test_when_every_connection_is_busy_new_ones_get_503_retry_after(hold_ws: Workspace) -> None:
    options = ServeOptions("hold", port=0, max_connections=20, header_timeout=60)
    with ServerThread(hold_ws, options) as server:
        # Each has begun a request (not idle), so none can be evicted. Sent behind a
        # complete request in one write: once its answer is back, the server has read both.
        busy = [_connect(server.url) for _ in range(20)]
        for s in busy:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\nGET /v2/health/li")
        for s in busy:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        try:
            extra = _connect(server.url)
            answer = _read_all(extra)
            extra.close()
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"retry-after: 1" in answer.lower()
        finally:
            for s in busy:
                s.close()


def test_requests_beyond_the_queue_limit_are_shed_with_503(hold_ws: Workspace) -> None:
    release.clear()
    options = ServeOptions("hold", port=0, grpc_port=0, max_queued_requests=1)
    with ServerThread(hold_ws, options) as server:
        held = {**ROW, "distance": HOLD_DISTANCE}
        result: dict[str, httpx.Response] = {}

        def send_held() -> None:
            # Until it is queued itself: a probe in flight at the time sheds it.
            for _ in range(100):
                result["held"] = httpx.post(
                    f"{server.url}/invocations", json={"dataframe_records": [held]}, timeout=60
                )
                if result["held"].status_code != 503:
                    return

        sender = threading.Thread(target=send_held)
        sender.start()
        try:
            deadline = time.monotonic() + 30
            shed = None
            while time.monotonic() < deadline:
                r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": [ROW]})
                if r.status_code == 503:
                    shed = r
                    break
                time.sleep(0.05)  # the held request has not reached the model yet
            assert shed is not None, f"no request was shed while one was held: {result}"
            assert shed.headers["retry-after"] == "1"
            assert "waiting for the model" in shed.json()["error"]
            assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
            metrics = httpx.get(f"{server.url}/metrics").text
            shed_lines = [
                x for x in metrics.splitlines() if x.startswith("loopml_requests_shed_total")
            ]
            assert shed_lines and float(shed_lines[0].split()[-1]) >= 1
        finally:
            release.set()
            sender.join(60)
        assert result["held"].status_code == 200
        r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": [ROW]})
        assert r.status_code == 200


def test_large_bodies_are_answered(hold_ws: Workspace) -> None:
    # Above offload_bytes the body is parsed and converted off the event loop.
    options = ServeOptions("hold", port=0, offload_bytes=1024)
    records = [ROW] * 2000
    with ServerThread(hold_ws, options) as server:
        body = json.dumps({"dataframe_records": records}).encode()
        r = httpx.post(f"{server.url}/invocations", content=body, timeout=60)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2000
        r = httpx.post(
            f"{server.url}/invocations",
            content=json.dumps({"dataframe_records": [{**ROW, "temp": None}] * 2000}),
        )
        assert r.status_code == 422 and "row 0" in r.json()["error"]


# gRPC ------------------------------------------------------------------------------------
SERVICE = "/inference.GRPCInferenceService/"


def _channel(port: int) -> grpc.Channel:
    # Its own connection: channels otherwise share one per target within a process.
    return grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


def _live(channel: grpc.Channel, timeout: float = 30) -> bool:
    call = channel.unary_unary(
        SERVICE + "ServerLive",
        request_serializer=pb.ServerLiveRequest.SerializeToString,
        response_deserializer=pb.ServerLiveResponse.FromString,
    )
    return bool(call(pb.ServerLiveRequest(), timeout=timeout).live)


def _infer_request(distance: float) -> pb.ModelInferRequest:
    row = [*ROW.values()]
    row[NUMERIC.index("distance")] = distance
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="x",
        datatype="FP64",
        shape=[1, len(row)],
        contents=pb.InferTensorContents(fp64_contents=row),
    )
    return pb.ModelInferRequest(model_name="hold", inputs=[tensor])


def _infer(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        SERVICE + "ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )


def test_grpc_connections_beyond_the_cap_are_refused_and_open_ones_answered(
    hold_ws: Workspace,
) -> None:
    options = ServeOptions("hold", port=0, grpc_port=0, max_connections=4)
    with ServerThread(hold_ws, options) as server:
        assert server._ports is not None and server._ports.grpc is not None
        port = server._ports.grpc
        good = _channel(port)
        assert _live(good)
        fillers = [_channel(port) for _ in range(3)]
        for f in fillers:
            grpc.channel_ready_future(f).result(timeout=30)
        extra = _channel(port)
        try:
            with pytest.raises(grpc.RpcError) as refused:
                _live(extra)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            # The well-behaved client already connected is still answered, model included.
            assert _live(good)
            answer = _infer(good)(_infer_request(1000.0), timeout=30)
            assert answer.model_name == "hold" and len(answer.raw_output_contents) >= 1
            # A freed slot takes the next client.
            fillers.pop().close()
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert _live(extra, timeout=5)
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline, "the freed slot was never reused"
                    time.sleep(0.2)
        finally:
            for c in [good, extra, *fillers]:
                c.close()


def test_grpc_calls_beyond_the_cap_are_resource_exhausted_and_rest_still_answers(
    hold_ws: Workspace,
) -> None:
    """With one call slot taken by a call the model holds, another call is refused at once.

    The probe goes out only once the held call is in the model, so it is admitted: probing
    earlier could take the slot first and get the held call refused instead (that race
    failed this test under load)."""
    release.clear()
    entered.clear()
    options = ServeOptions("hold", port=0, grpc_port=0, grpc_max_calls=1)
    with ServerThread(hold_ws, options) as server:
        assert server._ports is not None and server._ports.grpc is not None
        channel = _channel(server._ports.grpc)
        held = _infer(channel).future(_infer_request(HOLD_DISTANCE), timeout=60)
        try:
            assert entered.wait(60), "the held call never reached the model"
            with pytest.raises(grpc.RpcError) as refused:
                _live(channel)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
        finally:
            release.set()
        assert held.result(timeout=60).model_name == "hold"
        # The slot is free once the server has finished the call, which can be a moment
        # after the client has its answer.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert _live(channel)
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                assert time.monotonic() < deadline, "the slot was never freed"
                time.sleep(0.05)
        channel.close()


def test_a_stalled_grpc_client_does_not_hold_a_call_slot(hold_ws: Workspace) -> None:
    """A client that opens a call and never sends its request is cut off after the body
    timeout, so stalled clients cannot take every slot for good."""
    options = ServeOptions("hold", port=0, grpc_port=0, grpc_max_calls=3, body_timeout=1.0)
    stall = threading.Event()

    def never_sends() -> Iterator[pb.ModelInferRequest]:
        stall.wait(60)
        yield from ()

    with ServerThread(hold_ws, options) as server:
        assert server._ports is not None and server._ports.grpc is not None
        channel = _channel(server._ports.grpc)
        stalled_call = channel.stream_unary(
            SERVICE + "ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        try:
            stalled = [stalled_call.future(never_sends(), timeout=60) for _ in range(3)]
            for f in stalled:
                with pytest.raises(grpc.RpcError) as cut:
                    f.result(timeout=60)
                # The server's deadline, not the client's 60 s one.
                assert cut.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "did not arrive within 1 s" in (cut.value.details() or "")
            answer = _infer(channel)(_infer_request(1000.0), timeout=30)
            assert answer.model_name == "hold"
        finally:
            stall.set()
            channel.close()
