"""The MLflow REST endpoints: experiments, runs, params, tags, metrics and artifacts.

Each handler parses MLflow's JSON (or query string), calls loopml's tracker and answers
MLflow's shapes. Writes go through :meth:`Tracker.attach` and :meth:`Tracker.log_points`,
so every rule of loopml's runs holds here too (write-once params, finite metric values, no
writes to ended runs).
"""

from __future__ import annotations

import base64
import math
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import update

from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.server.auth import require_access
from loopml.server.mlflow import artifacts, experiments, logged_models, registry
from loopml.server.mlflow.filters import translate_filter, translate_order_by
from loopml.server.mlflow.hot import Endpoints
from loopml.server.mlflow.protocol import (
    DELETED_TAG,
    PREFIX,
    USER_TAG,
    NotImplementedByLoopml,
    experiment_json,
    field,
    key_values,
    optional,
    run_json,
)
from loopml.server.routes.common import who
from loopml.server.state import ServerState
from loopml.store.metadata.nowait import WouldWait
from loopml.store.metadata.tables import executions
from loopml.tracking import validation
from loopml.tracking.records import Run
from loopml.tracking.tracker import MAX_PAGE

router = APIRouter(dependencies=[Depends(require_access)], include_in_schema=False)
# Experiments and runs: answered in front of FastAPI's routing (hot.py says why).
hot = Endpoints()
MAX_RESULTS = 50_000
_END = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}


def _run(s: ServerState, run_id: str) -> tuple[Run, str]:
    try:
        run = s.tracker.get_run(run_id)
    except NotFoundError:
        raise NotFoundError(f"Run '{run_id}' not found") from None
    return run, experiments.by_name(s.workspace, run.experiment).id


def _run_answer(s: ServerState, run_id: str) -> dict[str, Any]:
    run, exp_id = _run(s, run_id)
    answer = run_json(run, exp_id)
    # MLflow's client picks among a run's logged models of one name by these steps.
    answer["outputs"] = {"model_outputs": logged_models.outputs_of(s.workspace, run_id)}
    return {"run": answer}


# --- experiments ---------------------------------------------------------------------------


