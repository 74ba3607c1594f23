"""Schedules and triggers, stored: cron times, new dataset versions, named events.

Registering checks everything up front (the pipeline imports, the cron expression parses,
the parameters fit the pipeline) so a schedule never fails for a reason known at
registration. ``fire_event`` is how other parts (monitoring) ask for a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock
from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.pipelines import params as params_mod
from loopml.pipelines.executors import EXECUTORS
from loopml.pipelines.loader import load_pipeline
from loopml.store.metadata.tables import (
    dataset_versions,
    datasets,
    pipeline_events,
    pipeline_schedules,
)
from loopml.store.workspace import Workspace

Kind = Literal["cron", "dataset", "event"]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,249}$")


@dataclass(frozen=True)
class Schedule:
    id: int
    name: str
    pipeline_ref: str
    kind: str
    spec: str
    param: str | None
    params: dict[str, Any]
    executor: str
    enabled: bool
    next_run: float | None
    cursor: int | None
    last_run_id: str | None
    created_at: float
    # Consecutive failures of this trigger, when it is retried next, and what went wrong.
    failures: int = 0
    retry_at: float | None = None
    last_error: str | None = None


def next_cron_time(expression: str, after: float) -> float:
    from croniter import croniter

    return float(croniter(expression, datetime.fromtimestamp(after, UTC)).get_next(float))


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"{name!r} is not a valid {what} name: letters, digits, '.', '_', ':' and '-'"
        )
    return name


def _add(
    ws: Workspace,
    *,
    name: str,
    pipeline_ref: str,
    kind: Kind,
    spec: str,
    param: str | None,
    params: Mapping[str, Any] | None,
    executor: str,
    next_run: float | None,
    cursor: int | None,
) -> Schedule:
    _check_name(name, "schedule")
    if executor not in EXECUTORS:
        raise InvalidInputError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    pipe = load_pipeline(pipeline_ref)
    given = dict(params or {})
    probe = dict(given)
    if param is not None:
        if param not in pipe.signature.parameters:
            raise InvalidInputError(f"pipeline {pipe.name} has no parameter {param!r}")
        probe[param] = None  # supplied by the trigger
    pipe.resolve_params(probe)
    pipe.check_types(given)
    stored = params_mod.encode(given, pipeline=pipe.name)
    try:
        with ws.write_engine.begin() as conn:
            result = conn.execute(
                insert(pipeline_schedules).values(
                    name=name,
                    pipeline_ref=pipeline_ref,
                    kind=kind,
                    spec=spec,
                    param=param,
                    params=stored,
                    executor=executor,
                    enabled=True,
                    next_run=next_run,
                    cursor=cursor,
                    last_run_id=None,
                    created_at=clock.now(),
                )
            )
    except SQLIntegrityError:
        raise ConflictError(
            f"a schedule named {name!r} exists; remove it first or pick another name"
        ) from None
    assert result.inserted_primary_key is not None
    return get(ws, name)


def add_cron(
    ws: Workspace,
    name: str,
    pipeline_ref: str,
    cron: str,
    *,
    params: Mapping[str, Any] | None = None,
    executor: str = "local",
    now: float | None = None,
) -> Schedule:
    """Run ``pipeline_ref`` at the times of the cron expression (UTC)."""
    from croniter import croniter

    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise InvalidInputError(
            f"{cron!r} is not a cron expression; e.g. '0 3 * * *' (03:00 UTC daily)"
        )
    start = clock.now() if now is None else now
    return _add(
        ws,
        name=name,
        pipeline_ref=pipeline_ref,
        kind="cron",
        spec=cron,
        param=None,
        params=params,
        executor=executor,
        next_run=next_cron_time(cron, start),
        cursor=None,
    )


def add_dataset_trigger(
    ws: Workspace,
    name: str,
    pipeline_ref: str,
    dataset: str,
    *,
    param: str,
    params: Mapping[str, Any] | None = None,
    executor: str = "local",
) -> Schedule:
    """Run ``pipeline_ref`` with ``param=<the new version>`` whenever ``dataset`` gets a
    version newer than the latest at registration."""
    from loopml.data.catalog import check_name

    check_name(dataset)
    return _add(
        ws,
        name=name,
        pipeline_ref=pipeline_ref,
        kind="dataset",
        spec=dataset,
        param=param,
        params=params,
        executor=executor,
        next_run=None,
        cursor=latest_dataset_version(ws, dataset),
    )


def add_event_trigger(
    ws: Workspace,
    name: str,
    pipeline_ref: str,
    event: str,
    *,
    params: Mapping[str, Any] | None = None,
    executor: str = "local",
) -> Schedule:
    """Run ``pipeline_ref`` when ``fire_event(event)`` is called (after registration)."""
    _check_name(event, "event")
    return _add(
        ws,
        name=name,
        pipeline_ref=pipeline_ref,
        kind="event",
        spec=event,
        param=None,
        params=params,
        executor=executor,
        next_run=None,
        cursor=latest_event_id(ws, event),
    )


def fire_event(ws: Workspace, name: str, payload: Mapping[str, Any] | None = None) -> int:
    """Record event ``name``; schedulers run the pipelines triggered by it. Returns its id."""
    _check_name(name, "event")
    body = params_mod.encode(dict(payload or {}), pipeline=f"event {name}")
    with ws.write_engine.begin() as conn:
        result = conn.execute(
            insert(pipeline_events).values(name=name, payload=body, created_at=clock.now())
        )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def latest_dataset_version(ws: Workspace, dataset: str) -> int:
    with ws.engine.connect() as conn:
        found = conn.execute(
            select(func.max(dataset_versions.c.version))
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .where(datasets.c.name == dataset)
        ).scalar()
    return int(found or 0)


def latest_event_id(ws: Workspace, event: str) -> int:
    with ws.engine.connect() as conn:
        found = conn.execute(
            select(func.max(pipeline_events.c.id)).where(pipeline_events.c.name == event)
        ).scalar()
    return int(found or 0)


def get(ws: Workspace, name: str) -> Schedule:
    with ws.engine.connect() as conn:
        row = conn.execute(
            select(pipeline_schedules).where(pipeline_schedules.c.name == name)
        ).first()
    if row is None:
        raise NotFoundError(f"no schedule named {name!r}")
    return Schedule(**row._mapping)


def list_schedules(ws: Workspace) -> list[Schedule]:
    with ws.engine.connect() as conn:
        rows = conn.execute(select(pipeline_schedules).order_by(pipeline_schedules.c.name)).all()
    return [Schedule(**r._mapping) for r in rows]


def remove(ws: Workspace, name: str) -> None:
    with ws.write_engine.begin() as conn:
        gone = conn.execute(delete(pipeline_schedules).where(pipeline_schedules.c.name == name))
    if not gone.rowcount:
        raise NotFoundError(f"no schedule named {name!r}")
