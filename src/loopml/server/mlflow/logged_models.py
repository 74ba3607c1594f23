"""MLflow 3's logged models: a model a run logged, before (or without) registering it.

``mlflow.<flavor>.log_model(..., name="model")`` creates one, uploads the model folder
under its artifact location through the artifact proxy, links it to the run as an output
and marks it ready. Each is an execution of kind ``mlflow_logged_model`` in loopml's
lineage graph (so it needs no table of its own); its id on the wire is ``m-<execution id>``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select, update
from starlette.concurrency import run_in_threadpool

from loopml.core import clock
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.server.mlflow import experiments
from loopml.server.mlflow.artifacts import entries, safe_path
from loopml.server.mlflow.filters import conditions, matches
from loopml.server.mlflow.protocol import PREFIX, body, field, key_values, millis, optional
from loopml.server.state import ServerState, state
from loopml.store.metadata.tables import executions
from loopml.store.workspace import Workspace

St = Annotated[ServerState, Depends(state)]
router = APIRouter(prefix=PREFIX)
KIND = "mlflow_logged_model"
_STATUSES = {
    "LOGGED_MODEL_PENDING": "running",
    "LOGGED_MODEL_READY": "finished",
    "LOGGED_MODEL_UPLOAD_FAILED": "failed",
}
_WIRE_STATUS = {v: k for k, v in _STATUSES.items()}
_SEARCH_FIELDS = ("name", "source_run_id", "model_type", "status", "model_id")
MAX_RESULTS = 1000


def artifact_path(exp_id: str, model_id: str) -> str:
    """Where the artifact proxy keeps the model's files."""
    return f"{exp_id}/models/{model_id}/artifacts"


def _execution_id(model_id: str) -> str:
    hex_id = model_id[2:] if model_id.startswith("m-") else ""
    if len(hex_id) != 32 or any(c not in "0123456789abcdef" for c in hex_id):
        raise NotFoundError(f"Logged model with ID '{model_id[:80]}' not found")
    return hex_id


def get(ws: Workspace, model_id: str, *, allow_deleted: bool = False) -> dict[str, Any]:
    """The stored record: properties plus id, name, status and times."""
    with ws.engine.connect() as conn:
        row = conn.execute(
            select(executions).where(
                executions.c.id == _execution_id(model_id), executions.c.kind == KIND
            )
        ).first()
    if row is None or (row.properties.get("deleted") and not allow_deleted):
        raise NotFoundError(f"Logged model with ID '{model_id[:80]}' not found")
    return _record(row)


def _record(row: Any) -> dict[str, Any]:
    return {
        **dict(row.properties),
        "model_id": "m-" + row.id,
        "name": row.name or "",
        "status": row.status,
        "created_at": row.start_time,
        "updated_at": row.end_time or row.start_time,
    }


def _update(ws: Workspace, model_id: str, **values: Any) -> dict[str, Any]:
    """Change properties (``properties=``) and columns of one logged model."""
    record = get(ws, model_id)
    changes = values.pop("properties", {})
    properties = {
        k: v
        for k, v in record.items()
        if k not in ("model_id", "name", "status", "created_at", "updated_at")
    }
    properties.update(changes)
    with ws.write_engine.begin() as conn:
        conn.execute(
            update(executions)
            .where(executions.c.id == _execution_id(model_id))
            .values(properties=properties, end_time=clock.now(), **values)
        )
    return get(ws, model_id, allow_deleted=True)


def to_json(record: dict[str, Any]) -> dict[str, Any]:
    exp_id = record["experiment_id"]
    tags = dict(record.get("tags") or {})
    return {
        "info": {
            "model_id": record["model_id"],
            "experiment_id": exp_id,
            "name": record["name"],
            "creation_timestamp_ms": millis(record["created_at"]),
            "last_updated_timestamp_ms": millis(record["updated_at"]),
            "artifact_uri": "mlflow-artifacts:/" + artifact_path(exp_id, record["model_id"]),
            "status": _WIRE_STATUS.get(record["status"], "LOGGED_MODEL_STATUS_UNSPECIFIED"),
            "model_type": record.get("model_type") or "",
            "source_run_id": record.get("source_run_id") or "",
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        },
        "data": {
            "params": [{"key": k, "value": v} for k, v in (record.get("params") or {}).items()],
            "metrics": [],
        },
    }


