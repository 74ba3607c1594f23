"""Registered models, their numbered versions, and aliases with a full history.

A version is an immutable model artifact plus its signature and lineage (run, datasets,
code version). Registration writes the artifact first, then one transaction allocates the
next version number and writes the version row with its lineage, so a version is either
fully registered or not at all. Every attempt to move an alias, allowed or refused, is an
``alias_events`` row and an execution in the lineage graph.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from loopml.core import clock, names
from loopml.core.display import Summarized, Summary
from loopml.core.errors import ConflictError, InvalidInputError, NotFoundError, StoreError
from loopml.core.ids import new_id
from loopml.registry.artifact import SavedModel, load_model, read_metadata, save_model
from loopml.registry.loaded import LoadedModel, ModelMetadata
from loopml.registry.signature import Signature
from loopml.store.metadata.tables import (
    alias_events,
    artifacts,
    model_aliases,
    model_versions,
    registered_models,
)
from loopml.store.metadata.upsert import upsert
from loopml.store.workspace import Workspace

MODEL_KIND = "model"
_RETRIES = 5


def check_model_name(name: object) -> str:
    return names.check_name(name, what="model name")


check_alias = names.check_alias


def _check_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidInputError("tags must be a mapping of names to values")
    out = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidInputError(f"tag name {key!r} must be a non-empty string")
        out[key] = value if isinstance(value, str) else str(value)
    return out


@dataclass(frozen=True, repr=False)
class ModelVersion(Summarized):
    name: str
    version: int
    id: str
    digest: str
    artifact_id: str
    flavor: str
    signature: Signature
    run_id: str | None
    dataset_artifact_ids: tuple[str, ...]
    code_version: str | None
    description: str
    tags: dict[str, str]
    created_at: float
    aliases: tuple[str, ...] = ()
    created_by: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def _summary(self) -> Summary:
        return Summary(
            f"ModelVersion {self.ref}",
            [
                ("flavor", self.flavor),
                ("aliases", ", ".join(self.aliases) or "-"),
                ("run", self.run_id),
                ("registered", clock.format_ts(self.created_at)),
                ("digest", self.digest[:19]),
                ("description", self.description),
            ],
        )


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    tags: dict[str, str]
    created_at: float
    latest_version: int | None
    aliases: dict[str, int] = field(default_factory=dict)
    policy: dict[str, Any] | None = None


@dataclass(frozen=True)
class AliasEvent:
    id: int
    name: str
    alias: str
    action: str
    from_version: int | None
    to_version: int | None
    allowed: bool
    reason: str
    gate_result: dict[str, Any] | None
    execution_id: str | None
    created_at: float
    forced: bool = False
    created_by: str | None = None


class Declared(Protocol):
    """A gate as the registry stores it (the registry knows no gate type)."""

    def to_dict(self) -> dict[str, Any]: ...


class Registry:
    """The model registry of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace

    # registering ------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Any,
        X: Any = None,
        *,
        flavor: str | None = None,
        run_id: str | None = None,
        dataset_artifact_ids: Sequence[str] = (),
        code_version: str | None = None,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
        created_by: str | None = None,
    ) -> ModelVersion:
        """Save ``model`` and record it as the next version of ``name``.

        ``X`` is the training data (or a sample): it gives the signature and the input
        example. ``run_id`` and ``dataset_artifact_ids`` link the version into the lineage graph;
        ``code_version`` is the code's version (the fluent API passes the run's git commit);
        ``created_by`` who registers it (the workspace's actor by default).
        """
        # Checked before saving, so a bad argument stores nothing; the artifact is
        # complete before any row points at it.
        self._check_new(name, run_id, dataset_artifact_ids, description, tags)
        saved = save_model(self.ws.artifacts, model, X, flavor=flavor)
        return self.register_saved(
            name,
            saved,
            run_id=run_id,
            dataset_artifact_ids=dataset_artifact_ids,
            code_version=code_version,
            description=description,
            tags=tags,
            created_by=created_by,
        )

    def register_saved(
        self,
        name: str,
        saved: SavedModel,
        *,
        run_id: str | None = None,
        dataset_artifact_ids: Sequence[str] = (),
        code_version: str | None = None,
        description: str = "",
        tags: Mapping[str, Any] | None = None,
        created_by: str | None = None,
    ) -> ModelVersion:
        """Record a model tree already in the store, and checked, as the next version of
        ``name``: one :func:`save_model` or :func:`save_files` wrote, or a client uploaded
        and :func:`check_stored` checked."""
        tag_map, datasets = self._check_new(name, run_id, dataset_artifact_ids, description, tags)
        return self._add_version(
            name,
            saved,
            run_id=run_id,
            datasets=datasets,
            code_version=code_version,
            description=description,
            tags=tag_map,
            created_by=self.ws.actor if created_by is None else created_by,
        )

    def _check_new(
        self,
        name: str,
        run_id: str | None,
        dataset_artifact_ids: Sequence[str],
        description: object,
        tags: Mapping[str, Any] | None,
    ) -> tuple[dict[str, str], list[str]]:
        check_model_name(name)
        tag_map = _check_tags(tags)
        datasets = [str(d) for d in dataset_artifact_ids]
        if not isinstance(description, str):
            raise InvalidInputError("description must be a string")
        with self.ws.engine.connect() as conn:
            if run_id is not None:
                self.ws.lineage.require_execution(conn, run_id, "run")
            self.ws.lineage.require_artifacts(conn, datasets, "dataset")
        return tag_map, datasets

    def _add_version(
        self,
        name: str,
        saved: SavedModel,
        *,
        run_id: str | None,
        datasets: list[str],
        code_version: str | None,
        description: str,
        tags: dict[str, str],
        created_by: str | None,
    ) -> ModelVersion:
        for attempt in range(_RETRIES):
            try:
                with self.ws.write_engine.begin() as conn:
                    version = self._insert_version(
                        conn,
                        name,
                        saved.digest,
                        saved.size,
                        saved.metadata,
                        run_id=run_id,
                        datasets=datasets,
                        code_version=code_version,
                        description=description,
                        tags=tags,
                        created_by=created_by,
                    )
                break
            except SQLIntegrityError:
                # Another writer took the same version number; try the next after a pause.
                time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
                if attempt == _RETRIES - 1:
                    raise StoreError(
                        f"could not allocate a version of model {name!r} after {_RETRIES} "
                        "attempts under concurrent registration; retry"
                    ) from None
        return self.get_version(name, version)

    def _insert_version(
        self,
        conn: Connection,
        name: str,
        digest: str,
        size: int,
        metadata: ModelMetadata,
        *,
        run_id: str | None,
        datasets: list[str],
        code_version: str | None,
        description: str,
        tags: dict[str, str],
        created_by: str | None,
    ) -> int:
        now = clock.now()
        conn.execute(
            upsert(conn, registered_models, keys=["name"]).values(
                name=name, description="", tags={}, created_at=now
            )
        )
        # The lock makes concurrent registrations of one model take numbers in turn.
        model_id = self._lock_model(conn, name)
        highest = conn.execute(
            select(func.max(model_versions.c.version)).where(model_versions.c.model_id == model_id)
        ).scalar()
        deleted = conn.execute(
            select(registered_models.c.last_version).where(registered_models.c.id == model_id)
        ).scalar()
        version = max(highest or 0, deleted or 0) + 1
        properties = {
            "model": name,
            "version": version,
            "flavor": metadata.flavor,
            "run_id": run_id,
            "dataset_artifact_ids": datasets,
            "code_version": code_version,
        }
        lineage = self.ws.lineage
        artifact_id = lineage.add_artifact(
            digest, MODEL_KIND, size, name=f"{name}:{version}", properties=properties, conn=conn
        ).id
        conn.execute(
            insert(model_versions).values(
                id=new_id(),
                model_id=model_id,
                version=version,
                digest=digest,
                artifact_id=artifact_id,
                flavor=metadata.flavor,
                signature=metadata.signature.to_dict(),
                run_id=run_id,
                description=description,
                tags=tags,
                created_at=now,
                created_by=created_by,
            )
        )
        execution_id = lineage.add_execution(
            "model_registration",
            name=f"{name}:{version}",
            status="finished",
            properties=properties,
            conn=conn,
        ).id
        for dataset_id in datasets:
            lineage.link(execution_id, dataset_id, "input", "training_data", conn=conn)
        lineage.link(execution_id, artifact_id, "output", "model", conn=conn)
        if run_id is not None:
            lineage.link(run_id, artifact_id, "output", "model", conn=conn)
        return int(version)

    def update_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Change a version's description or merge tags into it (the artifact is immutable)."""
        mv = self.get_version(name, version)
        values: dict[str, Any] = {}
        if description is not None:
            values["description"] = description
        if tags is not None:
            values["tags"] = {**mv.tags, **_check_tags(tags)}
        if values:
            with self.ws.write_engine.begin() as conn:
                conn.execute(
                    update(model_versions).where(model_versions.c.id == mv.id).values(**values)
                )
        return self.get_version(name, version)

    def remove_version_tags(self, name: str, version: int, keys: Iterable[str]) -> ModelVersion:
        mv = self.get_version(name, version)
        kept = {k: v for k, v in mv.tags.items() if k not in set(keys)}
        with self.ws.write_engine.begin() as conn:
            conn.execute(
                update(model_versions).where(model_versions.c.id == mv.id).values(tags=kept)
            )
        return self.get_version(name, version)

    # managing registered models ------------------------------------------------------
    # For clients with MLflow's registry model (create empty, rename, delete). Deleting
    # removes the registry rows only: the model artifacts and their lineage stay until
    # `loopml gc` finds nothing referencing them.
    def create_model(
        self, name: str, *, description: str = "", tags: Mapping[str, Any] | None = None
    ) -> RegisteredModel:
        """A registered model with no versions yet; ConflictError if the name is taken."""
        check_model_name(name)
        if not isinstance(description, str):
            raise InvalidInputError("description must be a string")
        tag_map = _check_tags(tags)
        try:
            with self.ws.write_engine.begin() as conn:
                conn.execute(
                    insert(registered_models).values(
                        name=name, description=description, tags=tag_map, created_at=clock.now()
                    )
                )
        except SQLIntegrityError:
            raise ConflictError(f"registered model {name!r} already exists") from None
        return self.get_model(name)

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
        remove_tags: Iterable[str] = (),
    ) -> RegisteredModel:
        """Change a model's description, merge ``tags`` into its tags, drop ``remove_tags``."""
        if description is not None and not isinstance(description, str):
            raise InvalidInputError("description must be a string")
        added = _check_tags(tags)
        removed = set(remove_tags)
        with self.ws.write_engine.begin() as conn:
            model_id = self._lock_model(conn, name)
            current = conn.execute(
                select(registered_models.c.tags).where(registered_models.c.id == model_id)
            ).scalar()
            merged = {k: v for k, v in {**dict(current or {}), **added}.items() if k not in removed}
            values: dict[str, Any] = {"tags": merged}
            if description is not None:
                values["description"] = description
            conn.execute(
                update(registered_models).where(registered_models.c.id == model_id).values(**values)
            )
        return self.get_model(name)

    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        """Give a model a new name; its versions, aliases and history go with it."""
        check_model_name(new_name)
        try:
            with self.ws.write_engine.begin() as conn:
                model_id = self._lock_model(conn, name)
                conn.execute(
                    update(registered_models)
                    .where(registered_models.c.id == model_id)
                    .values(name=new_name)
                )
        except SQLIntegrityError:
            raise ConflictError(f"registered model {new_name!r} already exists") from None
        return self.get_model(new_name)

    def delete_version(self, name: str, version: int, *, created_by: str | None = None) -> None:
        """Drop a version and the aliases pointing at it (the artifact stays for `gc`)."""
        mv = self.get_version(name, version)
        with self.ws.write_engine.begin() as conn:
            model_id = self._lock_model(conn, name)
            for alias in mv.aliases:
                self._unset_alias(
                    conn, model_id, name, alias, version, "its version was deleted", created_by
                )
            conn.execute(delete(model_versions).where(model_versions.c.id == mv.id))
            # Its number stays taken (see registered_models.last_version).
            taken = conn.execute(
                select(registered_models.c.last_version).where(registered_models.c.id == model_id)
            ).scalar()
            conn.execute(
                update(registered_models)
                .where(registered_models.c.id == model_id)
                .values(last_version=max(taken or 0, version))
            )

    def delete_model(self, name: str) -> None:
        """Drop a registered model with its versions, aliases and alias history."""
        with self.ws.write_engine.begin() as conn:
            model_id = self._lock_model(conn, name)
            for table in (model_aliases, alias_events, model_versions):
                conn.execute(delete(table).where(table.c.model_id == model_id))
            conn.execute(delete(registered_models).where(registered_models.c.id == model_id))

    def delete_alias(
        self, name: str, alias: str, *, reason: str = "", created_by: str | None = None
    ) -> None:
        """Remove ``alias``; the removal is an event in the alias history."""
        check_alias(alias)
        with self.ws.write_engine.begin() as conn:
            model_id = self._lock_model(conn, name)
            current = conn.execute(
                select(model_aliases.c.version).where(
                    model_aliases.c.model_id == model_id, model_aliases.c.alias == alias
                )
            ).scalar()
            if current is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            self._unset_alias(
                conn, model_id, name, alias, current, reason or "alias deleted", created_by
            )

    def _unset_alias(
        self,
        conn: Connection,
        model_id: int,
        name: str,
        alias: str,
        current: int,
        reason: str,
        created_by: str | None,
    ) -> None:
        conn.execute(
            delete(model_aliases).where(
                model_aliases.c.model_id == model_id, model_aliases.c.alias == alias
            )
        )
        properties = {"model": name, "alias": alias, "from_version": current, "reason": reason}
        execution_id = self.ws.lineage.add_execution(
            "unset_alias",
            name=f"{name}@{alias}",
            status="finished",
            properties=properties,
            conn=conn,
        ).id
        conn.execute(
            insert(alias_events).values(
                model_id=model_id,
                alias=alias,
                action="unset_alias",
                from_version=current,
                to_version=None,
                allowed=True,
                reason=reason,
                gate_result=None,
                execution_id=execution_id,
                created_at=clock.now(),
                forced=False,
                created_by=self.ws.actor if created_by is None else created_by,
            )
        )

    # reading ----------------------------------------------------------------------
    def _model_id(self, conn: Connection, name: str) -> int:
        model_id = conn.execute(
            select(registered_models.c.id).where(registered_models.c.name == name)
        ).scalar()
        if model_id is None:
            raise NotFoundError(
                f"no registered model named {name!r}; see registered models with `loopml models ls`"
            )
        return int(model_id)

    def get_model(self, name: str) -> RegisteredModel:
        """One registered model with its latest version, aliases and policy."""
        found = self.models(name=name)
        if not found:
            raise NotFoundError(
                f"no registered model named {name!r}; see registered models with `loopml models ls`"
            )
        return found[0]

    def models(self, *, name: str | None = None) -> list[RegisteredModel]:
        query = select(registered_models).order_by(registered_models.c.name)
        if name is not None:
            query = query.where(registered_models.c.name == name)
        with self.ws.engine.connect() as conn:
            rows = conn.execute(query).all()
            latest = dict(
                conn.execute(
                    select(model_versions.c.model_id, func.max(model_versions.c.version)).group_by(
                        model_versions.c.model_id
                    )
                ).all()
            )
            alias_rows = conn.execute(select(model_aliases)).all()
        aliases: dict[int, dict[str, int]] = {}
        for a in alias_rows:
            aliases.setdefault(a.model_id, {})[a.alias] = a.version
        return [
            RegisteredModel(
                r.name,
                r.description,
                dict(r.tags),
                r.created_at,
                latest.get(r.id),
                dict(sorted(aliases.get(r.id, {}).items())),
                r.policy,
            )
            for r in rows
        ]

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first, with lineage and current aliases."""
        return self._select_versions(name)

    def get_version(self, name: str, version: int) -> ModelVersion:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInputError(f"a model version is a positive integer, not {version!r}")
        found = self._select_versions(name, version)
        if not found:
            latest = self._latest_number(name)
            raise NotFoundError(
                f"model {name!r} has no version {version}"
                + (f"; the latest is {latest}" if latest else "; it has no versions yet")
            )
        return found[0]

    def latest(self, name: str) -> ModelVersion:
        latest = self._latest_number(name)
        if latest is None:
            raise NotFoundError(f"model {name!r} has no versions yet; register one first")
        return self.get_version(name, latest)

    def _latest_number(self, name: str) -> int | None:
        with self.ws.engine.connect() as conn:
            model_id = self._model_id(conn, name)
            value = conn.execute(
                select(func.max(model_versions.c.version)).where(
                    model_versions.c.model_id == model_id
                )
            ).scalar()
        return None if value is None else int(value)

    def _select_versions(self, name: str, version: int | None = None) -> list[ModelVersion]:
        with self.ws.engine.connect() as conn:
            model_id = self._model_id(conn, name)
            q = (
                select(model_versions, artifacts.c.properties.label("lineage"))
                .join(artifacts, artifacts.c.id == model_versions.c.artifact_id)
                .where(model_versions.c.model_id == model_id)
                .order_by(model_versions.c.version)
            )
            if version is not None:
                q = q.where(model_versions.c.version == version)
            rows = conn.execute(q).all()
            alias_rows = conn.execute(
                select(model_aliases.c.alias, model_aliases.c.version).where(
                    model_aliases.c.model_id == model_id
                )
            ).all()
        by_version: dict[int, list[str]] = {}
        for a in alias_rows:
            by_version.setdefault(a.version, []).append(a.alias)
        out = []
        for r in rows:
            lineage = dict(r.lineage or {})
            out.append(
                ModelVersion(
                    name=name,
                    version=r.version,
                    id=r.id,
                    digest=r.digest,
                    artifact_id=r.artifact_id,
                    flavor=r.flavor,
                    signature=Signature.from_dict(r.signature),
                    run_id=r.run_id,
                    # Versions registered before the key said what it holds wrote "dataset_ids".
                    dataset_artifact_ids=tuple(
                        lineage.get("dataset_artifact_ids") or lineage.get("dataset_ids") or ()
                    ),
                    code_version=lineage.get("code_version"),
                    description=r.description,
                    tags=dict(r.tags),
                    created_at=r.created_at,
                    aliases=tuple(sorted(by_version.get(r.version, []))),
                    created_by=r.created_by,
                )
            )
        return out

    def resolve(self, ref: str) -> ModelVersion:
        """``name@alias``, ``name:3``, ``name:latest`` or ``name`` (the latest version)."""
        parsed = names.parse_ref(ref, "model reference")
        name = parsed.name
        if parsed.alias is not None:
            version = self.alias_version(name, parsed.alias)
            if version is None:
                known = self.aliases(name)
                raise NotFoundError(
                    f"model {name!r} has no alias {parsed.alias!r}; its aliases: "
                    f"{', '.join(f'{a} -> {v}' for a, v in known.items()) or 'none'}"
                )
            return self.get_version(name, version)
        if parsed.version is None:
            return self.latest(name)
        return self.get_version(name, parsed.version)

    def load(self, ref: str) -> LoadedModel:
        """The model behind ``ref``, loaded from verified bytes only."""
        mv = self.resolve(ref)
        return load_model(self.ws.artifacts, mv.digest, what=f"model {mv.ref}", ref=ref)

    def metadata(self, mv: ModelVersion) -> ModelMetadata:
        return read_metadata(self.ws.artifacts, mv.digest, what=f"model {mv.ref}")

    # promotion policy -------------------------------------------------------------
    def set_policy(self, name: str, gate: Declared | None) -> None:
        """Require ``gate`` for every promotion of ``name`` (``None`` lifts the policy)."""
        document = None if gate is None else gate.to_dict()
        with self.ws.write_engine.begin() as conn:
            model_id = self._lock_model(conn, name)
            conn.execute(
                update(registered_models)
                .where(registered_models.c.id == model_id)
                .values(policy=document)
            )

    def policy(self, name: str) -> dict[str, Any] | None:
        """The gate (as a mapping) that promotions of ``name`` must pass, if any."""
        with self.ws.engine.connect() as conn:
            model_id = self._model_id(conn, name)
            document = conn.execute(
                select(registered_models.c.policy).where(registered_models.c.id == model_id)
            ).scalar()
        return None if document is None else dict(document)

    # aliases ----------------------------------------------------------------------
    def aliases(self, name: str) -> dict[str, int]:
        with self.ws.engine.connect() as conn:
            model_id = self._model_id(conn, name)
            rows = conn.execute(
                select(model_aliases.c.alias, model_aliases.c.version)
                .where(model_aliases.c.model_id == model_id)
                .order_by(model_aliases.c.alias)
            ).all()
        return {r.alias: r.version for r in rows}

    def alias_version(self, name: str, alias: str) -> int | None:
        return self.aliases(name).get(alias)

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every attempt to move an alias of ``name``, oldest first."""
        with self.ws.engine.connect() as conn:
            model_id = self._model_id(conn, name)
            q = select(alias_events).where(alias_events.c.model_id == model_id)
            if alias is not None:
                q = q.where(alias_events.c.alias == alias)
            rows = conn.execute(q.order_by(alias_events.c.id)).all()
        return [_event(name, r) for r in rows]

    def move_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        action: str,
        reason: str,
        expected_from: int | None,
        gate_result: dict[str, Any] | None = None,
        inputs: Iterable[tuple[str, str]] = (),
        forced: bool = False,
        created_by: str | None = None,
    ) -> AliasEvent:
        """Move ``alias`` to ``version`` if it still points at ``expected_from``; record it.

        A decision taken against one champion is never applied over another: when the
        alias moved meanwhile, nothing changes and the event is recorded as refused.
        Moves of one model's aliases are serialised (a row lock on PostgreSQL, the write
        lock on SQLite), so every event starts where the previous one ended.
        """
        return self._record(
            name,
            alias,
            version,
            action=action,
            move=True,
            reason=reason,
            expected_from=expected_from,
            gate_result=gate_result,
            inputs=inputs,
            forced=forced,
            created_by=created_by,
        )

    def record_refusal(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        action: str,
        reason: str,
        gate_result: dict[str, Any] | None = None,
        inputs: Iterable[tuple[str, str]] = (),
        created_by: str | None = None,
    ) -> AliasEvent:
        """Record a refused attempt to move ``alias`` to ``version``; the alias stays put."""
        return self._record(
            name,
            alias,
            version,
            action=action,
            move=False,
            reason=reason,
            expected_from=None,
            gate_result=gate_result,
            inputs=inputs,
            forced=False,
            created_by=created_by,
        )

    def _record(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        action: str,
        move: bool,
        reason: str,
        expected_from: int | None,
        gate_result: dict[str, Any] | None,
        inputs: Iterable[tuple[str, str]],
        forced: bool,
        created_by: str | None,
    ) -> AliasEvent:
        check_alias(alias)
        target = self.get_version(name, version)
        with self.ws.write_engine.begin() as conn:
            model_id = self._lock_model(conn, name)
            current = conn.execute(
                select(model_aliases.c.version).where(
                    model_aliases.c.model_id == model_id, model_aliases.c.alias == alias
                )
            ).scalar()
            now = clock.now()
            allowed = move and current == expected_from
            if move and not allowed:
                reason = (
                    f"{name}@{alias} moved to version {current} while this {action} was being "
                    f"decided (it was {expected_from}); nothing changed, retry"
                )
            if allowed:
                _point_alias(conn, model_id, alias, current, version, now)
            properties = {
                "model": name,
                "alias": alias,
                "from_version": current,
                "to_version": version,
                "allowed": allowed,
                "forced": forced and allowed,
                "reason": reason,
            }
            lineage = self.ws.lineage
            execution_id = lineage.add_execution(
                action,
                name=f"{name}@{alias}",
                status="finished" if allowed else "refused",
                properties=properties,
                conn=conn,
            ).id
            lineage.link(execution_id, target.artifact_id, "input", "candidate", conn=conn)
            for role, artifact_id in inputs:
                lineage.link(execution_id, artifact_id, "input", role, conn=conn)
            row = conn.execute(
                insert(alias_events)
                .values(
                    model_id=model_id,
                    alias=alias,
                    action=action,
                    from_version=current,
                    to_version=version,
                    allowed=allowed,
                    reason=reason,
                    gate_result=gate_result,
                    execution_id=execution_id,
                    created_at=now,
                    forced=forced and allowed,
                    created_by=self.ws.actor if created_by is None else created_by,
                )
                .returning(*alias_events.c)
            ).one()
        return _event(name, row)

    def _lock_model(self, conn: Connection, name: str) -> int:
        """The model's id, its row locked until the transaction ends (PostgreSQL; SQLite
        write transactions already hold the database's write lock). ``FOR NO KEY UPDATE``
        leaves registration's foreign-key checks free to proceed."""
        model_id = conn.execute(
            select(registered_models.c.id)
            .where(registered_models.c.name == name)
            .with_for_update(key_share=True)
        ).scalar()
        if model_id is None:
            return self._model_id(conn, name)  # raises NotFoundError
        return int(model_id)

    def rollback(
        self,
        name: str,
        alias: str = "champion",
        *,
        reason: str = "",
        created_by: str | None = None,
    ) -> AliasEvent:
        """Point ``alias`` back at the version it held before its latest promotion.

        Rollbacks stack: rolling back twice goes back two promotions.
        """
        check_alias(alias)
        stack: list[int] = []
        for e in self.history(name, alias):
            if not e.allowed or e.to_version is None:
                continue
            if e.action == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append(e.to_version)
        current = self.alias_version(name, alias)
        if current is None:
            raise NotFoundError(f"model {name!r} has no alias {alias!r} to roll back")
        if len(stack) < 2 or stack[-1] != current:
            raise ConflictError(
                f"{name}@{alias} (version {current}) has no earlier version to roll back to; "
                f"promote a version explicitly instead"
            )
        target = stack[-2]
        event = self.move_alias(
            name,
            alias,
            target,
            action="rollback",
            reason=reason or f"rolled back from version {current} to version {target}",
            expected_from=current,
            created_by=created_by,
        )
        if not event.allowed:
            raise ConflictError(event.reason)
        return event


