"""One server's moving parts, shared by the REST and gRPC edges: the deployment, the
prediction log, the metrics, and the request path from a checked table to a logged answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass

import pyarrow as pa

from loopml.core.errors import InvalidInputError, LoopmlError, error_codes
from loopml.core.names import parse_positive_int
from loopml.monitor.prometheus import MonitorCollector
from loopml.serving.deployment import SHADOW, Deployment, Route
from loopml.serving.errors import (
    BadRequestError,
    NotReadyError,
    OverloadedError,
    SignatureMismatchError,
    model_failure,
)
from loopml.serving.feedback import Label, store_labels
from loopml.serving.metrics import ServingMetrics
from loopml.serving.model_source import ModelRef, ModelSource, Prediction, ServedModel
from loopml.serving.options import ServeOptions
from loopml.serving.prediction_log import ErrorRecord, LogRecord, PredictionLog
from loopml.store.workspace import Workspace

log = logging.getLogger("loopml.serving")
MAX_REQUEST_ID = 200


@dataclass(frozen=True)
class InferResult:
    request_id: str
    model: ServedModel
    prediction: Prediction


def new_request_id() -> str:
    return uuid.uuid4().hex


def _version_number(text: str | None) -> int | None:
    """The version a failed request asked for, when it named a valid one."""
    if text is None:
        return None
    try:
        return parse_positive_int(text, "version")
    except InvalidInputError:
        return None


def check_request_id(value: object) -> str:
    """A client-supplied id, if usable; ids end up in logs and headers, so keep them tame."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_REQUEST_ID:
        raise BadRequestError(f"a request id must be a string of 1 to {MAX_REQUEST_ID} characters")
    if not value.isprintable():
        raise BadRequestError("a request id may hold printable characters only")
    return value


class RouteReplaced(NotReadyError):
    """The model a request was routed to was replaced before the request was queued."""


