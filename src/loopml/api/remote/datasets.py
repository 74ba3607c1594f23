"""``lm.datasets.add / get`` through a team server.

``add`` writes the table as one Parquet file into the local content-addressed cache,
uploads it (only if the server lacks it) and asks the server to add it: the server
profiles, infers the schema and stores the version's parts as local mode does. ``get``
downloads the version's parts and profile into the cache, verified on arrival, and
returns a :class:`DatasetVersion` that reads them from there.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from loopml.api.remote.artifacts import cache_store, download_tree, ensure_blob, upload_blobs
from loopml.api.remote.connection import Connection
from loopml.core import names
from loopml.core.errors import InvalidInputError
from loopml.data.dataset import DatasetVersion
from loopml.store.workspace import Workspace


@functools.cache
def _cache_workspace(root: str) -> Workspace:
    # Only its artifact store (the cache) is read; the database is never opened, so no
    # file is made and no schema version is stamped on a folder that every loopml shares.
    return Workspace(
        f"sqlite:///{os.path.join(root, 'unused.db')}", os.path.join(root), auto_migrate=False
    )


def version_of(body: Mapping[str, Any], workspace: Workspace) -> DatasetVersion:
    return DatasetVersion(
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
        workspace=workspace,
    )


class RemoteCatalog:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(
        self,
        name: str,
        source: Any,
        *,
        description: str | None = None,
        owner: str | None = None,
        tags: list[str] | None = None,
    ) -> DatasetVersion:
        """Upload ``source`` (a Polars/pandas/Arrow table, or a Parquet/CSV file or folder)
        and add it as the next version of ``name`` on the server."""
        import pyarrow.parquet as pq

        from loopml.data.sources import read_table

        names.check_name(name, what="dataset name")
        if isinstance(source, str | os.PathLike):
            source = read_table(source)
        table = _arrow(source)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        store = cache_store()
        blob = store.put_bytes(buffer.getvalue())
        upload_blobs(self.connection, store, [blob.digest])
        body = {
            "digest": blob.digest,
            "description": description,
            "owner": owner,
            "tags": None if tags is None else list(tags),
        }
        found = self.connection.post_json(f"/datasets/{quote(name, safe='')}/versions", body)
        return self._fetched(found)

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
        found = self.connection.get_json(
            f"/datasets/{quote(parsed.name, safe='')}/versions/{version_text}"
        )
        return self._fetched(found)

    def _fetched(self, body: Mapping[str, Any]) -> DatasetVersion:
        store = cache_store()
        download_tree(self.connection, store, body["digest"])
        if body.get("profile_digest"):
            ensure_blob(self.connection, store, body["profile_digest"])
        return version_of(body, _cache_workspace(store.url))


def _arrow(source: Any) -> Any:
    import pyarrow as pa

    if isinstance(source, pa.Table):
        return source
    to_arrow = getattr(source, "to_arrow", None)
    if callable(to_arrow):  # Polars
        return to_arrow()
    return pa.Table.from_pandas(source, preserve_index=False)
