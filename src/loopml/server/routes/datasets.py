"""The data catalog: datasets, versions, schemas, profiles, validation and drift."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from loopml.core.errors import NotFoundError
from loopml.data.catalog import Catalog
from loopml.data.dataset import Dataset
from loopml.data.drift import drift
from loopml.data.validate import validate
from loopml.server.routes.common import ERRORS, require_admin, version_number
from loopml.server.state import ServerState, state
from loopml.server.wire import (
    DatasetInfoOut,
    DatasetVersionOut,
    DocumentOut,
    SchemaVersionOut,
    VerifyReportOut,
    json_safe,
)
from loopml.store.verify import VerifyReport
from loopml.store.workspace import Workspace

router = APIRouter(tags=["datasets"], responses=ERRORS)
St = Annotated[ServerState, Depends(state)]


@router.get("/datasets", response_model=list[DatasetInfoOut], summary="The catalog")
def list_datasets(
    s: St,
    q: Annotated[str | None, Query(max_length=250, description="text in name/description")] = None,
    tag: Annotated[str | None, Query(max_length=250)] = None,
    column: Annotated[str | None, Query(max_length=250)] = None,
) -> list[DatasetInfoOut]:
    found = Catalog(s.workspace).search(q or None, tag=tag, column=column)
    return [DatasetInfoOut.of(d) for d in found]


@router.get("/datasets/{name}", response_model=DatasetInfoOut, summary="A catalog entry")
def dataset_info(s: St, name: str) -> DatasetInfoOut:
    return DatasetInfoOut.of(Catalog(s.workspace).info(name))


@router.get("/datasets/{name}/versions", response_model=list[DatasetVersionOut])
def dataset_versions(s: St, name: str) -> list[DatasetVersionOut]:
    return [DatasetVersionOut.of(d) for d in Catalog(s.workspace).versions(name)]


def version_of(ws: Workspace, name: str, version: str) -> Dataset:
    if version == "latest":
        return Catalog(ws).get(name)
    return Catalog(ws).get(name, version_number(version))


@router.get("/datasets/{name}/versions/{version}", response_model=DatasetVersionOut)
def dataset_version(s: St, name: str, version: str) -> DatasetVersionOut:
    """A version by number, or ``latest``."""
    return DatasetVersionOut.of(version_of(s.workspace, name, version))


@router.get("/datasets/{name}/versions/{version}/schema", response_model=DocumentOut)
def dataset_schema(s: St, name: str, version: str) -> DocumentOut:
    ds = version_of(s.workspace, name, version)
    if ds.schema is None:
        raise NotFoundError(f"dataset {ds.ref} has no schema")
    return DocumentOut(document=json_safe(ds.schema.to_dict()))


@router.get("/datasets/{name}/versions/{version}/profile", response_model=DocumentOut)
def dataset_profile(s: St, name: str, version: str) -> DocumentOut:
    """Per-column statistics with histograms and value counts."""
    return DocumentOut(document=profile_document(version_of(s.workspace, name, version)))


def profile_document(ds: Dataset) -> dict[str, Any]:
    doc = ds.profile.to_dict()
    for col in doc["columns"]:
        col.pop("hll", None)  # a sketch's registers mean nothing to a reader
        hist = (col.get("numeric") or {}).get("histogram")
        if hist is not None:
            h = ds.profile.columns[col["name"]].numeric.histogram  # type: ignore[union-attr]
            hist["edges"] = h.edges().tolist() if h is not None else []
    return json_safe(doc)


@router.get("/datasets/{name}/versions/{version}/validation", response_model=DocumentOut)
def dataset_validation(s: St, name: str, version: str) -> DocumentOut:
    """The version checked against the schema it was registered with."""
    ds = version_of(s.workspace, name, version)
    return DocumentOut(document=_validation(ds))


def _validation(ds: Dataset) -> dict[str, Any]:
    # Read from the verified files on each request: a stored result could hide tampering.
    if ds.schema is None:
        raise NotFoundError(f"dataset {ds.ref} has no schema to validate against")
    return json_safe(validate(ds.to_polars(), ds.schema).to_dict())


@router.get(
    "/datasets/{name}/diff", response_model=DocumentOut, summary="Drift between two versions"
)
def dataset_diff(
    s: St,
    name: str,
    base: Annotated[str, Query(max_length=20, description="version number or latest")],
    other: Annotated[str, Query(max_length=20, description="version number or latest")],
) -> DocumentOut:
    """Per-column drift of ``other`` against ``base``, from their stored profiles."""
    ref = version_of(s.workspace, name, base)
    cur = version_of(s.workspace, name, other)
    report = drift(ref, cur)
    return DocumentOut(document=json_safe(report.to_dict()))


@router.get("/datasets/{name}/schemas", response_model=list[SchemaVersionOut])
def schema_versions(s: St, name: str) -> list[SchemaVersionOut]:
    """The dataset's schema versions, oldest first; each YAML document is the blob named
    by its digest."""
    return [
        SchemaVersionOut(version=v.version, digest=v.digest, created_at=v.created_at, note=v.note)
        for v in Catalog(s.workspace).schema_versions(name)
    ]


@router.get(
    "/datasets/{name}/verification",
    response_model=VerifyReportOut,
    summary="Re-hash a dataset's stored parts",
)
def verify_dataset(s: St, name: str) -> VerifyReportOut:
    """Every stored part, profile and schema of every version of ``name``, re-hashed now;
    problems name the version and file."""
    return _report(Catalog(s.workspace).verify(name))


@router.get(
    "/verification",
    response_model=VerifyReportOut,
    tags=["blobs"],
    summary="Re-hash every dataset (and every blob)",
)
def verify_all(
    s: St,
    request: Request,
    all_artifacts: Annotated[bool, Query(description="also every other blob in the store")] = True,
) -> VerifyReportOut:
    """Every dataset version's parts re-hashed; with ``all_artifacts`` every blob in the
    store too, which reads the whole store and so needs an ``admin`` token."""
    if all_artifacts:
        require_admin(
            s.workspace,
            request,
            "re-hashing every blob of the store (verify one dataset, or pass all_artifacts=false)",
        )
    return _report(Catalog(s.workspace).verify(None, all_artifacts=all_artifacts))


def _report(r: VerifyReport) -> VerifyReportOut:
    return VerifyReportOut(
        versions=r.versions, blobs=r.blobs, bytes=r.bytes, problems=list(r.problems), ok=r.ok
    )