def _event(name: str, r: Any) -> AliasEvent:
    return AliasEvent(
        r.id,
        name,
        r.alias,
        r.action,
        r.from_version,
        r.to_version,
        bool(r.allowed),
        r.reason,
        r.gate_result,
        r.execution_id,
        r.created_at,
        bool(r.forced),
        r.created_by,
    )


def _point_alias(
    conn: Connection, model_id: int, alias: str, current: int | None, version: int, now: float
) -> None:
    """Point the alias row at ``version``, conditionally on it still being at ``current``."""
    if current is None:
        stmt = (
            upsert(conn, model_aliases, keys=["model_id", "alias"])
            .values(model_id=model_id, alias=alias, version=version, updated_at=now)
            .returning(model_aliases.c.version)
        )
    else:
        stmt = (
            update(model_aliases)
            .where(
                model_aliases.c.model_id == model_id,
                model_aliases.c.alias == alias,
                model_aliases.c.version == current,
            )
            .values(version=version, updated_at=now)
            .returning(model_aliases.c.version)
        )
    if conn.execute(stmt).first() is None:
        # Only reachable if a writer bypassed the model lock: fail the transaction rather
        # than record a move that did not happen.
        raise ConflictError(f"alias {alias!r} changed underneath this move; nothing changed, retry")