@hot.post("/experiments/create")
def create_experiment(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    exp = experiments.create(s.workspace, field(data, "name"))
    return {"experiment_id": exp.id}


@hot.get("/experiments/get")
def get_experiment(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    exp = experiments.by_id(s.workspace, field(data, "experiment_id"))
    return {"experiment": experiment_json(exp.id, exp.name, exp.created_at)}


@hot.get("/experiments/get-by-name")
def get_experiment_by_name(
    s: ServerState, data: dict[str, Any], request: Request
) -> dict[str, Any]:
    exp = experiments.by_name(s.workspace, field(data, "experiment_name"))
    return {"experiment": experiment_json(exp.id, exp.name, exp.created_at)}


@hot.post("/experiments/search")
def search_experiments(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    if optional(data, "filter", str, ""):
        raise NotImplementedByLoopml("experiments/search does not take a filter in loopml yet")
    limit = optional(data, "max_results", int, 1000)
    offset = _offset(optional(data, "page_token", str, ""))
    found = experiments.all_experiments(s.workspace)
    page = found[offset : offset + limit]
    answer: dict[str, Any] = {
        "experiments": [experiment_json(e.id, e.name, e.created_at) for e in page]
    }
    if offset + limit < len(found):
        answer["next_page_token"] = _token(offset + limit)
    return answer


# --- runs ----------------------------------------------------------------------------------


@hot.post("/runs/create")
def create_run(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    exp_id = optional(data, "experiment_id", str, experiments.DEFAULT_ID)
    exp = experiments.by_id(s.workspace, exp_id)
    tags = key_values(data, "tags")
    name = optional(data, "run_name", str, None) or tags.get("mlflow.runName")
    user = optional(data, "user_id", str, "")
    if user:
        tags.setdefault(USER_TAG, user)
    run = s.tracker.start_run(
        exp.name, name=name, tags=tags, capture_environment=False, created_by=who(request)
    )
    run.set_tags({"mlflow.runName": run.name})
    return _run_answer(s, run.id)


@hot.get("/runs/get")
def get_run(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    return _run_answer(s, field(data, "run_id"))


@hot.post("/runs/update")
def update_run(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    run_id = field(data, "run_id")
    status = optional(data, "status", str, None)
    run, exp_id = _run(s, run_id)
    new_name = optional(data, "run_name", str, None)
    if new_name not in (None, "", run.name):
        _rename(s, run_id, validation.check_name(new_name, "run"))
    if status is not None and status != "RUNNING":
        if status not in _END:
            raise InvalidInputError(f"status must be one of {sorted(_END)}, not {status!r}")
        if run.status == "running":
            s.tracker.writer.flush()
            s.tracker.store.end_run(run_id, _END[status], None)
    return {"run_info": run_json(s.tracker.get_run(run_id), exp_id)["info"]}


def _rename(s: ServerState, run_id: str, name: str) -> None:
    """A run's name is its execution's; MLflow also keeps it as the mlflow.runName tag."""
    with s.workspace.write_engine.begin() as conn:
        conn.execute(
            update(executions)
            .where(executions.c.id == run_id, executions.c.kind == "run")
            .values(name=name)
        )
    s.tracker.store.set_tags(run_id, {"mlflow.runName": name})


def _set_deleted(s: ServerState, data: dict[str, Any], deleted: bool) -> dict[str, Any]:
    run_id = field(data, "run_id")
    _run(s, run_id)
    s.tracker.store.set_tags(run_id, {DELETED_TAG: "true" if deleted else "false"})
    return {}


@hot.post("/runs/delete")
def delete_run(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    return _set_deleted(s, data, True)


@hot.post("/runs/restore")
def restore_run(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    return _set_deleted(s, data, False)


_VIEWS = {"ACTIVE_ONLY": {"false"}, "DELETED_ONLY": {"true"}, "ALL": {"true", "false"}}


@hot.post("/runs/search")
def search_runs(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    ids = optional(data, "experiment_ids", list, [])
    view = optional(data, "run_view_type", str, "ACTIVE_ONLY")
    limit = optional(data, "max_results", int, 1000)
    if not 0 < limit <= MAX_RESULTS:
        raise InvalidInputError(f"max_results must be from 1 to {MAX_RESULTS}")
    # Longer pages come back in several: the answer's next_page_token continues.
    limit = min(limit, MAX_PAGE)
    offset = _offset(optional(data, "page_token", str, ""))
    flt = translate_filter(optional(data, "filter", str, None))
    order = translate_order_by(optional(data, "order_by", list, []))
    exps = [experiments.by_id(s.workspace, str(i)) for i in ids]
    by_name = {e.name: e.id for e in exps}
    page = s.tracker.runs_page(
        experiment=list(by_name) if exps else None,
        filter=flt,
        order_by=", ".join(order) or None,
        offset=offset,
        limit=limit,
    )
    keep = _VIEWS.get(view)
    if keep is None:
        raise InvalidInputError(f"run_view_type must be one of {sorted(_VIEWS)}")
    ids_of = by_name or {e.name: e.id for e in experiments.all_experiments(s.workspace)}
    runs = [
        run_json(r, ids_of.get(r.experiment, ""))
        for r in page.runs
        if r.tags.get(DELETED_TAG, "false") in keep
    ]
    answer: dict[str, Any] = {"runs": runs}
    if offset + limit < page.total:
        answer["next_page_token"] = _token(offset + limit)
    return answer


# --- params, tags, metrics -----------------------------------------------------------------


def _metric(item: Any, i: int | None = None) -> tuple[str, float, int, float | None]:
    where = "" if i is None else f"metrics[{i}]."
    if not isinstance(item, dict):
        raise InvalidInputError(f"{where or 'a metric'} must be an object")
    key = field(item, "key")
    value = field(item, "value", (int, float, str))
    try:
        number = float(value)
    except ValueError:
        raise InvalidInputError(f"{where}value {value!r} is not a number") from None
    step = optional(item, "step", (int, str), 0)
    try:
        step = int(step)
    except ValueError:
        raise InvalidInputError(f"{where}step {step!r} is not an integer") from None
    stamp = optional(item, "timestamp", (int, float, str), None)
    seconds = None
    if stamp is not None:
        try:
            seconds = float(stamp) / 1000.0
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):
            raise InvalidInputError(f"{where}timestamp {stamp!r} is not a time in milliseconds")
    return key, number, step, seconds


@hot.post("/runs/log-metric", inline=True)
def log_metric(
    s: ServerState, data: dict[str, Any], request: Request, *, wait: bool
) -> dict[str, Any]:
    point = _metric(data)
    s.tracker.log_points(field(data, "run_id"), [point], wait=wait)
    return {}


@hot.post("/runs/log-parameter")
def log_param(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    key, value = field(data, "key"), optional(data, "value", (str, int, float), "")
    s.tracker.attach(field(data, "run_id")).log_params({key: str(value)})
    return {}


@hot.post("/runs/set-tag")
def set_tag(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    run_id, key = field(data, "run_id"), field(data, "key")
    value = optional(data, "value", (str, int, float), "")
    _run(s, run_id)
    # MLflow tags a run after it ended too, so this writes through the store, not an
    # attached run; the names and values are checked as the tracker checks them.
    name = validation.check_name(key, "tag")
    s.tracker.store.set_tags(run_id, {name: validation.tag_text(name, value)})
    return {}


@hot.post("/runs/log-batch", inline=True)
def log_batch(
    s: ServerState, data: dict[str, Any], request: Request, *, wait: bool
) -> dict[str, Any]:
    if not wait and (data.get("params") or data.get("tags")):
        # Params and tags are written the ordinary way, before the metrics: on a worker
        # thread, before anything here is parsed only to be parsed there again.
        raise WouldWait
    metrics = [_metric(m, i) for i, m in enumerate(optional(data, "metrics", list, []))]
    params = key_values(data, "params")
    tags = key_values(data, "tags")
    run_id = field(data, "run_id")
    if params or tags:
        run = s.tracker.attach(run_id)
        if params:
            run.log_params(params)
        if tags:
            run.set_tags(tags)
    # Written now, in one transaction with the check that the run takes writes.
    s.tracker.log_points(run_id, metrics, wait=wait)
    return {}


@hot.post("/runs/log-inputs")
def log_inputs(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    """Dataset inputs are kept as tags (name and digest), which search and the UI show."""
    tags: dict[str, str] = {}
    for i, item in enumerate(optional(data, "datasets", list, [])):
        dataset = item.get("dataset") if isinstance(item, dict) else None
        if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str):
            raise InvalidInputError(f"datasets[{i}] must hold a dataset with a name")
        tags[f"mlflow.input.{dataset['name']}"] = str(dataset.get("digest", ""))
    run = s.tracker.attach(field(data, "run_id"))
    if tags:
        run.set_tags(tags)
    return {}


@hot.get("/metrics/get-history")
def metric_history(s: ServerState, data: dict[str, Any], request: Request) -> dict[str, Any]:
    run_id, metric_key = field(data, "run_id"), field(data, "metric_key")
    try:
        h = s.tracker.metric_history(run_id, metric_key)
    except NotFoundError:
        _run(s, run_id)
        return {"metrics": []}
    stamps = (h.timestamps * 1000).round().astype("int64").tolist()
    return {
        "metrics": [
            {"key": metric_key, "value": v, "timestamp": t, "step": st}
            for st, t, v in zip(h.steps.tolist(), stamps, h.values.tolist(), strict=True)
        ]
    }


# --- paging --------------------------------------------------------------------------------


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        kind, _, number = text.partition(":")
        if kind == "offset" and number.isascii() and number.isdigit():
            return int(number)
    except (ValueError, UnicodeError):
        pass
    raise InvalidInputError("page_token is not one this server gave out")


router.include_router(registry.router)
router.include_router(logged_models.router)
router.include_router(artifacts.router)


@router.api_route(PREFIX + "/{endpoint:path}", methods=["GET", "POST", "PATCH", "DELETE", "PUT"])
async def not_implemented(endpoint: str, request: Request) -> None:
    raise NotImplementedByLoopml(
        f"loopml does not implement MLflow's {request.method} {PREFIX}/{endpoint[:200]}"
    )
