"""``lm.datasets`` through a team server.

``add`` and ``append`` write the table as one Parquet file into the local
content-addressed cache, upload it (only if the server lacks it) and ask the server to add
or append it: the server profiles, infers the schema and stores the version's parts as
local mode does. ``get`` downloads the version's parts and profile into the cache,
verified on arrival, and returns a :class:`RemoteDatasetVersion` that reads them from
there and asks the server for what only its database holds (schema, lineage).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from loopml.api.remote.artifacts import cache_store, download_tree, ensure_blob, upload_files
from loopml.api.remote.connection import Connection
from loopml.core import hashing, names
from loopml.core.errors import ConfigError, InvalidInputError, NotFoundError
from loopml.data.catalog import SchemaVersion
from loopml.data.catalog.entries import check_tags
from loopml.data.dataset import DatasetInfo, DatasetVersion
from loopml.data.profile import Profile
from loopml.data.schema import Schema
from loopml.store.artifacts import TreeEntry
from loopml.store.lineage import ArtifactRecord, Direction, Edge, ExecutionRecord, LineageGraph
from loopml.store.verify import VerifyReport
from loopml.store.workspace import Workspace


@functools.cache
def _cache_workspace(root: str) -> Workspace:
    """The workspace a fetched version reads its parts from: only its artifact store (the
    cache) is real. Its database is refused before it is opened, so no file is made on a
    folder every loopml shares, and code reaching for it gets an error naming remote mode
    instead of a raw SQL one."""
    import sqlalchemy as sa

    ws = Workspace(
        f"sqlite:///{os.path.join(root, 'unused.db')}", os.path.join(root), auto_migrate=False
    )

    def refuse(*_: Any, **__: Any) -> None:
        raise ConfigError(
            "this dataset version was fetched from a loopml server (LOOPML_URI is set): its "
            "metadata lives in the server's database, which this machine does not open; use "
            "the version's methods or lm.datasets, which ask the server"
        )

    sa.event.listen(ws.engine, "do_connect", refuse)
    return ws


def _path(name: str, *rest: str) -> str:
    return "/".join([f"/datasets/{quote(name, safe='')}", *rest])


@dataclass(frozen=True, repr=False)
class RemoteDatasetVersion(DatasetVersion):
    """A dataset version of a team server. Its parts and profile are read from the local
    cache (fetched and verified on first use); its schema and lineage come from the
    server, whose database holds them."""

    connection: Connection = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @functools.cached_property
    def files(self) -> tuple[TreeEntry, ...]:
        return download_tree(self.connection, self.workspace.artifacts, self.digest).entries

    @functools.cached_property
    def profile(self) -> Profile:
        if self.profile_digest is not None:
            ensure_blob(self.connection, self.workspace.artifacts, self.profile_digest)
        return super().profile

    @functools.cached_property
    def schema(self) -> Schema | None:
        if self.schema_version is None:
            return None
        return RemoteCatalog(self.connection).get_schema(self.name, self.schema_version)

    def verify(self) -> int:
        """Re-hash the parts and profile fetched to this machine (what reads return);
        ``lm.datasets.verify(name)`` asks the server to re-hash its own copies."""
        self.files  # noqa: B018 - fetched (and verified on arrival) if not cached yet
        self.profile  # noqa: B018
        return super().verify()

    def lineage(self, direction: Direction = "downstream") -> LineageGraph:
        """The runs that read this version (downstream) or that produced it (upstream),
        from the server's lineage graph."""
        if direction not in ("upstream", "downstream"):
            raise InvalidInputError("direction must be 'upstream' or 'downstream'")
        body = self.connection.get_json(
            f"/lineage/{quote(self.artifact_id, safe='')}", params={"direction": direction}
        )
        return graph_of(body)


def graph_of(body: Mapping[str, Any]) -> LineageGraph:
    """The lineage graph the server sent (``LineageOut``)."""
    artifacts, executions = {}, {}
    for n in body["nodes"]:
        if n["node"] == "artifact":
            artifacts[n["id"]] = ArtifactRecord(
                id=n["id"],
                digest=n["digest"],
                kind=n["kind"],
                name=n["name"],
                size=int(n.get("size") or 0),
                created_at=float(n["time"]),
                properties=dict(n.get("properties") or {}),
            )
        else:
            executions[n["id"]] = ExecutionRecord(
                id=n["id"],
                kind=n["kind"],
                name=n["name"],
                status=n["status"],
                start_time=float(n["time"]),
                end_time=n.get("end_time"),
                error=n.get("error"),
                properties=dict(n.get("properties") or {}),
            )
    edges = tuple(Edge(e["source"], e["target"], e["type"], e["role"]) for e in body["edges"])
    return LineageGraph(body["root"], artifacts, executions, edges)


