"""The lineage graph: artifacts, executions and the input/output events between them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Engine, insert, literal, or_, select, union_all

from loopml.core import clock
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.core.ids import new_id
from loopml.store.metadata.tables import artifacts, events, executions

EventType = Literal["input", "output"]
Direction = Literal["upstream", "downstream"]


@dataclass(frozen=True)
class ArtifactRecord:
    id: str
    digest: str
    kind: str
    name: str | None
    size: int
    created_at: float
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionRecord:
    id: str
    kind: str
    name: str | None
    status: str
    start_time: float
    end_time: float | None
    error: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    type: EventType
    role: str


@dataclass(frozen=True)
class LineageGraph:
    root: str
    artifacts: dict[str, ArtifactRecord]
    executions: dict[str, ExecutionRecord]
    edges: tuple[Edge, ...]

    def node_ids(self) -> set[str]:
        return set(self.artifacts) | set(self.executions)


class Lineage:
    """Records and queries the graph. Writes go through the workspace's write engine."""

    def __init__(self, engine: Engine, write_engine: Engine) -> None:
        self._engine = engine
        self._write = write_engine

    # Each writer takes an optional ``conn``: inside a caller's transaction (registering a
    # model version, adding a dataset version) the lineage rows commit or roll back with
    # the caller's own rows. Without one, the write is its own transaction.

    def add_artifact(
        self,
        digest: str,
        kind: str,
        size: int,
        *,
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> ArtifactRecord:
        record = ArtifactRecord(
            new_id(), digest, kind, name, size, clock.now(), dict(properties or {})
        )
        with self._writing(conn) as c:
            c.execute(insert(artifacts).values(**record.__dict__))
        return record

    def add_execution(
        self,
        kind: str,
        *,
        name: str | None = None,
        status: str = "running",
        properties: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> ExecutionRecord:
        """Record an execution; one recorded in any status but ``running`` is already over."""
        start = clock.now()
        end = None if status == "running" else start
        record = ExecutionRecord(
            new_id(), kind, name, status, start, end, None, dict(properties or {})
        )
        with self._writing(conn) as c:
            c.execute(insert(executions).values(**record.__dict__))
        return record

    def link(
        self,
        execution_id: str,
        artifact_id: str,
        type: EventType,
        role: str = "",
        *,
        conn: Connection | None = None,
    ) -> None:
        if type not in ("input", "output"):
            raise InvalidInputError(f"event type must be 'input' or 'output', not {type!r}")
        with self._writing(conn) as c:
            c.execute(
                insert(events).values(
                    execution_id=execution_id,
                    artifact_id=artifact_id,
                    type=type,
                    role=role,
                    created_at=clock.now(),
                )
            )

    def require_artifacts(self, conn: Connection, ids: Iterable[str], what: str) -> None:
        """Raise NotFoundError naming every id in ``ids`` that is not a recorded artifact."""
        wanted = set(ids)
        if not wanted:
            return
        found = {
            r[0] for r in conn.execute(select(artifacts.c.id).where(artifacts.c.id.in_(wanted)))
        }
        missing = sorted(wanted - found)
        if missing:
            raise NotFoundError(
                f"no {what} artifact with id {', '.join(map(repr, missing))} in this "
                "workspace; pass the artifact id of a registered dataset version"
            )

    def require_execution(self, conn: Connection, execution_id: str, what: str) -> None:
        found = conn.execute(select(executions.c.id).where(executions.c.id == execution_id)).first()
        if found is None:
            raise NotFoundError(f"no {what} with id {execution_id!r} in this workspace")

    @contextlib.contextmanager
    def _writing(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        with self._write.begin() as own:
            yield own

    def get_artifact(self, artifact_id: str) -> ArtifactRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(artifacts).where(artifacts.c.id == artifact_id)).first()
        if row is None:
            raise NotFoundError(f"no artifact record {artifact_id!r}")
        return ArtifactRecord(**row._mapping)

    def get_execution(self, execution_id: str) -> ExecutionRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(executions).where(executions.c.id == execution_id)).first()
        if row is None:
            raise NotFoundError(f"no execution {execution_id!r}")
        return ExecutionRecord(**row._mapping)

    def latest_executions(self, kinds: Iterable[str], *, limit: int = 200) -> list[ExecutionRecord]:
        """The latest executions whose kind starts with one of ``kinds``, newest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(executions)
                .where(or_(*(executions.c.kind.startswith(k) for k in kinds)))
                .order_by(executions.c.start_time.desc())
                .limit(limit)
            ).all()
        return [ExecutionRecord(**r._mapping) for r in rows]

    def artifacts_of(self, execution_id: str, type: EventType) -> list[tuple[str, ArtifactRecord]]:
        """(role, artifact) pairs an execution read (``input``) or wrote (``output``)."""
        q = (
            select(events.c.role, artifacts)
            .join(artifacts, artifacts.c.id == events.c.artifact_id)
            .where(events.c.execution_id == execution_id, events.c.type == type)
            .order_by(events.c.created_at)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            (r.role, ArtifactRecord(**{k: v for k, v in r._mapping.items() if k != "role"}))
            for r in rows
        ]

    def graph(self, node_id: str, direction: Direction, max_depth: int = 50) -> LineageGraph:
        """Everything upstream (what produced ``node_id``) or downstream (what used it)."""
        if direction not in ("upstream", "downstream"):
            raise InvalidInputError("direction must be 'upstream' or 'downstream'")
        self._check_node(node_id)
        # Edges point in the direction data flows: artifact -> execution that read it,
        # execution -> artifact it wrote. Upstream walks them backwards.
        flow = union_all(
            select(
                events.c.artifact_id.label("src"),
                events.c.execution_id.label("dst"),
                events.c.type,
                events.c.role,
            ).where(events.c.type == "input"),
            select(
                events.c.execution_id.label("src"),
                events.c.artifact_id.label("dst"),
                events.c.type,
                events.c.role,
            ).where(events.c.type == "output"),
        ).subquery("flow")
        near, far = (
            (flow.c.dst, flow.c.src) if direction == "upstream" else (flow.c.src, flow.c.dst)
        )
        reach = (
            select(far.label("node"), literal(1).label("depth"))
            .where(near == node_id)
            .cte("reach", recursive=True)
        )
        reach = reach.union(
            select(far, reach.c.depth + 1)
            .join(reach, near == reach.c.node)
            .where(reach.c.depth < max_depth)
        )
        with self._engine.connect() as conn:
            nodes = {r.node for r in conn.execute(select(reach.c.node))} | {node_id}
            edge_rows = conn.execute(
                select(flow).where(flow.c.src.in_(nodes), flow.c.dst.in_(nodes))
            ).all()
            art_rows = conn.execute(select(artifacts).where(artifacts.c.id.in_(nodes))).all()
            exe_rows = conn.execute(select(executions).where(executions.c.id.in_(nodes))).all()
        return LineageGraph(
            root=node_id,
            artifacts={r.id: ArtifactRecord(**r._mapping) for r in art_rows},
            executions={r.id: ExecutionRecord(**r._mapping) for r in exe_rows},
            edges=tuple(Edge(r.src, r.dst, r.type, r.role) for r in edge_rows),
        )

    def _check_node(self, node_id: str) -> None:
        with self._engine.connect() as conn:
            found = conn.execute(
                select(artifacts.c.id)
                .where(artifacts.c.id == node_id)
                .union(select(executions.c.id).where(executions.c.id == node_id))
            ).first()
        if found is None:
            raise NotFoundError(f"no artifact or execution with id {node_id!r}")
