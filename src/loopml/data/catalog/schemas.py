"""Schema versions of a dataset: curated YAML documents stored as artifacts, numbered per
dataset. The next schema version is decided in one place, ``next_schema_version``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from loopml.core import clock
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.data.catalog.queries import CatalogQueries, dataset_id_of
from loopml.data.schema import Schema
from loopml.store.metadata.tables import dataset_schemas
from loopml.store.workspace import Workspace


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    digest: str
    created_at: float
    note: str | None


class CatalogSchemas(CatalogQueries):
    """Schemas on top of the catalog's queries."""

    def save_schema(self, name: str, schema: Schema, *, note: str | None = None) -> int:
        """Store an edited schema as the dataset's next schema version; later versions
        added (and validations against the dataset) use it. Returns the schema version."""
        digest = put_schema(self.ws, schema)
        with self.ws.write_engine.begin() as conn:
            dataset_id = dataset_id_of(conn, name)
            return next_schema_version(conn, dataset_id, digest, note=note, now=clock.now())

    def get_schema(self, name: str, version: int | None = None) -> Schema:
        """The dataset's schema: the latest version, or a given one."""
        with self.ws.engine.connect() as conn:
            dataset_id = dataset_id_of(conn, name)
            q = select(dataset_schemas).where(dataset_schemas.c.dataset_id == dataset_id)
            if version is not None:
                q = q.where(dataset_schemas.c.version == version)
            row = conn.execute(q.order_by(dataset_schemas.c.version.desc()).limit(1)).first()
        if row is None:
            which = f"schema version {version}" if version is not None else "a schema"
            raise NotFoundError(f"dataset {name!r} has no {which}")
        raw = self.ws.artifacts.get_bytes(row.digest, what=f"dataset {name} schema v{row.version}")
        return Schema.from_yaml(raw)

    def schema_versions(self, name: str) -> list[SchemaVersion]:
        with self.ws.engine.connect() as conn:
            dataset_id = dataset_id_of(conn, name)
            rows = conn.execute(
                select(dataset_schemas)
                .where(dataset_schemas.c.dataset_id == dataset_id)
                .order_by(dataset_schemas.c.version)
            ).all()
        return [SchemaVersion(r.version, r.digest, r.created_at, r.note) for r in rows]


def put_schema(ws: Workspace, schema: Schema) -> str:
    if not isinstance(schema, Schema):
        raise InvalidInputError(f"schema must be a loopml Schema, not {type(schema).__name__}")
    return ws.artifacts.put_bytes(schema.to_yaml().encode()).digest


def latest_schema(conn: Connection, dataset_id: int) -> tuple[int, str] | None:
    row = conn.execute(
        select(dataset_schemas.c.version, dataset_schemas.c.digest)
        .where(dataset_schemas.c.dataset_id == dataset_id)
        .order_by(dataset_schemas.c.version.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.version), str(row.digest))


def next_schema_version(
    conn: Connection, dataset_id: int, digest: str, *, note: str | None, now: float
) -> int:
    """The schema version holding ``digest``: the latest if it already does, else a new
    one numbered after it."""
    latest = latest_schema(conn, dataset_id)
    if latest is not None and latest[1] == digest:
        return latest[0]
    version = 1 if latest is None else latest[0] + 1
    conn.execute(
        insert(dataset_schemas).values(
            dataset_id=dataset_id, version=version, digest=digest, created_at=now, note=note
        )
    )
    return version
