"""The dataset catalog on a workspace: add, append, get, list, search, schemas, verify.

A version's data is a tree of Parquet parts in the artifact store; its row in
``dataset_versions`` and its lineage node are written in one transaction, so a version is
either fully registered or absent. Blobs written before a failed transaction are only
unreferenced garbage, never a half-registered version.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy import Connection, func, insert, select
from sqlalchemy import update as sql_update

from loopml.core import clock, names
from loopml.core.errors import (
    ConflictError,
    InvalidInputError,
    LoopmlError,
    NotFoundError,
)
from loopml.core.hashing import check_digest
from loopml.core.ids import new_id
from loopml.data.dataset import Dataset, DatasetInfo
from loopml.data.profile import Profile, merge, merge_all, profile
from loopml.data.schema import Schema, infer_schema
from loopml.data.sources import StagedFile, describe_source, part_name, stage
from loopml.data.stable_hash import HASH_ID
from loopml.store.artifacts import Tree, TreeEntry
from loopml.store.metadata.tables import (
    artifacts,
    dataset_schemas,
    dataset_versions,
    datasets,
)
from loopml.store.workspace import Workspace

_RETRIES = 10
BATCH_ROWS = 20_000_000  # larger Parquet parts are profiled batch by batch and merged
ARTIFACT_KIND = "dataset"


def check_name(name: str) -> str:
    return names.check_name(name, what="dataset name")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"flights"`` -> (flights, None) meaning latest; ``"flights:3"`` -> (flights, 3)."""
    parsed = names.parse_ref(ref, "dataset reference", allow_alias=False)
    return parsed.name, parsed.version


# --- adding ------------------------------------------------------------------------------


def add(
    ws: Workspace,
    name: str,
    source: Any,
    *,
    description: str | None = None,
    owner: str | None = None,
    tags: Sequence[str] | None = None,
    column_descriptions: Mapping[str, str] | None = None,
    schema: Schema | None = None,
    csv_options: Mapping[str, Any] | None = None,
) -> Dataset:
    """Register ``source`` as the next version of ``name``, or return the existing version
    with identical content."""
    check_name(name)
    tags_t = _check_tags(tags)
    if schema is not None and not isinstance(schema, Schema):
        raise InvalidInputError(f"schema must be a loopml Schema, not {type(schema).__name__}")
    with tempfile.TemporaryDirectory(prefix="loopml-add-") as workdir:
        staged = stage(source, workdir, csv_options=dict(csv_options or {}))
        prof = _profile_files(staged)
        _check_descriptions(column_descriptions, prof)
        tree = _store(ws, staged, start=0, name=name)
    return _register(
        ws,
        name,
        tree,
        prof,
        schema=schema,
        meta={
            "description": description,
            "owner": owner,
            "tags": tags_t,
            "column_descriptions": column_descriptions,
        },
        properties={"source": describe_source(source)},
        parent=None,
    )


def append(
    ws: Workspace,
    name: str,
    batch: Any,
    *,
    csv_options: Mapping[str, Any] | None = None,
) -> Dataset:
    """A new version holding the latest version's rows plus ``batch``; the existing
    Parquet parts are shared, not copied, and the profile is merged, not recomputed."""
    base = get(ws, name)
    with tempfile.TemporaryDirectory(prefix="loopml-append-") as workdir:
        staged = stage(batch, workdir, csv_options=dict(csv_options or {}))
        expected = {c.name: c.dtype for c in base.profile.columns.values()}
        for f in staged:
            if f.schema != expected:
                raise InvalidInputError(
                    f"cannot append {f.origin!r} to dataset {base.ref}: {_diff(expected, f.schema)}"
                )
        if sum(f.num_rows for f in staged) == 0:
            raise InvalidInputError(f"the batch to append to {base.ref} has no rows")
        prof = merge(_current_profile(base), _profile_files(staged))
        new = _store(ws, staged, start=len(base.files), name=name)
    tree = ws.artifacts.put_manifest([*base.files, *new.entries])
    return _register(
        ws,
        name,
        tree,
        prof,
        schema=None,
        meta={},
        properties={"source": describe_source(batch), "appended_to": base.version},
        parent=base,
    )


