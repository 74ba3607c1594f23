"""The gRPC edge: ``inference.GRPCInferenceService`` on grpc.aio, in the REST server's loop.

Handlers are registered by hand from the generated message classes (no generated service
code). Errors become the gRPC code the one error table gives
(:func:`loopml.core.errors.error_codes`), and the metrics label them with the same HTTP
status REST would answer, so both protocols count a mistake alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message

from loopml.core.errors import LoopmlError, NotFoundError, error_codes
from loopml.serving import edge, tensors
from loopml.serving.errors import RequestTimeoutError
from loopml.serving.event_time import EVENT_TIME, parse_event_time
from loopml.serving.info import EXTENSIONS, SERVER_NAME, server_version
from loopml.serving.model_source import ServedModel
from loopml.serving.proto import inference_pb2 as pb
from loopml.serving.runtime import ServingRuntime, check_request_id, new_request_id

SERVICE = "inference.GRPCInferenceService"
log = logging.getLogger("loopml.serving")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

# Which repeated field of InferTensorContents holds each datatype.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class InferenceServicer:
    def __init__(self, runtime: ServingRuntime) -> None:
        self.runtime = runtime
        self.options = runtime.options

    async def server_live(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.runtime.ready)

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        try:
            self.runtime.deployment.select(request.name, request.version or None, None)
        except NotFoundError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self.runtime.ready)

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=server_version(), extensions=EXTENSIONS
        )

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        deployment = self.runtime.deployment
        route = deployment.select(request.name, request.version or None, None)
        model = route.model
        versions = sorted(
            {str(r.model.version) for r in deployment.routes() if r.model.name == model.name},
            key=int,
        )

        def spec(s: tensors.TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
            return pb.ModelMetadataResponse.TensorMetadata(
                name=s.name, datatype=s.datatype, shape=list(s.shape)
            )

        return pb.ModelMetadataResponse(
            name=model.name,
            versions=versions,
            platform=f"loopml-{model.flavor}",
            inputs=[spec(s) for s in tensors.input_specs(model)],
            outputs=[spec(s) for s in tensors.output_specs(model)],
        )

    async def model_infer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        started = time.perf_counter()
        rid = check_request_id(request.id) if request.id else new_request_id()
        event_time = _event_time(request)
        # Decode and convert a large request off the event loop (see rest_app.off_loop).
        large = request.ByteSize() > self.options.offload_bytes
        if large:
            inputs = await asyncio.to_thread(_decode_inputs, request, self.options.max_elements)
        else:
            inputs = _decode_inputs(request, self.options.max_elements)
        max_rows = self.options.max_request_rows

        def build(model: ServedModel) -> Any:
            return tensors.to_table(inputs, model, max_rows=max_rows)

        result = await edge.infer(
            self.runtime,
            build,
            request_id=rid,
            model_name=request.model_name,
            version=request.model_version or None,
            started=started,
            event_time=event_time,
            offload=large,
        )
        requested = [o.name for o in request.outputs] or None
        outs = tensors.outputs(result.model, result.prediction, requested)
        response = pb.ModelInferResponse(
            model_name=result.model.name, model_version=str(result.model.version), id=rid
        )
        for t in outs:
            response.outputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
            response.raw_output_contents.append(tensors.raw_bytes(t))
        return response


def _event_time(request: pb.ModelInferRequest) -> float | None:
    if EVENT_TIME not in request.parameters:
        return None
    param = request.parameters[EVENT_TIME]
    choice = param.WhichOneof("parameter_choice")
    if choice is None:
        raise tensors.BadRequestError(f"the {EVENT_TIME} parameter has no value")
    return parse_event_time(getattr(param, choice))


def _decode_inputs(request: pb.ModelInferRequest, max_elements: int) -> list[tensors.InputTensor]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise tensors.BadRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    out = []
    for i, t in enumerate(request.inputs):
        shape = list(t.shape)
        if raw:
            out.append(
                tensors.from_raw(t.name, t.datatype, shape, raw[i], max_elements=max_elements)
            )
            continue
        field = CONTENTS_FIELD.get(t.datatype)
        values: list[Any] = list(getattr(t.contents, field)) if field else []
        if t.datatype in tensors.NUMPY_DTYPE and t.datatype != "BOOL":
            array = np.asarray(values, dtype=tensors.NUMPY_DTYPE[t.datatype])
            out.append(_checked(t.name, t.datatype, shape, array, max_elements))
        else:
            out.append(_checked(t.name, t.datatype, shape, values, max_elements))
    return out


def _checked(
    name: str, datatype: str, shape: list[int], values: Any, max_elements: int
) -> tensors.InputTensor:
    name_, dtype, dims = tensors.check_header(name, datatype, shape)
    # Python's integers: NumPy's product of int64 dimensions wraps around, and a huge
    # shape came out small (or negative) and passed.
    count = tensors.element_count(name_, dims, max_elements)
    if len(values) != count:
        raise tensors.BadRequestError(
            f"input {name_[:80]!r} has shape {list(dims)} ({count} elements) but its contents "
            f"hold {len(values)}"
        )
    return tensors.InputTensor(name_, dtype, dims, values)


def _unary(
    method: Callable[[Req, Any], Awaitable[Resp]],
    request_type: type[Req],
    name: str,
    runtime: ServingRuntime,
) -> grpc.RpcMethodHandler:
    read_timeout = runtime.options.body_timeout

    # Registered as stream-unary (the same frames on the wire as a unary call), so the
    # request is read here under a deadline: grpc reads a unary request before calling
    # the handler, and a client that sends its headers and then stalls would hold one of
    # the server's call slots for as long as it likes.
    async def handle(
        requests: AsyncIterator[Req], context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        started = time.perf_counter()
        status = 200
        try:
            try:
                async with asyncio.timeout(read_timeout):
                    request = await anext(requests)
            except TimeoutError:
                raise RequestTimeoutError(
                    f"the request did not arrive within {read_timeout:g} s"
                ) from None
            except StopAsyncIteration:
                raise tensors.BadRequestError("the call carried no request message") from None
            return await method(request, context)
        except Exception as exc:
            codes = error_codes(exc)
            status = codes.http_status
            if not isinstance(exc, LoopmlError):
                log.exception("unexpected error in gRPC %s", name)
                message = "internal server error"
            else:
                message = str(exc)
            await context.abort(grpc.StatusCode[codes.grpc_code], message)
            raise  # unreachable: abort raises
        finally:
            runtime.metrics.observe_request("grpc", name, status, time.perf_counter() - started)

    return grpc.stream_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.FromString,
        response_serializer=lambda m: m.SerializeToString(),
    )


def handlers(runtime: ServingRuntime) -> grpc.GenericRpcHandler:
    s = InferenceServicer(runtime)
    methods: dict[str, grpc.RpcMethodHandler] = {
        "ServerLive": _unary(s.server_live, pb.ServerLiveRequest, "ServerLive", runtime),
        "ServerReady": _unary(s.server_ready, pb.ServerReadyRequest, "ServerReady", runtime),
        "ModelReady": _unary(s.model_ready, pb.ModelReadyRequest, "ModelReady", runtime),
        "ServerMetadata": _unary(
            s.server_metadata, pb.ServerMetadataRequest, "ServerMetadata", runtime
        ),
        "ModelMetadata": _unary(
            s.model_metadata, pb.ModelMetadataRequest, "ModelMetadata", runtime
        ),
        "ModelInfer": _unary(s.model_infer, pb.ModelInferRequest, "ModelInfer", runtime),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


async def start_grpc(
    runtime: ServingRuntime, host: str, port: int, *, reuse_port: bool
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server; return it and the port it bound (useful with port 0)."""
    opts = runtime.options
    limit = opts.max_request_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # Connections beyond the cap are closed at once (the client sees UNAVAILABLE
            # and may retry elsewhere); those already open keep being answered.
            ("grpc.max_allowed_incoming_connections", opts.grpc_connection_limit()),
            # A socket that never completes the HTTP/2 handshake is closed as a REST
            # connection that never sends its headers is; an idle one after a while.
            ("grpc.server_handshake_timeout_ms", _ms(opts.header_timeout)),
            ("grpc.max_connection_idle_ms", _ms(opts.grpc_idle_timeout)),
            ("grpc.max_concurrent_streams", 100),
            # Ping quiet connections so a vanished peer's is closed rather than kept.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
        ],
        # Calls beyond this are answered RESOURCE_EXHAUSTED by grpc itself.
        maximum_concurrent_rpcs=opts.grpc_call_limit(),
    )
    server.add_generic_rpc_handlers((handlers(runtime),))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio raises where it once returned 0
        bound = 0
    if bound == 0:
        raise LoopmlError(f"cannot listen for gRPC on {host}:{port}; is the port in use?")
    await server.start()
    return server, bound


def _ms(seconds: float) -> int:
    return max(1, min(2**31 - 1, int(seconds * 1000)))
