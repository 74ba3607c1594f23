"""What the REST and gRPC edges share: a request from its route to its answer.

The edge chooses the route, builds the request's table for that route's model (a model's
signature decides column names and types), and hands both to the runtime. If the model
was replaced meanwhile (a hot switch after an alias moved), the runtime says so and the
request is routed again and its table rebuilt for the new model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pyarrow as pa

from loopml.serving.errors import NotReadyError
from loopml.serving.model_source import ServedModel
from loopml.serving.runtime import InferResult, RouteReplaced, ServingRuntime

TableBuilder = Callable[[ServedModel], pa.Table]
# Routing again more often than this means the model is being replaced over and over.
ATTEMPTS = 3


async def infer(
    runtime: ServingRuntime,
    build: TableBuilder,
    *,
    request_id: str,
    model_name: str | None = None,
    version: str | None = None,
    started: float | None = None,
    event_time: float | None = None,
    offload: bool = False,
) -> InferResult:
    """Route, build, predict and log one request; raise a serving error for bad input
    (and log the failed request beside the prediction log).

    ``offload`` builds and checks the table in a thread (a large request)."""
    started = time.perf_counter() if started is None else started
    try:
        return await _infer(
            runtime,
            build,
            request_id=request_id,
            model_name=model_name,
            version=version,
            started=started,
            event_time=event_time,
            offload=offload,
        )
    except Exception as exc:
        runtime.record_failure(exc, request_id, model_name, version, started, event_time)
        raise


async def _infer(
    runtime: ServingRuntime,
    build: TableBuilder,
    *,
    request_id: str,
    model_name: str | None,
    version: str | None,
    started: float,
    event_time: float | None,
    offload: bool,
) -> InferResult:
    runtime.admit()  # before any work is spent on a request that would be refused
    for _ in range(ATTEMPTS):
        route = runtime.route(model_name, version, request_id)
        table = await asyncio.to_thread(build, route.model) if offload else build(route.model)
        try:
            return await runtime.infer(
                route,
                table,
                request_id=request_id,
                started=started,
                event_time=event_time,
                offload=offload,
            )
        except RouteReplaced:
            continue
    raise NotReadyError("the model is being replaced; retry")