def _current_profile(ds: Dataset) -> Profile:
    """The version's stored profile, or, when its sketches were made with a hash this
    release no longer uses, one recomputed from its verified files."""
    stored = ds.profile
    if stored.hash_id == HASH_ID or not any(c.hll for c in stored.columns.values()):
        return stored
    files = [
        StagedFile(path, f"dataset {ds.ref} file {e.path}", pq.read_metadata(path).num_rows, {})
        for path, e in zip(ds.paths(), ds.files, strict=True)
    ]
    return _profile_files(files)


def _profile_files(staged: list[StagedFile]) -> Profile:
    parts = []
    for f in staged:
        try:
            if f.num_rows <= BATCH_ROWS:
                parts.append(profile(pl.read_parquet(f.path)))
                continue
            # Row-group-sized batches would make many small profiles; slices of
            # BATCH_ROWS keep memory bounded and the merges few.
            lf = pl.scan_parquet(f.path)
            for offset in range(0, f.num_rows, BATCH_ROWS):
                parts.append(profile(lf.slice(offset, BATCH_ROWS).collect()))
        except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
            raise InvalidInputError(
                f"cannot read {f.origin!r} (truncated or corrupted?): {exc}"
            ) from None
    return merge_all(parts)


def _store(ws: Workspace, staged: list[StagedFile], *, start: int, name: str) -> Tree:
    entries = []
    for i, f in enumerate(staged):
        blob = ws.artifacts.put_file(f.path)
        entries.append(TreeEntry(part_name(start + i), blob.digest, blob.size))
    return ws.artifacts.put_manifest(entries)


def _register(
    ws: Workspace,
    name: str,
    tree: Tree,
    prof: Profile,
    *,
    schema: Schema | None,
    meta: dict[str, Any],
    properties: dict[str, Any],
    parent: Dataset | None,
) -> Dataset:
    profile_digest = ws.artifacts.put_bytes(prof.to_json().encode()).digest
    given_schema = None if schema is None else _put_schema(ws, schema)
    inferred_schema = _put_schema(ws, infer_schema(prof))
    for attempt in range(_RETRIES):
        try:
            with ws.write_engine.begin() as conn:
                version, _ = _insert_version(
                    ws,
                    conn,
                    name,
                    tree,
                    prof,
                    profile_digest=profile_digest,
                    schemas=(given_schema, inferred_schema),
                    meta=meta,
                    properties=properties,
                    parent=parent,
                )
            break
        except sa.exc.IntegrityError:
            # Another writer created the dataset or took the version number first
            # (PostgreSQL); the next attempt sees its row.
            if attempt == _RETRIES - 1:
                raise ConflictError(
                    f"could not allocate a version of dataset {name!r} after {_RETRIES} "
                    "attempts under concurrent writes; retry"
                ) from None
            time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
    return get(ws, name, version)


def _insert_version(
    ws: Workspace,
    conn: Connection,
    name: str,
    tree: Tree,
    prof: Profile,
    *,
    profile_digest: str,
    schemas: tuple[str | None, str],
    meta: dict[str, Any],
    properties: dict[str, Any],
    parent: Dataset | None,
) -> tuple[int, bool]:
    """(version, whether it is new): the version holding ``tree``, inserted if absent."""
    now = clock.now()
    dataset_id = _upsert_dataset(conn, name, meta, now)
    existing = conn.execute(
        select(dataset_versions.c.version).where(
            dataset_versions.c.dataset_id == dataset_id,
            dataset_versions.c.digest == tree.digest,
        )
    ).first()
    if existing is not None:
        return int(existing.version), False
    schema_version = _schema_for_version(conn, dataset_id, *schemas, now)
    version = _next_version(conn, dataset_id)
    props = {
        **properties,
        "files": len(tree.entries),
        "columns": [{"name": c.name, "dtype": c.dtype} for c in prof.columns.values()],
    }
    artifact_id = ws.lineage.add_artifact(
        tree.digest,
        ARTIFACT_KIND,
        tree.size,
        name=f"{name}:{version}",
        properties={"dataset": name, "version": version},
        conn=conn,
    ).id
    conn.execute(
        insert(dataset_versions).values(
            id=new_id(),
            dataset_id=dataset_id,
            version=version,
            digest=tree.digest,
            artifact_id=artifact_id,
            profile_digest=profile_digest,
            schema_version=schema_version,
            num_rows=prof.num_rows,
            num_columns=len(prof.columns),
            created_at=now,
            properties=props,
        )
    )
    if parent is not None:
        _record_append(ws, conn, parent, artifact_id, name, version)
    return version, True


