"""Dataset writes of remote clients: add, append, edit the entry, save a schema. Each is
recorded as made by the request's token (``anonymous`` without).

A table travels as one Parquet file the client uploaded first (``PUT /blobs/{digest}``);
the server reads it, profiles it and stores the version's parts as local mode does, so an
append sends only the new rows and the server shares the existing parts.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

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


def uploaded_table(ws: Workspace, digest: str) -> Any:
    """The Parquet file a client uploaded as ``digest``, read as an Arrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    local = ws.artifacts.local_path(hashing.check_digest(digest))
    try:
        return pq.read_table(local)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInputError(f"the upload {digest} is not a Parquet file: {exc}") from None


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
    table = uploaded_table(s.workspace, body.digest)
    with warnings.catch_warnings():
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
    table = uploaded_table(s.workspace, body.digest)
    ds = Catalog(s.workspace).append(
        name, table, description=body.description, created_by=who(request)
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