class ServingRuntime:
    def __init__(
        self,
        workspace: Workspace,
        options: ServeOptions,
        *,
        multiprocess_dir: str | None = None,
        source: ModelSource | None = None,
    ) -> None:
        # ``source`` replaces the workspace's registry as where models come from (a team
        # server's, in remote mode); the workspace still holds the prediction log.
        self.workspace = workspace
        self.options = options
        self.metrics = ServingMetrics(multiprocess_dir)
        # The monitor's stored window figures for this deployment and its model, on /metrics.
        self.metrics.add_collector(
            MonitorCollector(workspace, (options.deployment_name, ModelRef.parse(options.ref).name))
        )
        self.source = ModelSource(workspace) if source is None else source
        self.deployment = Deployment(self.source, options, self.metrics)
        self.log = PredictionLog(
            workspace,
            options.deployment_name,
            flush_interval=options.log_flush_interval,
            on_written=self.metrics.log_written.inc,
            strict=options.log_durability == "strict",
            # Summaries need the model's training profile from the workspace's registry;
            # with another source the monitor summarises the files itself.
            summaries=source is None,
        )
        # ready: what health checks report (false once shutdown begins, so balancers stop
        # sending); started/draining: whether inference is served, which continues until
        # the connections already accepted have been answered.
        self.ready = False
        self.started = False
        self.draining = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.deployment.start()
        self.log.start()
        self.started = True
        self.ready = True

    async def close(self) -> None:
        """Drain: refuse new requests, finish in-flight ones and shadows, flush the log."""
        self.draining = True
        self.ready = False
        try:
            await asyncio.wait_for(self._idle.wait(), self.options.drain_timeout)
        except TimeoutError:
            log.error("%d requests still running after the drain timeout", self._inflight)
        await asyncio.gather(*self._shadow_tasks, return_exceptions=True)
        await self.deployment.close()
        await asyncio.to_thread(self.log.close)
        self.metrics.log_pending.set(0)

    def admit(self) -> None:
        """Refuse a request before any work is spent on it: not serving, or overloaded."""
        if self.draining or not self.started:
            raise NotReadyError("the server is not ready (starting or shutting down); retry")
        if self._inflight >= self.options.max_queued_requests:
            self.metrics.shed.inc()
            raise OverloadedError(
                f"{self._inflight} requests are already waiting for the model; retry shortly"
            )

    def record_failure(
        self,
        exc: Exception,
        request_id: str,
        model_name: str | None,
        version: str | None,
        started: float,
        event_time: float | None,
    ) -> None:
        """Log a request answered with an error beside the prediction log (monitoring
        counts them by status)."""
        self.log.append_error(
            ErrorRecord(
                request_id,
                time.time(),
                error_codes(exc).http_status,
                type(exc).__name__,
                (time.perf_counter() - started) * 1000,
                model_name or ModelRef.parse(self.options.ref).name,
                _version_number(version),
                event_time,
            )
        )

    def route(self, model_name: str | None, version: str | None, request_id: str) -> Route:
        """The route this request takes (canary bucketing by its id)."""
        return self.deployment.select(model_name, version, request_id)

    async def infer(
        self,
        route: Route,
        table: pa.Table,
        *,
        request_id: str,
        started: float | None = None,
        event_time: float | None = None,
        offload: bool = False,
    ) -> InferResult:
        """Check, batch, predict and log one request's table, built for ``route.model``.

        Raises a serving error for bad input, and :class:`RouteReplaced` when the route's
        model was replaced between routing and queueing: the edge then routes again and
        builds the table for the new model (:func:`loopml.serving.edge.infer`).
        ``offload`` checks the table in a thread (a large request), so the event loop
        keeps answering health checks and small requests meanwhile."""
        self.admit()
        started = time.perf_counter() if started is None else started
        self._inflight += 1
        self._idle.clear()
        try:
            if offload:
                table = await asyncio.to_thread(route.model.check, table)
            else:
                table = route.model.check(table)
            try:
                prediction = await route.batcher.submit(table)
            except NotReadyError:
                if self.draining:
                    raise
                raise RouteReplaced(f"{route.model} was replaced; route again") from None
            except LoopmlError:
                raise
            except Exception as exc:
                log.warning("model %s failed on request %s: %r", route.model, request_id, exc)
                raise model_failure(f"{route.model.name}:{route.model.version}", exc) from None
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        latency = time.perf_counter() - started
        durable = self._record(route, request_id, table, prediction, latency, event_time)
        shadow = self.deployment.shadow
        if shadow is not None and route.role != SHADOW:
            task = asyncio.get_running_loop().create_task(
                self._shadow(shadow, table, request_id, event_time)
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        if durable is not None:  # strict durability: answer once the record is written
            self._inflight += 1
            try:
                await asyncio.wrap_future(durable)
            finally:
                self._inflight -= 1
                if self._inflight == 0:
                    self._idle.set()
        return InferResult(request_id, route.model, prediction)

    def _record(
        self,
        route: Route,
        request_id: str,
        table: pa.Table,
        prediction: Prediction,
        latency: float,
        event_time: float | None,
    ) -> Future[None] | None:
        model = route.model
        durable = self.log.append(
            LogRecord(
                request_id,
                time.time(),
                model.name,
                model.version,
                route.role,
                latency * 1000,
                table,
                prediction,
                event_time=event_time,
                model_digest=model.digest,
                model_artifact_id=model.artifact_id,
            )
        )
        label = f"{model.name}:{model.version}"
        self.metrics.predictions.labels(model.name, str(model.version), route.role).inc(
            table.num_rows
        )
        self.metrics.inference_latency.labels(label, route.role).observe(latency)
        self.metrics.log_pending.set(self.log.pending_rows)
        return durable

    async def _shadow(
        self, route: Route, table: pa.Table, request_id: str, event_time: float | None
    ) -> None:
        started = time.perf_counter()
        try:
            checked = route.model.check(table)
            prediction = await route.batcher.submit(checked)
        except SignatureMismatchError as exc:
            log.warning("shadow %s cannot score request %s: %s", route.model, request_id, exc)
            return
        except Exception:
            log.exception("shadow %s failed on request %s", route.model, request_id)
            return
        latency = time.perf_counter() - started
        self._record(route, request_id, checked, prediction, latency, event_time)

    def store_feedback(self, labels: list[Label]) -> str:
        artifact_id = store_labels(self.workspace, self.options.deployment_name, labels)
        self.metrics.feedback.inc(len(labels))
        return artifact_id
