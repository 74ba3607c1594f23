"""MLflow experiment ids over loopml's experiments table.

An MLflow experiment id is loopml's integer id as text; MLflow's default experiment,
id ``"0"``, is loopml's default experiment (created on first use).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select

from loopml.core import clock
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.server.mlflow.protocol import AlreadyExistsError
from loopml.store.metadata.tables import experiments
from loopml.store.workspace import Workspace
from loopml.tracking import validation
from loopml.tracking.tracker import DEFAULT_EXPERIMENT

DEFAULT_ID = "0"


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    created_at: float


def _wire_id(row_id: int, name: str) -> str:
    return DEFAULT_ID if name == DEFAULT_EXPERIMENT else str(row_id)


def all_experiments(ws: Workspace) -> list[Experiment]:
    with ws.engine.connect() as conn:
        rows = conn.execute(select(experiments).order_by(experiments.c.id)).all()
    return [Experiment(_wire_id(r.id, r.name), r.name, r.created_at) for r in rows]


_BY_NAME = select(experiments).where(experiments.c.name == bindparam("name"))


def by_name(ws: Workspace, name: str) -> Experiment:
    with ws.engine.connect() as conn:
        row = conn.execute(_BY_NAME, {"name": name}).first()
    if row is None:
        raise NotFoundError(f"Could not find experiment with name '{name}'")
    return Experiment(_wire_id(row.id, row.name), row.name, row.created_at)


def by_id(ws: Workspace, exp_id: str) -> Experiment:
    if exp_id == DEFAULT_ID:
        return ensure(ws, DEFAULT_EXPERIMENT)
    if not exp_id.isascii() or not exp_id.isdigit() or len(exp_id) > 18:
        raise InvalidInputError(f"experiment id {exp_id[:40]!r} is not a number")
    with ws.engine.connect() as conn:
        row = conn.execute(select(experiments).where(experiments.c.id == int(exp_id))).first()
    if row is None:
        raise NotFoundError(f"No Experiment with id={exp_id} exists")
    return Experiment(_wire_id(row.id, row.name), row.name, row.created_at)


def ensure(ws: Workspace, name: str) -> Experiment:
    try:
        return by_name(ws, name)
    except NotFoundError:
        return create(ws, name)


def create(ws: Workspace, name: str) -> Experiment:
    validation.check_name(name, "experiment")
    with ws.write_engine.begin() as conn:
        if conn.execute(select(experiments.c.id).where(experiments.c.name == name)).first():
            raise AlreadyExistsError(f"Experiment '{name}' already exists.")
        conn.execute(insert(experiments).values(name=name, created_at=clock.now()))
    return by_name(ws, name)
