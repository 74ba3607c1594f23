"""MLflow's model registry REST API over loopml's registry.

Registered models, versions and aliases are loopml's own: a version registered through
MLflow's client is a loopml model version that ``loopml serve NAME@alias`` serves (see
:mod:`loopml.registry.mlflow_model` for how its MLmodel folder becomes a loopml model).
MLflow's stages are not kept: loopml moves aliases instead, and ``transition-stage``
answers MLflow's error shape saying so.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from loopml.core import names
from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.registry.mlflow_model import (
    MLMODEL,
    NOT_SERVABLE_TAG,
    SOURCE_TAG,
    parse_mlmodel,
    store_model,
)
from loopml.registry.model_registry import ModelVersion, RegisteredModel, Registry
from loopml.server.mlflow import experiments, logged_models
from loopml.server.mlflow.artifacts import KIND as FILE_KIND
from loopml.server.mlflow.artifacts import safe_path
from loopml.server.mlflow.filters import conditions, matches
from loopml.server.mlflow.protocol import (
    PREFIX,
    AlreadyExistsError,
    NotImplementedByLoopml,
    body,
    field,
    key_values,
    millis,
    optional,
)
from loopml.server.routes.common import who
from loopml.server.state import ServerState, state
from loopml.store.metadata.tables import artifacts

St = Annotated[ServerState, Depends(state)]
router = APIRouter(prefix=PREFIX)
MAX_RESULTS = 1000
MAX_MODEL_FILES = 10_000
MAX_MODEL_BYTES = 2 * 1024**3
# Version tags loopml keeps for MLflow's fields; they are not shown as the version's tags.
MODEL_ID_TAG = "mlflow.loopml.model_id"
_HIDDEN = (SOURCE_TAG, MODEL_ID_TAG)
_MODEL_FIELDS = ("name",)
_VERSION_FIELDS = ("name", "run_id", "source", "version_number")


def _registry(s: ServerState) -> Registry:
    return Registry(s.workspace)


def _name(data: dict[str, Any], key: str = "name") -> str:
    return names.check_name(field(data, key), what="model name")


def _version(data: dict[str, Any]) -> int:
    return _number(str(field(data, "version", (str, int))))


def _number(text: str) -> int:
    if len(text) > 12:
        raise InvalidInputError(f"model version {text[:20]!r}... is not a version number")
    number = names.parse_positive_int(text, what="model version")
    if number >= 2**31:
        raise InvalidInputError(f"model version {number} is out of range")
    return number


# --- wire shapes ---------------------------------------------------------------------------


def version_json(mv: ModelVersion) -> dict[str, Any]:
    reason = mv.tags.get(NOT_SERVABLE_TAG, "")
    return {
        "name": mv.name,
        "version": str(mv.version),
        "creation_timestamp": millis(mv.created_at),
        "last_updated_timestamp": millis(mv.created_at),
        "user_id": "",
        "current_stage": "None",
        "description": mv.description,
        "source": mv.tags.get(SOURCE_TAG, f"models:/{mv.name}/{mv.version}"),
        "run_id": mv.run_id or "",
        "status": "READY",
        "status_message": f"loopml cannot serve this version: {reason}" if reason else "",
        "tags": [{"key": k, "value": v} for k, v in mv.tags.items() if k not in _HIDDEN],
        "aliases": list(mv.aliases),
        "model_id": mv.tags.get(MODEL_ID_TAG, ""),
    }


def model_json(registry: Registry, m: RegisteredModel) -> dict[str, Any]:
    latest = []
    if m.latest_version is not None:
        latest = [version_json(registry.get_version(m.name, m.latest_version))]
    return {
        "name": m.name,
        "creation_timestamp": millis(m.created_at),
        "last_updated_timestamp": millis(m.created_at),
        "user_id": "",
        "description": m.description,
        "latest_versions": latest,
        "tags": [{"key": k, "value": v} for k, v in m.tags.items()],
        "aliases": [{"alias": a, "version": str(v)} for a, v in m.aliases.items()],
    }


# --- registered models ---------------------------------------------------------------------


@router.post("/registered-models/create")
async def create_model(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name = _name(data)
    description = optional(data, "description", str, "")
    tags = key_values(data, "tags")

    def write() -> dict[str, Any]:
        registry = _registry(s)
        try:
            m = registry.create_model(name, description=description, tags=tags)
        except ConflictError:
            raise AlreadyExistsError(f"Registered Model (name={name}) already exists.") from None
        return {"registered_model": model_json(registry, m)}

    return await run_in_threadpool(write)


@router.get("/registered-models/get")
async def get_model(s: St, name: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        registry = _registry(s)
        return {"registered_model": model_json(registry, registry.get_model(name))}

    return await run_in_threadpool(read)


@router.post("/registered-models/rename")
async def rename_model(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, new_name = _name(data), _name(data, "new_name")

    def write() -> dict[str, Any]:
        registry = _registry(s)
        try:
            m = registry.rename_model(name, new_name)
        except ConflictError:
            raise AlreadyExistsError(
                f"Registered Model (name={new_name}) already exists."
            ) from None
        return {"registered_model": model_json(registry, m)}

    return await run_in_threadpool(write)


@router.patch("/registered-models/update")
async def update_model(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name = _name(data)
    description = optional(data, "description", str, None)

    def write() -> dict[str, Any]:
        registry = _registry(s)
        m = registry.update_model(name, description=description)
        return {"registered_model": model_json(registry, m)}

    return await run_in_threadpool(write)


@router.delete("/registered-models/delete")
async def delete_model(s: St, request: Request) -> dict[str, Any]:
    name = _name(await body(request))
    await run_in_threadpool(lambda: _registry(s).delete_model(name))
    return {}


@router.post("/registered-models/set-tag")
async def set_model_tag(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, key = _name(data), field(data, "key")
    value = optional(data, "value", (str, int, float), "")
    await run_in_threadpool(lambda: _registry(s).update_model(name, tags={key: str(value)}))
    return {}


@router.delete("/registered-models/delete-tag")
async def delete_model_tag(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, key = _name(data), field(data, "key")
    await run_in_threadpool(lambda: _registry(s).update_model(name, remove_tags=[key]))
    return {}


@router.get("/registered-models/search")
async def search_models(
    s: St,
    filter: str | None = None,
    max_results: int = 100,
    page_token: str = "",
    order_by: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    found = conditions(filter, _MODEL_FIELDS)
    offset, limit = _page(page_token, max_results)
    descending = _order(order_by, ("name",)) == ("name", True)

    def read() -> dict[str, Any]:
        registry = _registry(s)
        models = [
            m
            for m in registry.models()
            if matches({"name": m.name, **{f"tags.{k}": v for k, v in m.tags.items()}}, found)
        ]
        if descending:
            models.reverse()
        answer: dict[str, Any] = {
            "registered_models": [model_json(registry, m) for m in models[offset : offset + limit]]
        }
        if offset + limit < len(models):
            answer["next_page_token"] = str(offset + limit)
        return answer

    return await run_in_threadpool(read)


@router.post("/registered-models/get-latest-versions")
async def latest_versions(s: St, request: Request) -> dict[str, Any]:
    """Stages are not kept: every version is in stage "None", so asking for the latest of
    any other stage finds nothing."""
    data = await body(request)
    name = _name(data)
    stages = optional(data, "stages", list, [])

    def read() -> dict[str, Any]:
        m = _registry(s).get_model(name)
        if m.latest_version is None or (stages and "None" not in stages):
            return {"model_versions": []}
        return {"model_versions": [version_json(_registry(s).get_version(name, m.latest_version))]}

    return await run_in_threadpool(read)


# --- aliases -------------------------------------------------------------------------------


@router.post("/registered-models/alias")
async def set_alias(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, version = _name(data), _version(data)
    alias = names.check_alias(field(data, "alias"))

    def write() -> None:
        registry = _registry(s)
        current = registry.alias_version(name, alias)
        if current == version:
            return
        event = registry.move_alias(
            name,
            alias,
            version,
            action="promote",
            reason="set through MLflow's set-registered-model-alias",
            expected_from=current,
            created_by=who(request),
        )
        if not event.allowed:
            raise ConflictError(event.reason)

    await run_in_threadpool(write)
    return {}


@router.delete("/registered-models/alias")
async def delete_alias(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, alias = _name(data), names.check_alias(field(data, "alias"))
    await run_in_threadpool(
        lambda: _registry(s).delete_alias(
            name,
            alias,
            reason="deleted through MLflow's delete-registered-model-alias",
            created_by=who(request),
        )
    )
    return {}


@router.get("/registered-models/alias")
async def version_by_alias(s: St, name: str, alias: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        registry = _registry(s)
        version = registry.alias_version(names.check_name(name, what="model name"), alias)
        if version is None:
            raise NotFoundError(f"Registered model alias {alias[:100]} not found.")
        return {"model_version": version_json(registry.get_version(name, version))}

    return await run_in_threadpool(read)


# --- versions ------------------------------------------------------------------------------


@router.post("/model-versions/create")
async def create_version(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name = _name(data)
    source = field(data, "source")
    run_id = optional(data, "run_id", str, "") or None
    model_id = optional(data, "model_id", str, "") or None
    description = optional(data, "description", str, "")
    tags = key_values(data, "tags")

    def write() -> dict[str, Any]:
        registry = _registry(s)
        registry.get_model(name)  # MLflow creates the registered model first
        folder, logged = _resolve_source(s, source, run_id, model_id)
        rid = run_id or (logged or {}).get("source_run_id") or None
        files = _folder_files(s, folder)
        if MLMODEL not in files:
            raise InvalidInputError(
                f"source {source[:200]!r} holds no MLmodel file; upload the model "
                "(mlflow.<flavor>.log_model) before registering it"
            )
        store = s.workspace.artifacts
        mlmodel = parse_mlmodel(store.get_bytes(files[MLMODEL], what=f"{folder}/{MLMODEL}"))
        contents = {
            rel: store.get_bytes(digest, what=f"{folder}/{rel}") for rel, digest in files.items()
        }
        saved, reason = store_model(store, mlmodel, contents)
        all_tags = {**tags, SOURCE_TAG: source}
        if logged is not None:
            all_tags[MODEL_ID_TAG] = logged["model_id"]
        if reason is not None:
            all_tags[NOT_SERVABLE_TAG] = reason
        mv = registry.register_saved(
            name,
            saved,
            run_id=rid if rid and _is_run(s, rid) else None,
            description=description,
            tags=all_tags,
            created_by=who(request),
        )
        return {"model_version": version_json(mv)}

    return await run_in_threadpool(write)


def _is_run(s: ServerState, run_id: str) -> bool:
    try:
        s.tracker.get_run(run_id)
    except NotFoundError:
        return False
    return True


def _resolve_source(
    s: ServerState, source: str, run_id: str | None, model_id: str | None
) -> tuple[str, dict[str, Any] | None]:
    """The artifact-proxy folder a version's files are in, and its logged model if any."""
    ws = s.workspace
    if model_id is not None:
        logged = logged_models.get(ws, model_id)
        return logged_models.artifact_path(logged["experiment_id"], logged["model_id"]), logged
    scheme, sep, rest = source.partition(":/")
    if not sep:
        raise InvalidInputError(
            f"source {source[:200]!r} is not a URI loopml reads; use runs:/, models:/ or "
            "mlflow-artifacts:/"
        )
    rest = rest.strip("/")
    if scheme == "mlflow-artifacts":
        return safe_path(rest), None
    if scheme == "models" and rest.startswith("m-") and "/" not in rest:
        logged = logged_models.get(ws, rest)
        return logged_models.artifact_path(logged["experiment_id"], logged["model_id"]), logged
    if scheme == "runs":
        run, _, path = rest.partition("/")
        safe_path(path or ".")  # refuses an escaping path before it is used
        found = s.tracker.get_run(run)
        exp_id = experiments.by_name(ws, found.experiment).id
        folder = f"{exp_id}/{run}/artifacts/{path}"
        if MLMODEL in _folder_files(s, folder):
            return folder, None
        candidates = logged_models.of_run(ws, run, path)
        if not candidates:
            raise NotFoundError(f"Unable to find a logged_model with artifact_path {path!r}")
        logged = candidates[-1]
        return logged_models.artifact_path(logged["experiment_id"], logged["model_id"]), logged
    raise InvalidInputError(
        f"source scheme {scheme[:40]!r} is not one loopml reads; upload the model through "
        "this server (runs:/, models:/<model_id> or mlflow-artifacts:/)"
    )


