"""``lm.datasets.add/get``, ``lm.validate``, ``lm.drift`` on the configured workspace.

Each catalog function is ``Catalog``'s method of the same name on the configured
workspace (``lm.datasets.catalog()`` gives the catalog itself). Wherever a dataset is
expected, a ``DatasetVersion``, a reference string (``"flights"``,
``"flights:3"``) or, for validation and drift, a table or profile may be given.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import polars as pl

from loopml.api.fluent import remote_catalog, workspace
from loopml.core.errors import InvalidInputError, NotFoundError
from loopml.data import drift as drift_mod
from loopml.data import validate as validate_mod
from loopml.data.catalog import Catalog as Catalog
from loopml.data.catalog import ContentAlreadyStoredWarning as ContentAlreadyStoredWarning
from loopml.data.dataset import DatasetInfo as DatasetInfo
from loopml.data.dataset import DatasetVersion as DatasetVersion
from loopml.data.drift import DriftReport, Method
from loopml.data.profile import Profile
from loopml.data.profile import profile as _profile
from loopml.data.schema import Check, Schema
from loopml.data.sources import read_table
from loopml.data.validate import ValidationReport

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _bind(method: Callable[Concatenate[Catalog, _P], _R]) -> Callable[_P, _R]:
    """``method`` on the catalog of the configured workspace, with its signature and
    docstring."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(Catalog(workspace()), *args, **kwargs)

    signature = inspect.signature(method)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return call


def catalog() -> Catalog:
    """The catalog of the configured workspace."""
    return Catalog(workspace())


_REMOTE_ADD = {"description", "owner", "tags", "column_descriptions", "schema", "csv_options"}


def _or_remote(local: Callable[_P, _R], method: str, allowed: set[str]) -> Callable[_P, _R]:
    """``local``, or in remote mode the server catalog's ``method`` with the arguments it
    takes (the others say they need the stores)."""

    @functools.wraps(local)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        remote = remote_catalog()
        if remote is None:
            return local(*args, **kwargs)
        extra = sorted(k for k, v in kwargs.items() if k not in allowed and v is not None)
        if extra:
            raise InvalidInputError(
                f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not available in "
                "remote mode (LOOPML_URI is set)"
            )
        result: _R = getattr(remote, method)(*args, **kwargs)
        return result

    return call


add = _or_remote(_bind(Catalog.add), "add", _REMOTE_ADD)
append = _or_remote(_bind(Catalog.append), "append", {"description", "csv_options"})
get = _or_remote(_bind(Catalog.get), "get", set())
versions = _or_remote(_bind(Catalog.versions), "versions", set())
list_datasets = _or_remote(_bind(Catalog.list_datasets), "list_datasets", set())
info = _or_remote(_bind(Catalog.info), "info", set())
search = _or_remote(_bind(Catalog.search), "search", {"tag", "column"})
update = _or_remote(
    _bind(Catalog.update), "update", {"description", "owner", "tags", "column_descriptions"}
)
schema = _or_remote(_bind(Catalog.get_schema), "get_schema", set())
schema_versions = _or_remote(_bind(Catalog.schema_versions), "schema_versions", set())
verify = _or_remote(_bind(Catalog.verify), "verify", {"all_artifacts"})


def save_schema(name: str, schema: Schema | str, *, note: str | None = None) -> int:
    """Store an edited schema (a Schema, YAML text or a YAML file path) as the next
    schema version of ``name``."""
    remote = remote_catalog()
    if remote is not None:
        return remote.save_schema(name, _schema(schema), note=note)
    return Catalog(workspace()).save_schema(name, _schema(schema), note=note)


def profile(table: Any) -> Profile:
    """The profile of a table, or of a dataset given by reference."""
    return _as_profile(table)


def validate(
    table: Any,
    schema: Schema | DatasetVersion | str,
    *,
    checks: Sequence[Check | pl.Expr] = (),
    reference: Profile | DatasetVersion | str | None = None,
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
    if isinstance(x, DatasetVersion):
        return x.to_polars()
    if isinstance(x, str | os.PathLike):
        text = os.fspath(x)
        if os.path.exists(text) or "://" in text:
            return read_table(x)
        if os.sep in text or os.path.splitext(text)[1] in _TABLE_SUFFIXES:
            # Dataset names have no slashes or file suffixes: this was meant as a path.
            raise NotFoundError(f"no file or folder at {text!r}")
        return get(text).to_polars()
    return x


def _as_profile(x: Any) -> Profile:
    if isinstance(x, Profile):
        return x
    if isinstance(x, DatasetVersion):
        return x.profile
    if isinstance(x, str):
        return get(x).profile
    return _profile(x)


def _schema(x: Schema | DatasetVersion | str) -> Schema:
    if isinstance(x, Schema):
        return x
    if isinstance(x, DatasetVersion):
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
        return _schema(get(x))
    raise InvalidInputError(
        f"schema must be a Schema, a dataset, a dataset reference or a YAML path, not "
        f"{type(x).__name__}"
    )