def _upsert_dataset(conn: Connection, name: str, meta: dict[str, Any], now: float) -> int:
    # The row lock (PostgreSQL; SQLite writers are serialised anyway) makes concurrent
    # writers of one dataset take their version numbers in turn.
    row = conn.execute(select(datasets).where(datasets.c.name == name).with_for_update()).first()
    changes: dict[str, Any] = {}
    if meta.get("description") is not None:
        changes["description"] = str(meta["description"])
    if meta.get("owner") is not None:
        changes["owner"] = str(meta["owner"])
    if meta.get("tags") is not None:
        changes["tags"] = list(meta["tags"])
    if row is None:
        result = conn.execute(
            insert(datasets).values(
                name=name,
                description=changes.get("description", ""),
                owner=changes.get("owner"),
                tags=changes.get("tags", []),
                column_descriptions=dict(meta.get("column_descriptions") or {}),
                created_at=now,
                updated_at=now,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])
    if meta.get("column_descriptions"):
        changes["column_descriptions"] = {
            **row.column_descriptions,
            **dict(meta["column_descriptions"]),
        }
    if changes:
        conn.execute(
            sql_update(datasets).where(datasets.c.id == row.id).values(**changes, updated_at=now)
        )
    return int(row.id)


def _next_version(conn: Connection, dataset_id: int) -> int:
    current = conn.execute(
        select(func.max(dataset_versions.c.version)).where(
            dataset_versions.c.dataset_id == dataset_id
        )
    ).scalar()
    return int(current or 0) + 1


def _record_append(
    ws: Workspace, conn: Connection, parent: Dataset, artifact_id: str, name: str, version: int
) -> None:
    execution = ws.lineage.add_execution(
        "data.append",
        name=f"append to {name}",
        status="finished",
        properties={"dataset": name, "from_version": parent.version, "to_version": version},
        conn=conn,
    )
    ws.lineage.link(execution.id, parent.artifact_id, "input", "base", conn=conn)
    ws.lineage.link(execution.id, artifact_id, "output", "dataset", conn=conn)


# --- schemas -----------------------------------------------------------------------------


def _put_schema(ws: Workspace, schema: Schema) -> str:
    return ws.artifacts.put_bytes(schema.to_yaml().encode()).digest


def _schema_for_version(
    conn: Connection, dataset_id: int, given: str | None, inferred: str, now: float
) -> int:
    latest = conn.execute(
        select(dataset_schemas.c.version, dataset_schemas.c.digest)
        .where(dataset_schemas.c.dataset_id == dataset_id)
        .order_by(dataset_schemas.c.version.desc())
        .limit(1)
    ).first()
    if given is None and latest is not None:
        return int(latest.version)
    digest = given or inferred
    if latest is not None and latest.digest == digest:
        return int(latest.version)
    version = 1 if latest is None else int(latest.version) + 1
    note = "inferred from the first version's profile" if given is None else None
    conn.execute(
        insert(dataset_schemas).values(
            dataset_id=dataset_id, version=version, digest=digest, created_at=now, note=note
        )
    )
    return version


