"""Adding versions: ``add`` a source, ``append`` a batch to the latest version.

A version's data is a tree of Parquet parts in the artifact store; its row in
``dataset_versions`` and its lineage node are written in one transaction, so a version is
either fully registered or absent. Blobs written before a failed transaction are only
unreferenced garbage (``loopml gc`` removes them), never a half-registered version.
"""

from __future__ import annotations

import random
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy import Connection, func, insert, select

from loopml.core import clock
from loopml.core.errors import ConflictError, InvalidInputError
from loopml.core.ids import new_id
from loopml.core.progress import Progress, silent
from loopml.data.catalog.entries import (
    Tags,
    check_descriptions,
    check_name,
    check_tags,
    upsert_entry,
)
from loopml.data.catalog.schemas import (
    CatalogSchemas,
    latest_schema,
    next_schema_version,
    put_schema,
)
from loopml.data.dataset import DatasetVersion
from loopml.data.profile import Profile, merge, merge_all, profile
from loopml.data.schema import Schema, infer_schema
from loopml.data.sources import StagedFile, describe_source, part_name, stage
from loopml.data.stable_hash import HASH_ID
from loopml.store.artifacts import Tree, TreeEntry
from loopml.store.metadata.tables import dataset_versions, datasets
from loopml.store.workspace import Workspace

BATCH_ROWS = 20_000_000  # larger Parquet parts are profiled batch by batch and merged
ARTIFACT_KIND = "dataset"
_RETRIES = 10


class ContentAlreadyStoredWarning(UserWarning):
    """``add`` found identical content already stored and changed nothing."""


@dataclass(frozen=True)
class _NewVersion:
    name: str
    tree: Tree
    profile: Profile
    description: str
    given_schema: str | None
    inferred_schema: str
    meta: dict[str, Any]
    properties: dict[str, Any]
    parent: DatasetVersion | None
    created_by: str | None


class CatalogVersions(CatalogSchemas):
    """Adding and appending versions, on top of schemas and queries."""

    def add(
        self,
        name: str,
        source: Any,
        *,
        description: str | None = None,
        owner: str | None = None,
        tags: Tags | None = None,
        column_descriptions: Mapping[str, str] | None = None,
        schema: Schema | None = None,
        csv_options: Mapping[str, Any] | None = None,
        progress: Progress = silent,
        created_by: str | None = None,
    ) -> DatasetVersion:
        """Register ``source`` (a table, a Parquet/CSV file or folder, or an fsspec URL)
        as the next version of ``name``. Identical content returns the existing version
        unchanged (its description, and the entry's owner and tags, are kept: a
        ``ContentAlreadyStoredWarning`` says so when others were given). ``progress``
        hears ("profiling rows", …) and ("storing files", …) as the work goes."""
        check_name(name)
        tag_map = check_tags(tags)
        if description is not None and not isinstance(description, str):
            raise InvalidInputError("description must be a string")
        given_schema = None if schema is None else put_schema(self.ws, schema)
        with tempfile.TemporaryDirectory(prefix="loopml-add-") as workdir:
            staged = stage(source, workdir, csv_options=dict(csv_options or {}))
            prof = _profile_files(staged, progress)
            check_descriptions(column_descriptions, prof)
            tree = _store(self.ws, staged, start=0, progress=progress)
        meta = {
            "description": description,
            "owner": owner,
            "tags": tag_map,
            "column_descriptions": column_descriptions,
        }
        new = _NewVersion(
            name,
            tree,
            prof,
            description or "",
            given_schema,
            put_schema(self.ws, infer_schema(prof)),
            meta,
            {"source": describe_source(source)},
            None,
            self.ws.actor if created_by is None else created_by,
        )
        version, created = self._register(new)
        found = self.get(name, version)
        if not created:
            _warn_unchanged(found, meta)
        return found

    def append(
        self,
        name: str,
        batch: Any,
        *,
        description: str | None = None,
        csv_options: Mapping[str, Any] | None = None,
        progress: Progress = silent,
        created_by: str | None = None,
    ) -> DatasetVersion:
        """A new version holding the latest version's rows plus ``batch``; the existing
        Parquet parts are shared, not copied, and the profile is merged, not recomputed."""
        base = self.get(name)
        with tempfile.TemporaryDirectory(prefix="loopml-append-") as workdir:
            staged = stage(batch, workdir, csv_options=dict(csv_options or {}))
            expected = {c.name: c.dtype for c in base.profile.columns.values()}
            for f in staged:
                if f.schema != expected:
                    raise InvalidInputError(
                        f"cannot append {f.origin!r} to dataset {base.ref}: "
                        f"{_diff(expected, f.schema)}"
                    )
            if sum(f.num_rows for f in staged) == 0:
                raise InvalidInputError(f"the batch to append to {base.ref} has no rows")
            prof = merge(_current_profile(base), _profile_files(staged, progress))
            added = _store(self.ws, staged, start=len(base.files), progress=progress)
        tree = self.ws.artifacts.put_manifest([*base.files, *added.entries])
        new = _NewVersion(
            name,
            tree,
            prof,
            description or "",
            None,
            put_schema(self.ws, infer_schema(prof)),
            {},
            {"source": describe_source(batch), "appended_to": base.version},
            base,
            self.ws.actor if created_by is None else created_by,
        )
        version, _ = self._register(new)
        return self.get(name, version)

    def _register(self, new: _NewVersion) -> tuple[int, bool]:
        """(version, whether it is new), retrying when a concurrent writer took the
        version number (PostgreSQL) or created the dataset first."""
        profile_digest = self.ws.artifacts.put_bytes(new.profile.to_json().encode()).digest
        for attempt in range(_RETRIES):
            try:
                with self.ws.write_engine.begin() as conn:
                    return _insert_version(self.ws, conn, new, profile_digest)
            except sa.exc.IntegrityError:
                if attempt == _RETRIES - 1:
                    raise ConflictError(
                        f"could not allocate a version of dataset {new.name!r} after "
                        f"{_RETRIES} attempts under concurrent writes; retry"
                    ) from None
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise AssertionError("unreachable")  # pragma: no cover


