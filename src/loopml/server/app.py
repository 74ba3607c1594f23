"""The team server's ASGI app: the JSON API under ``/api/v1/`` and the web UI's pages.

``create_app`` takes an opened workspace; everything that reads configuration lives in
``loopml.server.run`` (the entry point). MLflow's REST API can be mounted beside it under
``/api/2.0/mlflow/`` (``loopml.server.mlflow``).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import APIRouter, Depends, FastAPI
from starlette.types import Receive, Scope, Send

from loopml.server import assets, errors, pages
from loopml.server import mlflow as mlflow_api
from loopml.server.auth import WriteLog, require_access
from loopml.server.query_checks import single_valued_query
from loopml.server.routes import (
    dataset_writes,
    datasets,
    lineage,
    model_writes,
    models,
    monitoring,
    pipelines,
    run_models,
    runs,
    writes,
)
from loopml.server.state import MAX_UPLOAD_BYTES, ServerState
from loopml.store.workspace import Workspace

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    api = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(require_access), Depends(single_valued_query)]
    )
    for module in (
        runs,
        datasets,
        models,
        lineage,
        pipelines,
        monitoring,
        writes,
        dataset_writes,
        model_writes,
        run_models,
    ):
        api.include_router(module.router)
    return api


def _warm_imports(freeze: bool) -> None:
    """Import what drift and model pages need while the server idles: SciPy's statistics
    alone take seconds to import, which the first such page would otherwise wait for.
    The pages' templates and static files likewise.

    With ``freeze``, then keep everything startup built out of garbage collection, as the
    inference server does: a full collection walks every tracked object (about 240,000
    here), and one landing in a request stalled it for tens of milliseconds. An MLflow
    ``runs/search`` answering 626 runs went from 58 to 28 ms median, 224 to 60 ms worst,
    in process. Startup's own garbage is collected first, so it is freed, not kept."""
    pages.warm()
    import scipy.stats  # noqa: F401

    if freeze:
        gc.collect()
        gc.freeze()


def create_app(
    workspace: Workspace,
    *,
    close_workspace: bool = False,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    freeze_after_start: bool = False,
) -> TeamServerApp:
    """The server for ``workspace``; with ``close_workspace`` it is closed on shutdown.
    ``max_upload_bytes`` caps one uploaded blob. ``freeze_after_start`` is for a server
    process of its own (see ``_warm_imports``), not for an app inside a test process."""
    server_state = ServerState(workspace, max_upload_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(
            target=_warm_imports,
            args=(freeze_after_start,),
            name="loopml-warm-imports",
            daemon=True,
        ).start()
        yield
        server_state.close()
        if close_workspace:
            workspace.close()

    app = TeamServerApp(
        title="loopml",
        summary="Runs, datasets, models, lineage, pipelines and monitoring of a workspace.",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        # FastAPI's documentation pages load their scripts from a CDN; the UI works offline.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.loopml = server_state
    app.state.templates = pages.templates()
    errors.install(app)
    app.include_router(api_router())
    app.include_router(mlflow_api.router)
    app.include_router(pages.router)
    app.include_router(assets.router)
    app.add_middleware(WriteLog, audit=server_state.audit)
    app.hot = mlflow_api.HotPaths(
        partial(FastAPI.__call__, app),
        endpoints=mlflow_api.hot,
        on_error=errors.respond,
        audit=server_state.audit,
    )
    return app


class TeamServerApp(FastAPI):
    """FastAPI, with MLflow's hot tracking endpoints answered before it: a ``log-metric``
    comes once per logged point, and FastAPI's per-request work (its telemetry check, its
    middleware stack's layers) cost more than the request's own (see
    docs/benchmarks-tracking-client.md). Every other request goes to FastAPI unchanged."""

    hot: mlflow_api.HotPaths | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # as Starlette sets it: handlers find the server's state there
        await self.hot(scope, receive, send)

    # What the team server's HTTP protocol asks before and instead of an ASGI cycle
    # (``answer_at_once.AnswerAtOnce``).
    def wants(self, scope: Scope) -> bool:
        return self.hot is not None and self.hot.wants(scope)

    def answer(self, scope: Scope, body: bytes) -> bytes | None:
        if self.hot is None:
            return None
        scope["app"] = self
        return self.hot.answer(scope, body)
