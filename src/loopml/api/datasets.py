"""``lm.datasets.add/get``, ``lm.validate``, ``lm.drift`` on the configured workspace.

Wherever a dataset is expected, a ``Dataset``, a reference string (``"flights"``,
``"flights:3"``) or, for validation and drift, a table or profile may be given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from loopml.api.fluent import workspace
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.data import catalog
from loopml.data import drift as drift_mod
from loopml.data import validate as validate_mod
from loopml.data.dataset import Dataset, DatasetInfo
from loopml.data.drift import DriftReport, Method
from loopml.data.profile import Profile
from loopml.data.profile import profile as _profile
from loopml.data.schema import Check, Schema
from loopml.data.sources import read_table
from loopml.data.validate import ValidationReport


def add(
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
    """Add ``source`` (a table, a Parquet/CSV file or folder, or an fsspec URL) as the next
    version of dataset ``name``; identical content returns the existing version."""
    return catalog.add(
        workspace(),
        name,
        source,
        description=description,
        owner=owner,
        tags=tags,
        column_descriptions=column_descriptions,
        schema=schema,
        csv_options=csv_options,
    )


def append(name: str, batch: Any, *, csv_options: Mapping[str, Any] | None = None) -> Dataset:
    """A new version of ``name`` with ``batch``'s rows added; unchanged files are shared."""
    return catalog.append(workspace(), name, batch, csv_options=csv_options)


def get(name: str, version: int | None = None, digest: str | None = None) -> Dataset:
    """The latest version of ``name``, or a given version number or digest."""
    return catalog.get(workspace(), name, version, digest=digest)


def versions(name: str) -> list[Dataset]:
    return catalog.versions(workspace(), name)


def list_datasets() -> list[DatasetInfo]:
    return catalog.list_datasets(workspace())


def search(
    text: str | None = None, *, tag: str | None = None, column: str | None = None
) -> list[DatasetInfo]:
    return catalog.search(workspace(), text, tag=tag, column=column)


def update(
    name: str,
    *,
    description: str | None = None,
    owner: str | None = None,
    tags: Sequence[str] | None = None,
    column_descriptions: Mapping[str, str] | None = None,
) -> DatasetInfo:
    return catalog.update(
        workspace(),
        name,
        description=description,
        owner=owner,
        tags=tags,
        column_descriptions=column_descriptions,
    )


def schema(name: str, version: int | None = None) -> Schema:
    """The dataset's current (or a given) schema version."""
    return catalog.get_schema(workspace(), name, version)


def save_schema(name: str, schema: Schema | str, *, note: str | None = None) -> int:
    """Store an edited schema (a Schema, YAML text or a YAML file path) as the next
    schema version of ``name``."""
    return catalog.save_schema(workspace(), name, _schema(schema), note=note)


def verify(name: str | None = None) -> catalog.VerifyReport:
    return catalog.verify(workspace(), name)


def profile(table: Any) -> Profile:
    """The profile of a table, or of a dataset given by reference."""
    return _as_profile(table)


def validate(
    table: Any,
    schema: Schema | Dataset | str,
    *,
    checks: Sequence[Check | pl.Expr] = (),
    reference: Profile | Dataset | str | None = None,
) -> ValidationReport:
    """Anomalies of ``table`` against ``schema``: a Schema, a dataset (its schema), a
    dataset reference such as ``"flights:1"``, or a YAML file path. With ``reference``
    (a training profile or dataset) distribution skew is reported too."""
    ref_profile = None if reference is None else _as_profile(reference)
    return validate_mod.validate(
        as_table(table), _schema(schema), checks=checks, reference=ref_profile
    )


def drift(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    method: Method | Mapping[str, Method] | None = None,
    threshold: float | Mapping[str, float] | None = None,
) -> DriftReport:
    """Per-column drift of ``current`` against ``reference``: datasets, references such as
    ``"flights:1"``, tables or profiles. Stored datasets are compared by their profiles."""
    return drift_mod.drift(
        _as_profile(reference),
        _as_profile(current),
        columns=columns,
        method=method,
        threshold=threshold,
    )


_TABLE_SUFFIXES = {".parquet", ".pq", ".csv", ".tsv", ".arrow", ".feather", ".ipc"}


def as_table(x: Any) -> Any:
    """A table from a Dataset, a file/folder/URL, a dataset reference, or a table as is."""
    if isinstance(x, Dataset):
        return x.to_polars()
    if isinstance(x, str | os.PathLike):
        text = os.fspath(x)
        if os.path.exists(text) or "://" in text:
            return read_table(x)
        if os.sep in text or os.path.splitext(text)[1] in _TABLE_SUFFIXES:
            # Dataset names have no slashes or file suffixes: this was meant as a path.
            raise NotFoundError(f"no file or folder at {text!r}")
        return catalog.get(workspace(), text).to_polars()
    return x


def _as_profile(x: Any) -> Profile:
    if isinstance(x, Profile):
        return x
    if isinstance(x, Dataset):
        return x.profile
    if isinstance(x, str):
        return catalog.get(workspace(), x).profile
    return _profile(x)


def _schema(x: Schema | Dataset | str) -> Schema:
    if isinstance(x, Schema):
        return x
    if isinstance(x, Dataset):
        s = x.schema
        if s is None:
            raise InvalidInputError(f"dataset {x.ref} has no schema")
        return s
    if isinstance(x, str):
        if "\n" in x:
            return Schema.from_yaml(x)
        if x.endswith((".yaml", ".yml")):
            try:
                with open(x, encoding="utf-8") as f:
                    return Schema.from_yaml(f.read())
            except OSError as exc:
                raise InvalidInputError(f"cannot read schema file {x!r}: {exc}") from None
        ds = catalog.get(workspace(), x)
        return _schema(ds)
    raise InvalidInputError(
        f"schema must be a Schema, a dataset, a dataset reference or a YAML path, not "
        f"{type(x).__name__}"
    )