def _insert_version(
    ws: Workspace, conn: Connection, new: _NewVersion, profile_digest: str
) -> tuple[int, bool]:
    now = clock.now()
    existing_id = _existing(conn, new)
    if existing_id is not None:
        return existing_id, False
    dataset_id = upsert_entry(conn, new.name, new.meta, now)
    existing_id = _existing(conn, new)  # under the row lock now
    if existing_id is not None:
        return existing_id, False
    schema_version = _schema_for_version(conn, dataset_id, new, now)
    version = (
        int(
            conn.execute(
                select(func.max(dataset_versions.c.version)).where(
                    dataset_versions.c.dataset_id == dataset_id
                )
            ).scalar()
            or 0
        )
        + 1
    )
    props = {
        **new.properties,
        "files": len(new.tree.entries),
        "columns": [{"name": c.name, "dtype": c.dtype} for c in new.profile.columns.values()],
    }
    artifact_id = ws.lineage.add_artifact(
        new.tree.digest,
        ARTIFACT_KIND,
        new.tree.size,
        name=f"{new.name}:{version}",
        properties={"dataset": new.name, "version": version},
        conn=conn,
    ).id
    conn.execute(
        insert(dataset_versions).values(
            id=new_id(),
            dataset_id=dataset_id,
            version=version,
            digest=new.tree.digest,
            artifact_id=artifact_id,
            profile_digest=profile_digest,
            schema_version=schema_version,
            num_rows=new.profile.num_rows,
            num_columns=len(new.profile.columns),
            description=new.description,
            created_at=now,
            properties=props,
            created_by=new.created_by,
        )
    )
    if new.parent is not None:
        _record_append(ws, conn, new.parent, artifact_id, new.name, version)
    return version, True


def _existing(conn: Connection, new: _NewVersion) -> int | None:
    row = conn.execute(
        select(dataset_versions.c.version)
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .where(datasets.c.name == new.name, dataset_versions.c.digest == new.tree.digest)
    ).first()
    return None if row is None else int(row.version)


def _schema_for_version(conn: Connection, dataset_id: int, new: _NewVersion, now: float) -> int:
    """A given schema becomes the next schema version; without one the latest stays, and
    the first version's schema is inferred from its profile."""
    if new.given_schema is None:
        latest = latest_schema(conn, dataset_id)
        if latest is not None:
            return latest[0]
        return next_schema_version(
            conn,
            dataset_id,
            new.inferred_schema,
            note="inferred from the first version's profile",
            now=now,
        )
    return next_schema_version(conn, dataset_id, new.given_schema, note=None, now=now)


def _record_append(
    ws: Workspace,
    conn: Connection,
    parent: DatasetVersion,
    artifact_id: str,
    name: str,
    version: int,
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


def _warn_unchanged(found: DatasetVersion, meta: Mapping[str, Any]) -> None:
    ignored = []
    if meta.get("description") is not None and meta["description"] != found.description:
        ignored.append(f"description (kept {found.description!r})")
    ignored += [k for k in ("owner", "tags", "column_descriptions") if meta.get(k)]
    if ignored:
        warnings.warn(
            f"dataset {found.ref} already holds this content; nothing was changed, "
            f"{', '.join(ignored)} not applied. Change the catalog entry with "
            f"lm.datasets.update({found.name!r}, ...)",
            ContentAlreadyStoredWarning,
            stacklevel=3,
        )


def _current_profile(ds: DatasetVersion) -> Profile:
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


def _profile_files(staged: list[StagedFile], progress: Progress = silent) -> Profile:
    parts = []
    total = sum(f.num_rows for f in staged)
    done = 0
    progress("profiling rows", done, total)
    for f in staged:
        try:
            if f.num_rows <= BATCH_ROWS:
                parts.append(profile(pl.read_parquet(f.path)))
                done += f.num_rows
                progress("profiling rows", done, total)
                continue
            # Row-group-sized batches would make many small profiles; slices of
            # BATCH_ROWS keep memory bounded and the merges few.
            lf = pl.scan_parquet(f.path)
            for offset in range(0, f.num_rows, BATCH_ROWS):
                parts.append(profile(lf.slice(offset, BATCH_ROWS).collect()))
                done += min(BATCH_ROWS, f.num_rows - offset)
                progress("profiling rows", done, total)
        except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
            raise InvalidInputError(
                f"cannot read {f.origin!r} (truncated or corrupted?): {exc}"
            ) from None
    return merge_all(parts)


def _store(
    ws: Workspace, staged: list[StagedFile], *, start: int, progress: Progress = silent
) -> Tree:
    entries = []
    progress("storing files", 0, len(staged))
    for i, f in enumerate(staged):
        blob = ws.artifacts.put_file(f.path)
        entries.append(TreeEntry(part_name(start + i), blob.digest, blob.size))
        progress("storing files", i + 1, len(staged))
    return ws.artifacts.put_manifest(entries)


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