def _folder_files(s: ServerState, folder: str) -> dict[str, str]:
    """Relative path -> digest of the newest upload of each file under ``folder``."""
    prefix = folder.rstrip("/") + "/"
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with s.workspace.engine.connect() as conn:
        rows = conn.execute(
            select(artifacts.c.name, artifacts.c.digest, artifacts.c.size)
            .where(artifacts.c.kind == FILE_KIND, artifacts.c.name.like(escaped + "%", "\\"))
            .order_by(artifacts.c.created_at)
            .limit(MAX_MODEL_FILES + 1)
        ).all()
    if len(rows) > MAX_MODEL_FILES:
        raise InvalidInputError(f"a model folder may hold at most {MAX_MODEL_FILES} files")
    newest = {name[len(prefix) :]: (digest, size) for name, digest, size in rows}
    # Registration reads the folder into memory to build the loopml model from it.
    if sum(size for _, size in newest.values()) > MAX_MODEL_BYTES:
        raise InvalidInputError(
            f"a model registered through MLflow's API may be at most {MAX_MODEL_BYTES} bytes; "
            "register a larger one with lm.models.register"
        )
    return {rel: digest for rel, (digest, _) in newest.items()}


@router.get("/model-versions/get")
async def get_version(s: St, name: str, version: str) -> dict[str, Any]:
    number = _number(version)
    mv = await run_in_threadpool(lambda: _registry(s).get_version(name, number))
    return {"model_version": version_json(mv)}


