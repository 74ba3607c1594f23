"""Reading the catalog: a version by number, digest or latest; versions; entries; search."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.core.hashing import check_digest
from loopml.data.catalog.entries import check_name, parse_ref, stored_tags
from loopml.data.dataset import DatasetInfo, DatasetVersion
from loopml.store.metadata.tables import dataset_versions, datasets
from loopml.store.workspace import Workspace


class CatalogQueries:
    """The reading half of the catalog of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace

    def get(
        self, name: str, version: int | None = None, *, digest: str | None = None
    ) -> DatasetVersion:
        """A version of ``name``: the latest, a version number, or the one with ``digest``;
        ``name`` may also be a reference such as ``"flights:3"``."""
        if ":" in name and version is None and digest is None:
            name, version = parse_ref(name)
        check_name(name)
        if version is not None and digest is not None:
            raise InvalidInputError("give a version or a digest, not both")
        q = (
            select(dataset_versions)
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .where(datasets.c.name == name)
        )
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise InvalidInputError(f"version must be a positive integer, not {version!r}")
            q = q.where(dataset_versions.c.version == version)
        if digest is not None:
            q = q.where(dataset_versions.c.digest == check_digest(digest))
        q = q.order_by(dataset_versions.c.version.desc()).limit(1)
        with self.ws.engine.connect() as conn:
            row = conn.execute(q).first()
            if row is None:
                exists = conn.execute(select(datasets.c.id).where(datasets.c.name == name)).first()
        if row is None:
            if exists is None:
                raise NotFoundError(
                    f"no dataset named {name!r}; list them with `loopml data ls` or add one"
                )
            which = (
                f"version {version}" if version is not None else f"a version with digest {digest}"
            )
            raise NotFoundError(f"dataset {name!r} has no {which}")
        return self._version(name, row)

    def versions(self, name: str) -> list[DatasetVersion]:
        with self.ws.engine.connect() as conn:
            dataset_id = dataset_id_of(conn, name)
            rows = conn.execute(
                select(dataset_versions)
                .where(dataset_versions.c.dataset_id == dataset_id)
                .order_by(dataset_versions.c.version)
            ).all()
        return [self._version(name, r) for r in rows]

    def list_datasets(self) -> list[DatasetInfo]:
        return self._infos()

    def info(self, name: str) -> DatasetInfo:
        check_name(name)
        found = self._infos(name)
        if not found:
            raise NotFoundError(f"no dataset named {name!r}; list them with `loopml data ls`")
        return found[0]

    def search(
        self, text: str | None = None, *, tag: str | None = None, column: str | None = None
    ) -> list[DatasetInfo]:
        """Datasets whose name or description contains ``text`` (case-insensitive), that
        carry tag ``tag``, and whose latest version has a column named ``column``."""
        needle = text.lower() if text else None
        out = []
        for d in self._infos():
            if needle and needle not in d.name.lower() and needle not in d.description.lower():
                continue
            if tag is not None and tag not in d.tags:
                continue
            if column is not None and column not in d.columns:
                continue
            out.append(d)
        return out

    def _infos(self, name: str | None = None) -> list[DatasetInfo]:
        stats = (
            select(
                dataset_versions.c.dataset_id,
                func.max(dataset_versions.c.version).label("latest"),
                func.count().label("n"),
            )
            .group_by(dataset_versions.c.dataset_id)
            .subquery()
        )
        latest = (
            select(dataset_versions.c.dataset_id, dataset_versions.c.properties)
            .join(
                stats,
                (stats.c.dataset_id == dataset_versions.c.dataset_id)
                & (stats.c.latest == dataset_versions.c.version),
            )
            .subquery()
        )
        q = (
            select(datasets, stats.c.latest, stats.c.n, latest.c.properties)
            .outerjoin(stats, stats.c.dataset_id == datasets.c.id)
            .outerjoin(latest, latest.c.dataset_id == datasets.c.id)
            .order_by(datasets.c.name)
        )
        if name is not None:
            q = q.where(datasets.c.name == name)
        with self.ws.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            DatasetInfo(
                name=r.name,
                description=r.description,
                owner=r.owner,
                tags=stored_tags(r.tags),
                column_descriptions=dict(r.column_descriptions or {}),
                created_at=r.created_at,
                updated_at=r.updated_at,
                latest_version=r.latest,
                num_versions=int(r.n or 0),
                columns=tuple(c["name"] for c in (r.properties or {}).get("columns", [])),
            )
            for r in rows
        ]

    def _version(self, name: str, row: Any) -> DatasetVersion:
        return DatasetVersion(
            name=name,
            version=int(row.version),
            digest=row.digest,
            num_rows=int(row.num_rows),
            num_columns=int(row.num_columns),
            created_at=float(row.created_at),
            artifact_id=row.artifact_id,
            profile_digest=row.profile_digest,
            schema_version=row.schema_version,
            description=row.description or "",
            properties=dict(row.properties or {}),
            created_by=row.created_by,
            workspace=self.ws,
        )


def dataset_id_of(conn: Connection, name: str) -> int:
    check_name(name)
    row = conn.execute(select(datasets.c.id).where(datasets.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"no dataset named {name!r}; list them with `loopml data ls`")
    return int(row.id)
