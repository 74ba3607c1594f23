"""The REST edge: Open Inference Protocol v2, MLflow ``/invocations``, metrics, feedback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from loopml.core.errors import LoopmlError
from loopml.serving import edge, invocations, tensors
from loopml.serving.deployment import Route
from loopml.serving.errors import NotReadyError
from loopml.serving.event_time import EVENT_TIME, parse_event_time
from loopml.serving.feedback import parse_labels
from loopml.serving.http_errors import (
    RequestContextMiddleware,
    http_error_handler,
    loopml_error_handler,
    loopml_error_response,
)
from loopml.serving.info import EXTENSIONS, SERVER_NAME, server_version
from loopml.serving.metrics import CONTENT_TYPE, ServingMetrics
from loopml.serving.model_source import ServedModel
from loopml.serving.oip_models import (
    BODY_SCHEMAS,
    InferenceRequest,
    infer_response,
    model_metadata,
)
from loopml.serving.rest_codec import HEADER_LENGTH, parse_infer_request, parse_json, read_body
from loopml.serving.runtime import ServingRuntime, check_request_id


def _json(obj: Any, status: int = 200) -> Response:
    # orjson: a tenth of json's time on a 100-row answer, and strict JSON (a NaN
    # prediction is null, where json writes NaN, which strict parsers reject).
    body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json")


Handler = Callable[..., Awaitable[Response]]
T = TypeVar("T")


class _InferenceFastPath:
    """Inference requests straight to their handler; every other request through FastAPI.

    FastAPI's stack (a dozen middleware layers, routing, dependency solving) costs about
    as much per request as parsing, checking and batching one; inference endpoints need
    none of it. They keep what the API promises: the same request context (id, timing,
    metrics labelled with the route's path, logged 500s) and the same error statuses."""

    def __init__(
        self, app: ASGIApp, routes: list[tuple[APIRoute, Handler]], metrics: ServingMetrics
    ) -> None:
        self.app = app
        self._routes = routes
        self._fast = RequestContextMiddleware(self._handle, metrics=metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            for route, handler in self._routes:
                match = route.path_regex.match(path)
                if match is not None:
                    scope["route"] = route
                    scope["path_params"] = match.groupdict()
                    scope["endpoint_handler"] = handler
                    await self._fast(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler: Handler = scope.pop("endpoint_handler")
        try:
            response = await handler(Request(scope, receive), **scope["path_params"])
        except LoopmlError as exc:
            response = loopml_error_response(exc)
        except HTTPException as exc:
            response = await http_error_handler(Request(scope, receive), exc)
        await response(scope, receive, send)


def _body(schema: str, *, csv: bool = False) -> dict[str, Any]:
    """An operation's request body in the OpenAPI document (handlers read raw bodies, so
    FastAPI cannot infer it); clients and API fuzzers learn the payload from it."""
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    }
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"requestBody": {"required": True, "content": content}}


def _document_bodies(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            request = InferenceRequest.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            schemas.update(request.pop("$defs", {}))
            schemas["InferenceRequest"] = request
            schemas.update(BODY_SCHEMAS)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(runtime: ServingRuntime) -> ASGIApp:
    """The ASGI app over a started (or starting) runtime."""
    app = FastAPI(title="loopml model server", version=server_version(), docs_url="/docs")
    _document_bodies(app)
    app.add_exception_handler(LoopmlError, loopml_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.add_middleware(RequestContextMiddleware, metrics=runtime.metrics)
    deployment = runtime.deployment
    opts = runtime.options
    version_text = server_version()

    # health and metadata -----------------------------------------------------------------
    @app.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(status_code=200 if runtime.ready else 503)

    @app.get("/ping")
    async def ping() -> Response:  # MLflow's health check
        return Response(status_code=200 if runtime.ready else 503)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": SERVER_NAME, "version": version_text, "extensions": EXTENSIONS})

    def find(name: str, version: str | None) -> Route:
        return deployment.select(name, version, None)

    def metadata(name: str, version: str | None) -> Response:
        route = find(name, version)
        versions = sorted(
            {str(r.model.version) for r in deployment.routes() if r.model.name == name}, key=int
        )
        slot_ref = deployment.slots[route.role].ref
        return _json(model_metadata(route.model, versions, slot_ref, route.role))

    @app.get("/v2/models/{name}")
    async def model_meta(name: str) -> Response:
        return metadata(name, None)

    @app.get("/v2/models/{name}/versions/{version}")
    async def model_version_meta(name: str, version: str) -> Response:
        return metadata(name, version)

    def model_ready(name: str, version: str | None) -> Response:
        find(name, version)
        return Response(status_code=200 if runtime.ready else 503)

    @app.get("/v2/models/{name}/ready")
    async def ready_model(name: str) -> Response:
        return model_ready(name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def ready_model_version(name: str, version: str) -> Response:
        return model_ready(name, version)

    # inference ---------------------------------------------------------------------------
    async def body_of(request: Request) -> tuple[bytes, bool]:
        """The body, and whether it is large enough to parse off the event loop."""
        body = await read_body(request, opts.max_request_bytes, opts.body_timeout)
        return body, len(body) > opts.offload_bytes

    async def off_loop(large: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # A 30 MB JSON body takes seconds to parse and convert: on the event loop that
        # would stall every other request, health checks included.
        if large:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def infer(request: Request, name: str, version: str | None) -> Response:
        body, large = await body_of(request)
        parsed, inputs = await off_loop(
            large,
            parse_infer_request,
            body,
            request.headers.get(HEADER_LENGTH),
            max_elements=opts.max_elements,
        )
        if parsed.id is not None:
            request.state.request_id = check_request_id(parsed.id)
        rid: str = request.state.request_id
        event_time = parse_event_time((parsed.parameters or {}).get(EVENT_TIME))
        requested = [o.name for o in parsed.outputs] if parsed.outputs else None

        def build(model: ServedModel) -> Any:
            return tensors.to_table(inputs, model, max_rows=opts.max_request_rows)

        result = await edge.infer(
            runtime,
            build,
            request_id=rid,
            model_name=name,
            version=version,
            started=request.state.started,
            event_time=event_time,
            offload=large,
        )
        outs = tensors.outputs(result.model, result.prediction, requested)
        return _json(infer_response(result.model, rid, outs))

    @app.post("/v2/models/{name}/infer", openapi_extra=_body("InferenceRequest"))
    async def infer_latest(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=_body("InferenceRequest"))
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    @app.post("/invocations", openapi_extra=_body("InvocationsRequest", csv=True))
    async def invoke(request: Request) -> Response:
        body, large = await body_of(request)
        content_type = request.headers.get("content-type", "application/json")
        if content_type.startswith("text/csv"):
            event_time = parse_event_time(request.query_params.get(EVENT_TIME), numeric_text=True)
            table = await off_loop(large, invocations.parse_csv, body, opts.max_request_rows)

            def build(model: ServedModel) -> Any:
                return table
        else:
            payload = await off_loop(large, parse_json, body)
            event_time = parse_event_time(
                payload.get(EVENT_TIME) if isinstance(payload, dict) else None
            )

            def build(model: ServedModel) -> Any:
                return invocations.to_table(payload, model, opts.max_request_rows)

        result = await edge.infer(
            runtime,
            build,
            request_id=request.state.request_id,
            started=request.state.started,
            event_time=event_time,
            offload=large,
        )
        labels = tensors.outputs(result.model, result.prediction, [tensors.PREDICT])[0]
        return _json({"predictions": labels.json_data()})

    # feedback and metrics ----------------------------------------------------------------
    @app.post("/v2/feedback", openapi_extra=_body("FeedbackRequest"))
    async def feedback(request: Request) -> Response:
        if runtime.draining:
            raise NotReadyError("the server is shutting down; send the labels to another one")
        body, large = await body_of(request)
        labels = await off_loop(large, lambda: parse_labels(parse_json(body)))
        artifact_id = await asyncio.to_thread(runtime.store_feedback, labels)
        return _json({"stored": len(labels), "artifact_id": artifact_id})

    @app.get("/metrics")
    async def metrics() -> Response:
        runtime.metrics.log_pending.set(runtime.log.pending_rows)
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v2/server/stats")
    async def stats() -> Response:
        return _json(
            {
                "ready": runtime.ready,
                "served": deployment.describe(),
                "switches": deployment.switches,
                "log_rows_written": runtime.log.written_rows,
                "log_rows_pending": runtime.log.pending_rows,
                "time": time.time(),
            }
        )

    fast: dict[str, Handler] = {
        "/invocations": invoke,
        "/v2/models/{name}/infer": infer_latest,
        "/v2/models/{name}/versions/{version}/infer": infer_version,
    }
    routes = [
        (route, fast[route.path])
        for route in app.routes
        if isinstance(route, APIRoute) and route.path in fast and "POST" in (route.methods or ())
    ]
    return _InferenceFastPath(app, routes, runtime.metrics)