def save_schema(ws: Workspace, name: str, schema: Schema, *, note: str | None = None) -> int:
    """Store an edited schema as the dataset's next schema version; later versions added
    (and validations against the dataset) use it. Returns the schema version."""
    if not isinstance(schema, Schema):
        raise InvalidInputError(f"schema must be a loopml Schema, not {type(schema).__name__}")
    digest = _put_schema(ws, schema)
    with ws.write_engine.begin() as conn:
        dataset_id = _dataset_id(conn, name)
        latest = conn.execute(
            select(dataset_schemas.c.version, dataset_schemas.c.digest)
            .where(dataset_schemas.c.dataset_id == dataset_id)
            .order_by(dataset_schemas.c.version.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.digest == digest:
            return int(latest.version)
        version = 1 if latest is None else int(latest.version) + 1
        conn.execute(
            insert(dataset_schemas).values(
                dataset_id=dataset_id,
                version=version,
                digest=digest,
                created_at=clock.now(),
                note=note,
            )
        )
    return version


def get_schema(ws: Workspace, name: str, version: int | None = None) -> Schema:
    """The dataset's schema: the latest version, or a given one."""
    with ws.engine.connect() as conn:
        dataset_id = _dataset_id(conn, name)
        q = select(dataset_schemas).where(dataset_schemas.c.dataset_id == dataset_id)
        if version is not None:
            q = q.where(dataset_schemas.c.version == version)
        row = conn.execute(q.order_by(dataset_schemas.c.version.desc()).limit(1)).first()
    if row is None:
        which = f"schema version {version}" if version is not None else "a schema"
        raise NotFoundError(f"dataset {name!r} has no {which}")
    raw = ws.artifacts.get_bytes(row.digest, what=f"dataset {name} schema v{row.version}")
    return Schema.from_yaml(raw)


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    digest: str
    created_at: float
    note: str | None


def schema_versions(ws: Workspace, name: str) -> list[SchemaVersion]:
    with ws.engine.connect() as conn:
        dataset_id = _dataset_id(conn, name)
        rows = conn.execute(
            select(dataset_schemas)
            .where(dataset_schemas.c.dataset_id == dataset_id)
            .order_by(dataset_schemas.c.version)
        ).all()
    return [SchemaVersion(r.version, r.digest, r.created_at, r.note) for r in rows]


# --- reading -----------------------------------------------------------------------------


def get(
    ws: Workspace, name: str, version: int | None = None, *, digest: str | None = None
) -> Dataset:
    """A version of ``name``: the latest, a version number, or the one with ``digest``."""
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
    with ws.engine.connect() as conn:
        row = conn.execute(q).first()
        if row is None:
            exists = conn.execute(select(datasets.c.id).where(datasets.c.name == name)).first()
    if row is None:
        if exists is None:
            raise NotFoundError(
                f"no dataset named {name!r}; list them with `loopml data ls` or add one"
            )
        which = f"version {version}" if version is not None else f"a version with digest {digest}"
        raise NotFoundError(f"dataset {name!r} has no {which}")
    return _dataset(ws, name, row)


def _dataset(ws: Workspace, name: str, row: Any) -> Dataset:
    return Dataset(
        name=name,
        version=int(row.version),
        digest=row.digest,
        num_rows=int(row.num_rows),
        num_columns=int(row.num_columns),
        created_at=float(row.created_at),
        artifact_id=row.artifact_id,
        profile_digest=row.profile_digest,
        schema_version=row.schema_version,
        properties=dict(row.properties or {}),
        workspace=ws,
    )


def versions(ws: Workspace, name: str) -> list[Dataset]:
    check_name(name)
    with ws.engine.connect() as conn:
        dataset_id = _dataset_id(conn, name)
        rows = conn.execute(
            select(dataset_versions)
            .where(dataset_versions.c.dataset_id == dataset_id)
            .order_by(dataset_versions.c.version)
        ).all()
    return [_dataset(ws, name, r) for r in rows]


def _dataset_id(conn: Connection, name: str) -> int:
    check_name(name)
    row = conn.execute(select(datasets.c.id).where(datasets.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"no dataset named {name!r}; list them with `loopml data ls`")
    return int(row.id)


def list_datasets(ws: Workspace) -> list[DatasetInfo]:
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
    with ws.engine.connect() as conn:
        rows = conn.execute(q).all()
    return [
        DatasetInfo(
            name=r.name,
            description=r.description,
            owner=r.owner,
            tags=tuple(r.tags or ()),
            column_descriptions=dict(r.column_descriptions or {}),
            created_at=r.created_at,
            updated_at=r.updated_at,
            latest_version=r.latest,
            num_versions=int(r.n or 0),
            columns=tuple(c["name"] for c in (r.properties or {}).get("columns", [])),
        )
        for r in rows
    ]


def info(ws: Workspace, name: str) -> DatasetInfo:
    check_name(name)
    for i in list_datasets(ws):
        if i.name == name:
            return i
    raise NotFoundError(f"no dataset named {name!r}; list them with `loopml data ls`")


def search(
    ws: Workspace,
    text: str | None = None,
    *,
    tag: str | None = None,
    column: str | None = None,
) -> list[DatasetInfo]:
    """Datasets whose name or description contains ``text`` (case-insensitive), that carry
    ``tag``, and whose latest version has a column named ``column``."""
    needle = text.lower() if text else None
    out = []
    for d in list_datasets(ws):
        if needle and needle not in d.name.lower() and needle not in d.description.lower():
            continue
        if tag is not None and tag not in d.tags:
            continue
        if column is not None and column not in d.columns:
            continue
        out.append(d)
    return out


def update(
    ws: Workspace,
    name: str,
    *,
    description: str | None = None,
    owner: str | None = None,
    tags: Sequence[str] | None = None,
    column_descriptions: Mapping[str, str] | None = None,
) -> DatasetInfo:
    """Edit the catalog entry; column descriptions are merged into the existing ones."""
    tags_t = _check_tags(tags)
    if column_descriptions:
        _check_descriptions(column_descriptions, get(ws, name).profile)
    meta = {
        "description": description,
        "owner": owner,
        "tags": tags_t,
        "column_descriptions": column_descriptions,
    }
    with ws.write_engine.begin() as conn:
        _dataset_id(conn, name)
        _upsert_dataset(conn, name, meta, clock.now())
    return info(ws, name)


def _check_tags(tags: Sequence[str] | None) -> tuple[str, ...] | None:
    if tags is None:
        return None
    if isinstance(tags, str) or not all(isinstance(t, str) and t for t in tags):
        raise InvalidInputError("tags must be a list of non-empty strings, e.g. ['faa', 'raw']")
    return tuple(dict.fromkeys(tags))


def _check_descriptions(descriptions: Mapping[str, str] | None, prof: Profile) -> None:
    if not descriptions:
        return
    unknown = sorted(set(descriptions) - set(prof.columns))
    if unknown:
        raise InvalidInputError(
            f"column_descriptions name column(s) {unknown} that the dataset does not have"
        )


def _diff(expected: dict[str, str], got: dict[str, str]) -> str:
    parts = []
    if missing := [c for c in expected if c not in got]:
        parts.append(f"missing column(s) {missing}")
    if extra := [c for c in got if c not in expected]:
        parts.append(f"extra column(s) {extra}")
    if changed := [
        f"{c} is {got[c]}, expected {expected[c]}"
        for c in expected
        if c in got and got[c] != expected[c]
    ]:
        parts.append("; ".join(changed))
    if not parts:
        parts.append("the columns are in another order")
    return "; ".join(parts)


# --- integrity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    versions: int
    blobs: int
    bytes: int
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(ws: Workspace, name: str | None = None, *, all_artifacts: bool = True) -> VerifyReport:
    """Re-hash every stored part, profile and schema of every dataset version (of ``name``,
    or all); with ``all_artifacts`` (and no name) also every other blob in the store."""
    names = [name] if name is not None else [d.name for d in list_datasets(ws)]
    checked: dict[str, bool] = {}
    problems: list[str] = []
    total = 0
    n_versions = 0

    def check(digest: str, what: str) -> None:
        nonlocal total
        if checked.get(digest):
            return
        try:
            total += ws.artifacts.verify(digest, what=what)
            checked[digest] = True
        except LoopmlError as exc:
            checked[digest] = False
            problems.append(str(exc))

    for n in names:
        for ds in versions(ws, n):
            n_versions += 1
            check(ds.digest, f"dataset {ds.ref} manifest")
            if checked.get(ds.digest):
                for e in ds.files:
                    check(e.digest, f"dataset {ds.ref} file {e.path}")
            if ds.profile_digest:
                check(ds.profile_digest, f"dataset {ds.ref} profile")
        for sv in schema_versions(ws, n):
            check(sv.digest, f"dataset {n} schema v{sv.version}")
    if name is None and all_artifacts:
        names_by_digest = _artifact_names(ws)
        for digest in ws.artifacts.iter_digests():
            if digest not in checked:
                check(digest, names_by_digest.get(digest, f"blob {digest}"))
    return VerifyReport(n_versions, len(checked), total, tuple(problems))


def _artifact_names(ws: Workspace) -> dict[str, str]:
    with ws.engine.connect() as conn:
        rows = conn.execute(select(artifacts.c.digest, artifacts.c.kind, artifacts.c.name)).all()
    return {r.digest: f"{r.kind} {r.name or r.digest}" for r in rows}
