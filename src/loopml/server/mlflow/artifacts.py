"""MLflow's artifact proxy (``/api/2.0/mlflow-artifacts/artifacts/...``) over loopml's store.

Each uploaded file is a content-addressed blob recorded as an artifact named by its MLflow
path (``<experiment>/<run>/artifacts/<path>``); a file under a run's folder is also linked
to that run as an output, so loopml's lineage and UI show it. Uploads stream into the
store as every upload does (``server/uploads.py``: capped by ``LOOPML_MAX_UPLOAD_BYTES``; a
refused or abandoned one leaves nothing); downloads are verified against the digest like
every other read, then streamed from disk.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from loopml.core import names
from loopml.core.errors import NotFoundError
from loopml.server.mlflow.protocol import ARTIFACTS_PREFIX, NotImplementedByLoopml
from loopml.server.state import ServerState, state
from loopml.server.uploads import store_body
from loopml.store.artifacts import Blob
from loopml.store.metadata.tables import artifacts, executions
from loopml.store.workspace import Workspace

St = Annotated[ServerState, Depends(state)]
router = APIRouter(prefix=ARTIFACTS_PREFIX)
KIND = "mlflow_file"
_RUN_FILE = re.compile(r"[^/]+/(?P<run>[0-9a-f]{32})/artifacts/(?P<rel>.+)")


def safe_path(path: str) -> str:
    """``path`` if it stays inside the artifact root (see ``check_relative_path``)."""
    return names.check_relative_path(path, "artifact path")


@router.put("/artifacts/{path:path}")
async def upload(s: St, path: str, request: Request) -> dict[str, Any]:
    path = safe_path(path)
    blob = await store_body(request, s.workspace.artifacts, s.max_upload_bytes)
    await run_in_threadpool(_record, s.workspace, path, blob)
    return {}


def _record(ws: Workspace, path: str, blob: Blob) -> None:
    run_id = None
    m = _RUN_FILE.fullmatch(path)
    if m is not None:
        with ws.engine.connect() as conn:
            found = conn.execute(select(executions.c.id).where(executions.c.id == m["run"]))
            run_id = found.scalar()
    with ws.write_engine.begin() as conn:
        record = ws.lineage.add_artifact(blob.digest, KIND, blob.size, name=path, conn=conn)
        if run_id is not None and m is not None:
            ws.lineage.link(run_id, record.id, "output", role=m["rel"], conn=conn)


def _latest(s: ServerState, path: str) -> tuple[str, int] | None:
    with s.workspace.engine.connect() as conn:
        row = conn.execute(
            select(artifacts.c.digest, artifacts.c.size)
            .where(artifacts.c.kind == KIND, artifacts.c.name == path)
            .order_by(artifacts.c.created_at.desc())
            .limit(1)
        ).first()
    return None if row is None else (row.digest, row.size)


@router.get("/artifacts/{path:path}")
async def download(s: St, path: str) -> FileResponse:
    path = safe_path(path)
    found = await run_in_threadpool(_latest, s, path)
    if found is None:
        raise NotFoundError(f"no artifact at {path!r}")
    # Verified first, then streamed from disk: memory stays flat whatever the file's size.
    local = await run_in_threadpool(
        s.workspace.artifacts.local_path, found[0], what=f"MLflow artifact {path}"
    )
    return FileResponse(local, media_type="application/octet-stream")


def entries(ws: Workspace, prefix: str) -> list[dict[str, Any]]:
    """MLflow's FileInfo of each file and folder directly under ``prefix`` (empty, or
    ending in '/'), by name; a file uploaded again is listed once, at its latest size."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(artifacts.c.name, artifacts.c.size, artifacts.c.created_at)
            .where(artifacts.c.kind == KIND, artifacts.c.name.like(escaped + "%", "\\"))
            .order_by(artifacts.c.created_at)
        ).all()
    files: dict[str, dict[str, Any]] = {}
    for name, size, _ in rows:
        head, sep, _rest = name[len(prefix) :].partition("/")
        if sep:
            files[head] = {"path": head, "is_dir": True}
        else:
            files[head] = {"path": head, "is_dir": False, "file_size": size}
    return [files[k] for k in sorted(files)]


@router.get("/artifacts")
async def list_artifacts(s: St, path: str = "") -> dict[str, Any]:
    prefix = safe_path(path.strip("/")) + "/" if path.strip("/") else ""
    return {"files": await run_in_threadpool(entries, s.workspace, prefix)}


@router.delete("/artifacts/{path:path}")
async def delete(path: str) -> None:
    raise NotImplementedByLoopml(
        "loopml keeps artifacts immutable; `loopml gc` removes what nothing references"
    )
