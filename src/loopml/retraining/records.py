"""A loop's stored state and its decisions, each with the reasons it was taken.

The state row carries a revision: a tick saves its new state only if nobody else saved
one since it read, so two ``loopml loop run`` processes never act twice on one state.
Beyond that, the row carries a lease: one process at a time ticks a loop, and the others
are told who holds it. A holder renews its lease while it runs; the lease of one that
died runs out after its time to live.
Each decision is also an execution in the lineage graph (kind ``loop_<kind>``), linked to
the model versions it concerned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from loopml.core import clock
from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.core.names import parse_ref
from loopml.store.metadata.tables import loop_decisions, loops
from loopml.store.workspace import Workspace

DECISION_KINDS = ("hold", "trigger", "retrain", "gate", "canary", "promotion", "rollback")


@dataclass(frozen=True)
class Decision:
    id: int
    loop: str
    tick: int
    kind: str
    outcome: str
    reasons: tuple[str, ...]
    at: float
    created_at: float
    from_version: int | None = None
    to_version: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    execution_id: str | None = None

    def summary(self) -> str:
        versions = ""
        if self.from_version is not None or self.to_version is not None:
            versions = f" {self.from_version or '-'} -> {self.to_version or '-'}"
        return f"{self.kind} {self.outcome}{versions}: {'; '.join(self.reasons)}"


@dataclass(frozen=True)
class LoopRecord:
    name: str
    model: str
    spec: dict[str, Any]
    state: dict[str, Any]
    revision: int
    created_at: float
    updated_at: float


class LoopBusyError(ConflictError):
    """Another process holds the loop's lease."""


