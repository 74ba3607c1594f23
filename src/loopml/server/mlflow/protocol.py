"""MLflow's wire conventions: its error shape, its JSON bodies and its record shapes.

MLflow clients read ``{"error_code": ..., "message": ...}`` and raise ``MlflowException``
with that code; times are integer milliseconds; params, tags and metrics are lists of
``{"key": ..., "value": ...}`` objects; run statuses are upper case.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from loopml.core.errors import InvalidInputError, LoopmlError, NotFoundError
from loopml.tracking.records import Run

PREFIX = "/api/2.0/mlflow"
ARTIFACTS_PREFIX = "/api/2.0/mlflow-artifacts"
MAX_BODY = 32 * 1024 * 1024

# MLflow's own codes for the statuses loopml's error table gives.
_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "INVALID_STATE",
    413: "INVALID_PARAMETER_VALUE",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
}


class NotImplementedByLoopml(LoopmlError):
    """An MLflow endpoint that loopml does not serve (yet)."""

    http_status = 501
    grpc_code = "UNIMPLEMENTED"


class AlreadyExistsError(LoopmlError):
    http_status = 400


def is_mlflow_path(path: str) -> bool:
    return path.startswith((PREFIX + "/", ARTIFACTS_PREFIX + "/", "/ajax-api/2.0/mlflow"))


def error_response(status: int, message: str, exc: BaseException | None = None) -> Response:
    code = "RESOURCE_ALREADY_EXISTS" if isinstance(exc, AlreadyExistsError) else None
    code = code or _CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return JSONResponse({"error_code": code, "message": message}, status)


async def body(request: Request) -> dict[str, Any]:
    """The JSON object of a POST/PATCH body (MLflow sends one even when empty)."""
    return parse_body(await request.body())


def parse_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY:
        raise InvalidInputError(f"the request body is over {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson is 3-5x faster but refuses some of what Python's json accepts (NaN,
        # Infinity, lone surrogates); json decides, and words the error, for those. (An
        # integer past 64 bits it reads as a float, which a field's type check then names.)
        try:
            found = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(found, dict):
        raise InvalidInputError("the request body must be a JSON object")
    return found


def field(data: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """A required field of ``kind``; a missing or mistyped one names the field."""
    if name not in data or data[name] is None:
        raise InvalidInputError(f"missing value for required parameter '{name}'")
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidInputError(
            f"parameter '{name}' has the wrong type: {type(value).__name__} {value!r:.60}"
        )
    return value


def optional(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    if data.get(name) is None:
        return default
    return field(data, name, kind)


def key_values(data: dict[str, Any], name: str) -> dict[str, str]:
    """``[{"key": k, "value": v}, ...]`` as a mapping; values become text as MLflow's do."""
    items = optional(data, name, list, [])
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise InvalidInputError(f"{name}[{i}] must be an object with a string 'key'")
        value = item.get("value")
        out[item["key"]] = "" if value is None else str(value)
    return out


def millis(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def experiment_json(exp_id: str, name: str, created_at: float) -> dict[str, Any]:
    return {
        "experiment_id": exp_id,
        "name": name,
        "artifact_location": f"mlflow-artifacts:/{exp_id}",
        "lifecycle_stage": "active",
        "creation_time": millis(created_at),
        "last_update_time": millis(created_at),
        "tags": [],
    }


STATUS_TO_MLFLOW = {
    "running": "RUNNING",
    "finished": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
    "scheduled": "SCHEDULED",
}
DELETED_TAG = "mlflow.loopml.deleted"
USER_TAG = "mlflow.user"


def run_json(run: Run, exp_id: str) -> dict[str, Any]:
    deleted = run.tags.get(DELETED_TAG) == "true"
    info = {
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": exp_id,
        "user_id": run.tags.get(USER_TAG, ""),
        "status": STATUS_TO_MLFLOW.get(run.status, run.status.upper()),
        "start_time": millis(run.start_time),
        "end_time": millis(run.end_time),
        "artifact_uri": f"mlflow-artifacts:/{exp_id}/{run.id}/artifacts",
        "lifecycle_stage": "deleted" if deleted else "active",
    }
    stamp = millis(run.end_time or run.start_time)
    data = {
        "metrics": [
            {"key": k, "value": v, "timestamp": stamp, "step": 0} for k, v in run.metrics.items()
        ],
        "params": [{"key": k, "value": v} for k, v in run.params.items()],
        "tags": [{"key": k, "value": v} for k, v in run.tags.items() if k != DELETED_TAG],
    }
    return {"info": info, "data": data, "inputs": {}}


def not_found(what: str) -> NotFoundError:
    return NotFoundError(what)