def info_of(body: Mapping[str, Any]) -> DatasetInfo:
    return DatasetInfo(
        name=body["name"],
        description=body["description"],
        owner=body.get("owner"),
        tags=dict(body.get("tags") or {}),
        column_descriptions=dict(body.get("column_descriptions") or {}),
        created_at=float(body["created_at"]),
        updated_at=float(body["updated_at"]),
        latest_version=body.get("latest_version"),
        num_versions=int(body["num_versions"]),
        columns=tuple(body.get("columns") or ()),
    )


class RemoteCatalog:
    """The catalog of a team server, with ``Catalog``'s methods."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # writing ----------------------------------------------------------------
    def add(
        self,
        name: str,
        source: Any,
        *,
        description: str | None = None,
        owner: str | None = None,
        tags: Any = None,
        column_descriptions: Mapping[str, str] | None = None,
        schema: Schema | None = None,
        csv_options: Mapping[str, Any] | None = None,
    ) -> DatasetVersion:
        """Upload ``source`` (a Polars/pandas/Arrow table, or a Parquet/CSV file or folder,
        read here with ``csv_options``) and add it as the next version of ``name`` on the
        server."""
        names.check_name(name, what="dataset name")
        if schema is not None and not isinstance(schema, Schema):
            raise InvalidInputError(f"schema must be a Schema, not {type(schema).__name__}")
        body = {
            "digest": self._upload(source, csv_options),
            "description": description,
            "owner": owner,
            "tags": check_tags(tags),
            "column_descriptions": None
            if column_descriptions is None
            else dict(column_descriptions),
            "schema_yaml": None if schema is None else schema.to_yaml(),
        }
        return self._fetched(self.connection.post_json(_path(name, "versions"), body))

    def append(
        self,
        name: str,
        batch: Any,
        *,
        description: str | None = None,
        csv_options: Mapping[str, Any] | None = None,
    ) -> DatasetVersion:
        """Upload only ``batch`` and make the server's next version of ``name`` its latest
        version's rows plus the batch (the existing parts are shared there, not copied)."""
        names.check_name(name, what="dataset name")
        body = {"digest": self._upload(batch, csv_options), "description": description}
        return self._fetched(self.connection.post_json(_path(name, "append"), body))

    def update(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        tags: Any = None,
        column_descriptions: Mapping[str, str] | None = None,
    ) -> DatasetInfo:
        names.check_name(name, what="dataset name")
        body = {
            "description": description,
            "owner": owner,
            "tags": check_tags(tags),
            "column_descriptions": None
            if column_descriptions is None
            else dict(column_descriptions),
        }
        found = self.connection.request("PATCH", _path(name), json=body)
        return info_of(found.json())

    def save_schema(self, name: str, schema: Schema, *, note: str | None = None) -> int:
        names.check_name(name, what="dataset name")
        body = {"yaml": schema.to_yaml(), "note": note}
        return int(self.connection.post_json(_path(name, "schemas"), body)["version"])

    def _upload(self, source: Any, csv_options: Mapping[str, Any] | None) -> str:
        """Send ``source`` as one Parquet file streamed from disk; its digest. It is staged
        as local mode stages it (a Parquet file as it is, CSV converted by Polars' streaming
        engine, an in-memory table written once), so no file source is read into memory
        and a file gives the same version, local or remote; a folder's files are joined
        by the same streaming engine."""
        import polars as pl

        from loopml.data.sources import stage

        with tempfile.TemporaryDirectory(prefix="loopml-upload-") as tmp:
            staged = stage(source, tmp, csv_options=dict(csv_options or {}))
            path = staged[0].path
            if len(staged) > 1:
                path = os.path.join(tmp, "table.parquet")
                pl.scan_parquet([f.path for f in staged]).sink_parquet(
                    path, compression="zstd", statistics=True
                )
            digest, _ = hashing.digest_file(path)
            upload_files(self.connection, [(digest, path)])
        return digest

    # reading ----------------------------------------------------------------
    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        """``name`` (the latest version), ``name:3``, or ``name`` and ``version``; its parts
        fetched into the cache."""
        parsed = names.parse_ref(name, "dataset reference")
        if parsed.alias is not None:
            raise InvalidInputError(
                f"datasets have versions, not aliases: {name!r}; use name or name:3"
            )
        if version is not None:
            if parsed.version is not None:
                raise InvalidInputError(f"{name!r} names a version already; drop version=")
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise InvalidInputError(f"a dataset version is a positive integer, not {version!r}")
        number = parsed.version if version is None else version
        version_text = "latest" if number is None else str(number)
        return self._fetched(self.connection.get_json(_path(parsed.name, "versions", version_text)))

    def versions(self, name: str) -> list[DatasetVersion]:
        """Every version of ``name``, oldest first; parts are fetched when first read."""
        names.check_name(name, what="dataset name")
        found = self.connection.get_json(_path(name, "versions"))
        return [version_of(b, self.connection) for b in found]

    def list_datasets(self) -> list[DatasetInfo]:
        return [info_of(b) for b in self.connection.get_json("/datasets")]

    def info(self, name: str) -> DatasetInfo:
        names.check_name(name, what="dataset name")
        return info_of(self.connection.get_json(_path(name)))

    def search(
        self, text: str | None = None, *, tag: str | None = None, column: str | None = None
    ) -> list[DatasetInfo]:
        """Datasets whose name or description contains ``text`` (case-insensitive), that
        carry tag ``tag``, and whose latest version has a column named ``column``."""
        given = {"q": text, "tag": tag, "column": column}
        params = {k: v for k, v in given.items() if v is not None}
        for key, value in params.items():
            if not isinstance(value, str):
                raise InvalidInputError(f"search {key} must be a string, not {value!r}")
        return [info_of(b) for b in self.connection.get_json("/datasets", params=params)]

    def schema_versions(self, name: str) -> list[SchemaVersion]:
        names.check_name(name, what="dataset name")
        return [
            SchemaVersion(int(b["version"]), b["digest"], float(b["created_at"]), b.get("note"))
            for b in self.connection.get_json(_path(name, "schemas"))
        ]

    def get_schema(self, name: str, version: int | None = None) -> Schema:
        """The dataset's schema: the latest version, or a given one; the YAML document is
        fetched by its digest and verified on arrival."""
        found = self.schema_versions(name)
        if version is not None:
            found = [s for s in found if s.version == version]
        if not found:
            which = f"schema version {version}" if version is not None else "a schema"
            raise NotFoundError(f"dataset {name!r} has no {which}")
        store = cache_store()
        ensure_blob(self.connection, store, found[-1].digest)
        raw = store.get_bytes(found[-1].digest, what=f"dataset {name} schema")
        return Schema.from_yaml(raw)

    def verify(self, name: str | None = None, *, all_artifacts: bool = True) -> VerifyReport:
        """The server re-hashes every stored part, profile and schema of ``name`` (or of
        every dataset; with ``all_artifacts`` and no name, every blob in its store, which
        needs an admin token)."""
        if name is None:
            path, params = "/verification", {"all_artifacts": bool(all_artifacts)}
        else:
            names.check_name(name, what="dataset name")
            path, params = _path(name, "verification"), {}
        body = self.connection.get_json(path, params=params)
        return VerifyReport(
            versions=int(body["versions"]),
            blobs=int(body["blobs"]),
            bytes=int(body["bytes"]),
            problems=tuple(body["problems"]),
        )

    def _fetched(self, body: Mapping[str, Any]) -> DatasetVersion:
        found = version_of(body, self.connection)
        found.files  # noqa: B018 - fetched now: a version that cannot be read fails here
        found.profile  # noqa: B018
        return found


def version_of(body: Mapping[str, Any], connection: Connection) -> RemoteDatasetVersion:
    return RemoteDatasetVersion(
        name=body["name"],
        version=int(body["version"]),
        digest=body["digest"],
        num_rows=int(body["num_rows"]),
        num_columns=int(body["num_columns"]),
        created_at=float(body["created_at"]),
        artifact_id=body["artifact_id"],
        profile_digest=body.get("profile_digest"),
        schema_version=body.get("schema_version"),
        description=body.get("description") or "",
        properties={"columns": body.get("columns") or []},
        created_by=body.get("created_by"),
        workspace=_cache_workspace(cache_store().url),
        connection=connection,
    )