class LoopStore:
    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace

    def ensure(self, name: str, model: str, spec: dict[str, Any], state: dict[str, Any]) -> None:
        """Create the loop's row if it does not exist; refresh its spec if it does."""
        now = clock.now()
        try:
            self._ensure(name, model, spec, state, now)
        except IntegrityError:
            # Another process created the row between our look and our insert.
            self._ensure(name, model, spec, state, now)

    def _ensure(
        self, name: str, model: str, spec: dict[str, Any], state: dict[str, Any], now: float
    ) -> None:
        with self.ws.write_engine.begin() as conn:
            row = conn.execute(select(loops.c.model).where(loops.c.name == name)).first()
            if row is None:
                conn.execute(
                    insert(loops).values(
                        name=name,
                        model=model,
                        spec=spec,
                        state=state,
                        revision=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
            elif row.model != model:
                raise ConflictError(
                    f"loop {name!r} already looks after model {row.model!r}, not {model!r}; "
                    "give this loop another name="
                )
            else:
                conn.execute(update(loops).where(loops.c.name == name).values(spec=spec))

    def acquire(self, name: str, holder: str, ttl: float) -> float:
        """Take or renew the lease of loop ``name`` for ``ttl`` seconds; returns when it
        expires. Raises :class:`LoopBusyError` naming the holder when another process
        holds a lease that has not run out."""
        now = clock.now()
        with self.ws.write_engine.begin() as conn:
            done = conn.execute(
                update(loops)
                .where(
                    loops.c.name == name,
                    or_(
                        loops.c.lease_holder.is_(None),
                        loops.c.lease_holder == holder,
                        loops.c.lease_expires < now,
                    ),
                )
                .values(lease_holder=holder, lease_expires=now + ttl)
            )
            if done.rowcount == 1:
                return now + ttl
            row = conn.execute(
                select(loops.c.lease_holder, loops.c.lease_expires).where(loops.c.name == name)
            ).first()
        if row is None:
            raise NotFoundError(f"no loop named {name!r}; `loopml loop status` lists them")
        raise LoopBusyError(
            f"loop {name!r} is being ticked by {row.lease_holder}; its lease runs until "
            f"{clock.format_ts(row.lease_expires)} UTC and is renewed while that process "
            "runs. Stop it, or wait: a holder that died loses the lease when it runs out"
        )

    def release(self, name: str, holder: str) -> None:
        """Give the lease up, if ``holder`` still has it."""
        with self.ws.write_engine.begin() as conn:
            conn.execute(
                update(loops)
                .where(loops.c.name == name, loops.c.lease_holder == holder)
                .values(lease_holder=None, lease_expires=None)
            )

    def lease(self, name: str) -> tuple[str, float] | None:
        """(holder, expires) of a lease that has not run out, or None."""
        with self.ws.engine.connect() as conn:
            row = conn.execute(
                select(loops.c.lease_holder, loops.c.lease_expires).where(loops.c.name == name)
            ).first()
        if row is None or row.lease_holder is None or row.lease_expires < clock.now():
            return None
        return str(row.lease_holder), float(row.lease_expires)

    def get(self, name: str) -> LoopRecord:
        with self.ws.engine.connect() as conn:
            row = conn.execute(select(loops).where(loops.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no loop named {name!r}; `loopml loop status` lists them")
        return _loop(row)

    def all(self) -> list[LoopRecord]:
        with self.ws.engine.connect() as conn:
            rows = conn.execute(select(loops).order_by(loops.c.name)).all()
        return [_loop(r) for r in rows]

    def save_state(self, name: str, state: dict[str, Any], expected_revision: int) -> int:
        with self.ws.write_engine.begin() as conn:
            done = conn.execute(
                update(loops)
                .where(loops.c.name == name, loops.c.revision == expected_revision)
                .values(state=state, revision=expected_revision + 1, updated_at=clock.now())
            )
        if done.rowcount != 1:
            raise ConflictError(
                f"loop {name!r} was changed by another process during this tick; its "
                "decisions so far are recorded, tick again"
            )
        return expected_revision + 1

    def record(
        self,
        name: str,
        model: str,
        *,
        tick: int,
        kind: str,
        outcome: str,
        reasons: Iterable[str],
        at: float,
        from_version: int | None = None,
        to_version: int | None = None,
        details: dict[str, Any] | None = None,
        model_artifacts: Iterable[tuple[str, str]] = (),
    ) -> Decision:
        if kind not in DECISION_KINDS:
            raise ValueError(f"unknown decision kind {kind!r}")
        reason_list = [str(r) for r in reasons]
        detail_map = dict(details or {})
        now = clock.now()
        with self.ws.write_engine.begin() as conn:
            execution = self.ws.lineage.add_execution(
                f"loop_{kind}",
                name=f"{name}#{tick}",
                status="finished",
                properties={
                    "loop": name,
                    "model": model,
                    "tick": tick,
                    "outcome": outcome,
                    "reasons": reason_list,
                    "from_version": from_version,
                    "to_version": to_version,
                    "at": at,
                },
                conn=conn,
            )
            for role, artifact_id in model_artifacts:
                self.ws.lineage.link(execution.id, artifact_id, "input", role, conn=conn)
            decision_id = conn.execute(
                insert(loop_decisions)
                .values(
                    loop=name,
                    tick=tick,
                    kind=kind,
                    outcome=outcome,
                    from_version=from_version,
                    to_version=to_version,
                    reasons=reason_list,
                    details=detail_map,
                    execution_id=execution.id,
                    at=at,
                    created_at=now,
                )
                .returning(loop_decisions.c.id)
            ).scalar_one()
        return Decision(
            int(decision_id),
            name,
            tick,
            kind,
            outcome,
            tuple(reason_list),
            at,
            now,
            from_version,
            to_version,
            detail_map,
            execution.id,
        )

    def decisions(self, name: str, *, limit: int | None = None) -> list[Decision]:
        """The loop's decisions, oldest first (the latest ``limit`` if given)."""
        q = select(loop_decisions).where(loop_decisions.c.loop == name)
        q = q.order_by(loop_decisions.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.ws.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [_decision(r) for r in reversed(rows)]


def _loop(r: Any) -> LoopRecord:
    return LoopRecord(
        r.name, r.model, dict(r.spec), dict(r.state), r.revision, r.created_at, r.updated_at
    )


def _decision(r: Any) -> Decision:
    return Decision(
        r.id,
        r.loop,
        r.tick,
        r.kind,
        r.outcome,
        tuple(r.reasons),
        r.at,
        r.created_at,
        r.from_version,
        r.to_version,
        dict(r.details),
        r.execution_id,
    )


def canary_share(ws: Workspace, ref: str) -> tuple[str, float] | None:
    """(loop name, percent of requests) of the loop whose challenger alias ``ref``
    (``name@alias``) names, or None when no loop moves that alias. The loop is where a
    canary's share is set; a server given ``--canary name@alias`` reads it from here."""
    parsed = parse_ref(ref)
    name, alias = parsed.name, parsed.alias
    if alias is None:
        return None
    with ws.engine.connect() as conn:
        rows = conn.execute(
            select(loops.c.name, loops.c.spec).where(loops.c.model == name).order_by(loops.c.name)
        ).all()
    found: dict[str, float] = {
        str(r.name): round(float(r.spec.get("canary", 0.0)) * 100, 9)
        for r in rows
        if (r.spec or {}).get("challenger") == alias
    }
    if len(set(found.values())) > 1:
        shares = ", ".join(f"loop {n!r} {p:g}%" for n, p in found.items())
        raise InvalidInputError(
            f"the loops that move {ref} disagree on its canary share ({shares}); give one "
            f"share with --canary {ref}:<percent> or make the loops agree"
        )
    if not found:
        return None
    loop_name, percent = next(iter(found.items()))
    return loop_name, percent
