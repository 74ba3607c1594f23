"""Dataset writes of remote clients: add, append, edit the entry, save a schema. Each is
recorded as made by the request's token (``anonymous`` without).

A table travels as one Parquet file the client uploaded first (``PUT /blobs/{digest}``);
the server profiles it and stores it as the version's part as local mode does with a
Parquet file (as it is, streamed, never whole in memory), so an append sends only the new
rows and the server shares the existing parts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from loopml.core import hashing, names
from loopml.core.errors import InvalidInputError
from loopml.data.catalog import Catalog, ContentAlreadyStoredWarning
from loopml.data.schema import Schema
from loopml.server.routes.common import ERRORS, WRITE_ERRORS, who
from loopml.server.state import ServerState, state
from loopml.server.wire import (
    AddDatasetIn,
    AppendDatasetIn,
    DatasetInfoOut,
    DatasetVersionOut,
    SaveSchemaIn,
    SchemaVersionOut,
    UpdateDatasetIn,
)
from loopml.store.workspace import Workspace

router = APIRouter(tags=["datasets"], responses=ERRORS)
St = Annotated[ServerState, Depends(state)]


@contextlib.contextmanager
def uploaded_parquet(ws: Workspace, digest: str) -> Iterator[str]:
    """The Parquet file a client uploaded as ``digest``, as a path the catalog reads as it
    reads a local Parquet file: used as it is (never loaded whole into memory, never
    rewritten, so the version's part is the very blob uploaded). Errors name the upload,
    not the temp path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    local = ws.artifacts.local_path(hashing.check_digest(digest))
    try:
        pq.read_metadata(local)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInputError(f"the upload {digest} is not a Parquet file: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="loopml-uploaded-") as tmp:
        # The catalog knows Parquet by the file's ending, which a stored blob lacks.
        path = os.path.join(tmp, "upload.parquet")
        os.symlink(local, path)
        try:
            yield path
        except InvalidInputError as exc:
            exc.args = (str(exc).replace(repr(path), f"the upload {digest}"),)
            raise


@router.post(
    "/datasets/{name}/versions",
    response_model=DatasetVersionOut,
    responses=WRITE_ERRORS,
    summary="Add an uploaded table",
)
def add_dataset(s: St, name: str, body: AddDatasetIn, request: Request) -> DatasetVersionOut:
    """Add the uploaded Parquet file ``digest`` as the next version of ``name``; identical
    content answers the existing version."""
    names.check_name(name, what="dataset name")
    with (
        uploaded_parquet(s.workspace, body.digest) as table,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ContentAlreadyStoredWarning)
        ds = Catalog(s.workspace).add(
            name,
            table,
            description=body.description,
            owner=body.owner,
            tags=body.tags,
            column_descriptions=body.column_descriptions,
            schema=None if body.schema_yaml is None else Schema.from_yaml(body.schema_yaml),
            created_by=who(request),
        )
    return DatasetVersionOut.of(ds)


@router.post(
    "/datasets/{name}/append",
    response_model=DatasetVersionOut,
    responses=WRITE_ERRORS,
    summary="Append an uploaded batch",
)
def append_dataset(s: St, name: str, body: AppendDatasetIn, request: Request) -> DatasetVersionOut:
    """A new version of ``name``: its latest version's rows plus the uploaded Parquet batch
    ``digest`` (same columns and types). The existing parts are shared, not copied."""
    names.check_name(name, what="dataset name")
    with uploaded_parquet(s.workspace, body.digest) as batch:
        ds = Catalog(s.workspace).append(
            name, batch, description=body.description, created_by=who(request)
        )
    return DatasetVersionOut.of(ds)


@router.patch(
    "/datasets/{name}",
    response_model=DatasetInfoOut,
    responses=WRITE_ERRORS,
    summary="Edit a catalog entry",
)
def update_dataset(s: St, name: str, body: UpdateDatasetIn) -> DatasetInfoOut:
    """Description, owner and tags replace the stored ones; column descriptions are merged."""
    names.check_name(name, what="dataset name")
    info = Catalog(s.workspace).update(
        name,
        description=body.description,
        owner=body.owner,
        tags=body.tags,
        column_descriptions=body.column_descriptions,
    )
    return DatasetInfoOut.of(info)


@router.post(
    "/datasets/{name}/schemas",
    response_model=SchemaVersionOut,
    responses=WRITE_ERRORS,
    summary="Save an edited schema",
)
def save_schema(s: St, name: str, body: SaveSchemaIn) -> SchemaVersionOut:
    """Store the schema (YAML) as the dataset's next schema version; versions added later,
    and validations against the dataset, use it."""
    names.check_name(name, what="dataset name")
    catalog = Catalog(s.workspace)
    version = catalog.save_schema(name, Schema.from_yaml(body.yaml), note=body.note)
    saved = next(v for v in catalog.schema_versions(name) if v.version == version)
    return SchemaVersionOut(
        version=saved.version, digest=saved.digest, created_at=saved.created_at, note=saved.note
    )