def of_run(ws: Workspace, run_id: str, name: str) -> list[dict[str, Any]]:
    """The logged models named ``name`` that ``run_id`` logged, oldest first."""
    return [r for r in _all(ws) if r.get("source_run_id") == run_id and r["name"] == name]


def outputs_of(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """MLflow's ``model_outputs`` of a run: each model it logged, at the step it gave."""
    found = []
    for r in _all(ws):
        steps = r.get("outputs") or {}
        if run_id in steps:
            found.append({"model_id": r["model_id"], "step": steps[run_id]})
    return found


def _all(ws: Workspace) -> list[dict[str, Any]]:
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(executions)
            .where(executions.c.kind == KIND)
            .order_by(executions.c.start_time, executions.c.id)
        ).all()
    return [r for r in map(_record, rows) if not r.get("deleted")]


# --- endpoints -----------------------------------------------------------------------------


@router.post("/logged-models")
async def create(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    exp_id = field(data, "experiment_id")
    name = optional(data, "name", str, "") or "model"
    run_id = optional(data, "source_run_id", str, "")
    model_type = optional(data, "model_type", str, "")
    tags, params = key_values(data, "tags"), key_values(data, "params")
    if len(name) > 250:
        raise InvalidInputError("a logged model's name is at most 250 characters")

    def write() -> dict[str, Any]:
        exp = experiments.by_id(s.workspace, exp_id)
        if run_id:
            s.tracker.get_run(run_id)  # NotFoundError for an unknown run
        properties = {
            "experiment_id": exp.id,
            "source_run_id": run_id,
            "model_type": model_type,
            "tags": tags,
            "params": params,
        }
        execution = s.workspace.lineage.add_execution(
            KIND, name=name, status="running", properties=properties
        )
        return {"model": to_json(get(s.workspace, "m-" + execution.id))}

    return await run_in_threadpool(write)


@router.get("/logged-models/{model_id}")
async def get_model(s: St, model_id: str, allow_deleted: bool = False) -> dict[str, Any]:
    record = await run_in_threadpool(get, s.workspace, model_id, allow_deleted=allow_deleted)
    return {"model": to_json(record)}


@router.get("/logged-models/{model_id}/artifacts/directories")
async def list_artifacts(s: St, model_id: str, artifact_directory_path: str = "") -> dict[str, Any]:
    """MLflow's ListLoggedModelArtifacts: the files and folders under a folder of the
    model's artifacts (the root by default), with paths relative to the model's root."""
    relative = artifact_directory_path.strip("/")
    if relative:
        safe_path(relative)

    def read() -> dict[str, Any]:
        record = get(s.workspace, model_id)
        root = artifact_path(record["experiment_id"], record["model_id"])
        prefix = f"{root}/{relative}/" if relative else f"{root}/"
        files = entries(s.workspace, prefix)
        for f in files:
            f["path"] = f"{relative}/{f['path']}" if relative else f["path"]
        return {"root_uri": "mlflow-artifacts:/" + root, "files": files}

    return await run_in_threadpool(read)


@router.patch("/logged-models/{model_id}")
async def finalize(s: St, model_id: str, request: Request) -> dict[str, Any]:
    data = await body(request)
    status = field(data, "status", (str, int))
    names = list(_STATUSES)
    if isinstance(status, int) and 1 <= status <= len(names):
        status = names[status - 1]
    if status not in _STATUSES:
        raise InvalidInputError(f"status must be one of {names}, not {status!r}")
    record = await run_in_threadpool(
        lambda: _update(s.workspace, model_id, status=_STATUSES[status])
    )
    return {"model": to_json(record)}


@router.delete("/logged-models/{model_id}")
async def delete(s: St, model_id: str) -> dict[str, Any]:
    await run_in_threadpool(lambda: _update(s.workspace, model_id, properties={"deleted": True}))
    return {}


@router.patch("/logged-models/{model_id}/tags")
async def set_tags(s: St, model_id: str, request: Request) -> dict[str, Any]:
    tags = key_values(await body(request), "tags")

    def write() -> None:
        record = get(s.workspace, model_id)
        _update(s.workspace, model_id, properties={"tags": {**record.get("tags", {}), **tags}})

    await run_in_threadpool(write)
    return {}


@router.delete("/logged-models/{model_id}/tags/{tag_key:path}")
async def delete_tag(s: St, model_id: str, tag_key: str) -> dict[str, Any]:
    def write() -> None:
        record = get(s.workspace, model_id)
        tags = dict(record.get("tags") or {})
        if tag_key not in tags:
            raise NotFoundError(f"logged model {model_id} has no tag {tag_key[:100]!r}")
        del tags[tag_key]
        _update(s.workspace, model_id, properties={"tags": tags})

    await run_in_threadpool(write)
    return {}


@router.post("/logged-models/{model_id}/params")
async def log_params(s: St, model_id: str, request: Request) -> dict[str, Any]:
    params = key_values(await body(request), "params")

    def write() -> None:
        record = get(s.workspace, model_id)
        _update(
            s.workspace, model_id, properties={"params": {**record.get("params", {}), **params}}
        )

    await run_in_threadpool(write)
    return {}


@router.post("/logged-models/search")
async def search(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    ids = [str(i) for i in optional(data, "experiment_ids", list, [])]
    found = conditions(optional(data, "filter", str, None), _SEARCH_FIELDS)
    limit = optional(data, "max_results", int, 100)
    if not 0 < limit <= MAX_RESULTS:
        raise InvalidInputError(f"max_results must be from 1 to {MAX_RESULTS}")
    offset = _offset(optional(data, "page_token", str, ""))

    def read() -> dict[str, Any]:
        wanted = {experiments.by_id(s.workspace, i).id for i in ids}
        records = [
            r
            for r in _all(s.workspace)
            if (not wanted or r["experiment_id"] in wanted) and matches(_fields(r), found)
        ]
        page = records[offset : offset + limit]
        answer: dict[str, Any] = {"models": [to_json(r) for r in page]}
        if offset + limit < len(records):
            answer["next_page_token"] = str(offset + limit)
        return answer

    return await run_in_threadpool(read)


def _fields(record: dict[str, Any]) -> dict[str, str]:
    out = {
        "name": record["name"],
        "source_run_id": record.get("source_run_id") or "",
        "model_type": record.get("model_type") or "",
        "status": _WIRE_STATUS.get(record["status"], ""),
        "model_id": record["model_id"],
    }
    out.update({f"tags.{k}": v for k, v in (record.get("tags") or {}).items()})
    return out


def _offset(token: str) -> int:
    if not token:
        return 0
    if token.isascii() and token.isdigit() and len(token) < 10:
        return int(token)
    raise InvalidInputError("page_token is not one this server gave out")


@router.post("/runs/outputs")
async def log_outputs(s: St, request: Request) -> dict[str, Any]:
    """A run's output models: each logged model records the step its run logged it at."""
    data = await body(request)
    run_id = field(data, "run_id")
    outputs: list[tuple[str, int]] = []
    for i, item in enumerate(optional(data, "models", list, [])):
        if not isinstance(item, dict):
            raise InvalidInputError(f"models[{i}] must be an object")
        step = optional(item, "step", (int, str), 0)
        if isinstance(step, str) and not (
            step.lstrip("-").isascii() and step.lstrip("-").isdigit()
        ):
            raise InvalidInputError(f"models[{i}].step {step[:40]!r} is not an integer")
        outputs.append((field(item, "model_id"), int(step)))

    def write() -> None:
        s.tracker.get_run(run_id)
        for model_id, step in outputs:
            record = get(s.workspace, model_id)
            steps = {**(record.get("outputs") or {}), run_id: step}
            _update(s.workspace, model_id, properties={"outputs": steps})

    await run_in_threadpool(write)
    return {}