@router.patch("/model-versions/update")
async def update_version(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, version = _name(data), _version(data)
    description = optional(data, "description", str, None)
    mv = await run_in_threadpool(
        lambda: _registry(s).update_version(name, version, description=description)
    )
    return {"model_version": version_json(mv)}


@router.delete("/model-versions/delete")
async def delete_version(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, version = _name(data), _version(data)
    await run_in_threadpool(
        lambda: _registry(s).delete_version(name, version, created_by=who(request))
    )
    return {}


@router.post("/model-versions/set-tag")
async def set_version_tag(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, version, key = _name(data), _version(data), field(data, "key")
    value = optional(data, "value", (str, int, float), "")
    if key in _HIDDEN:
        raise InvalidInputError(f"tag {key!r} is kept by loopml")
    await run_in_threadpool(
        lambda: _registry(s).update_version(name, version, tags={key: str(value)})
    )
    return {}


@router.delete("/model-versions/delete-tag")
async def delete_version_tag(s: St, request: Request) -> dict[str, Any]:
    data = await body(request)
    name, version, key = _name(data), _version(data), field(data, "key")
    if key in _HIDDEN:
        raise InvalidInputError(f"tag {key!r} is kept by loopml")
    await run_in_threadpool(lambda: _registry(s).remove_version_tags(name, version, [key]))
    return {}


@router.get("/model-versions/get-download-uri")
async def download_uri(s: St, name: str, version: str) -> dict[str, Any]:
    number = _number(version)

    def read() -> dict[str, Any]:
        mv = _registry(s).get_version(name, number)
        source = mv.tags.get(SOURCE_TAG)
        if source is None:
            raise NotImplementedByLoopml(
                f"{mv.ref} was registered by loopml, not uploaded through MLflow; load it "
                f"with lm.models.load('{mv.ref}')"
            )
        if source.startswith(("runs:/", "models:/")):
            folder, _ = _resolve_source(s, source, mv.run_id, mv.tags.get(MODEL_ID_TAG))
            source = "mlflow-artifacts:/" + folder
        return {"artifact_uri": source}

    return await run_in_threadpool(read)


@router.get("/model-versions/search")
async def search_versions(
    s: St,
    filter: str | None = None,
    max_results: int = 1000,
    page_token: str = "",
    order_by: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    found = conditions(filter, _VERSION_FIELDS)
    offset, limit = _page(page_token, max_results, 200_000)
    ascending = _order(order_by, ("name", "version_number")) == ("version_number", False)

    def read() -> dict[str, Any]:
        registry = _registry(s)
        wanted = [v for k, op, v in found if k == "name" and op == "="]
        models = wanted[:1] if wanted else [m.name for m in registry.models()]
        versions: list[ModelVersion] = []
        for model in models:
            try:
                versions.extend(registry.versions(model))
            except NotFoundError:
                continue
        versions = [v for v in versions if matches(_version_fields(v), found)]
        # MLflow's order: by name, newest version first (or oldest, when asked).
        versions.sort(key=lambda v: (v.name, v.version if ascending else -v.version))
        page = versions[offset : offset + limit]
        answer: dict[str, Any] = {"model_versions": [version_json(v) for v in page]}
        if offset + limit < len(versions):
            answer["next_page_token"] = str(offset + limit)
        return answer

    return await run_in_threadpool(read)


def _version_fields(v: ModelVersion) -> dict[str, str]:
    return {
        "name": v.name,
        "run_id": v.run_id or "",
        "source": v.tags.get(SOURCE_TAG, ""),
        "version_number": str(v.version),
        **{f"tags.{k}": t for k, t in v.tags.items()},
    }


@router.post("/model-versions/transition-stage")
async def transition_stage(request: Request) -> None:
    await body(request)
    raise NotImplementedByLoopml(
        "loopml does not keep MLflow's model stages (MLflow deprecated them too); point an "
        "alias at the version instead: MlflowClient().set_registered_model_alias(name, "
        "'champion', version), then `loopml serve NAME@champion`"
    )


# --- paging and order ----------------------------------------------------------------------


def _page(token: str, limit: int, most: int = MAX_RESULTS) -> tuple[int, int]:
    if not 0 < limit <= most:
        raise InvalidInputError(f"max_results must be from 1 to {most}")
    if not token:
        return 0, limit
    if token.isascii() and token.isdigit() and len(token) < 10:
        return int(token), limit
    raise InvalidInputError("page_token is not one this server gave out")


def _order(clauses: list[str] | None, fields: tuple[str, ...]) -> tuple[str, bool] | None:
    """The one (field, descending) order loopml sorts these lists by, or None."""
    if not clauses:
        return None
    if len(clauses) > 1:
        raise InvalidInputError("order_by takes one field here")
    parts = clauses[0].split()
    if not parts or parts[0] not in fields or len(parts) > 2:
        raise InvalidInputError(f"order_by takes one of {', '.join(fields)}, then ASC or DESC")
    direction = parts[1].upper() if len(parts) == 2 else "ASC"
    if direction not in ("ASC", "DESC"):
        raise InvalidInputError("order_by takes ASC or DESC")
    return parts[0], direction == "DESC"
