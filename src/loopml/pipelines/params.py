"""Pipeline parameters as stored, and back: JSON, with catalog datasets by reference.

A stored run must be rebuildable (resume, the scheduler), so parameters are JSON values
or dataset versions from the catalog, written as ``{"$dataset": "flights:3", ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopml.core.errors import InvalidInputError
from loopml.pipelines.cache_key import canonical_json
from loopml.store.workspace import Workspace

DATASET_KEY = "$dataset"


def encode(params: Mapping[str, Any], *, pipeline: str) -> dict[str, Any]:
    from loopml.data.dataset import Dataset

    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, Dataset):
            out[name] = {DATASET_KEY: value.ref, "digest": value.digest}
        else:
            canonical_json(value, what=f"parameter {name!r} of pipeline {pipeline}")
            out[name] = value
    return out


def decode(ws: Workspace, stored: Mapping[str, Any]) -> dict[str, Any]:
    from loopml.data.catalog import Catalog

    out: dict[str, Any] = {}
    for name, value in stored.items():
        if isinstance(value, dict) and DATASET_KEY in value:
            ds_name, _, version = str(value[DATASET_KEY]).partition(":")
            if not version.isdigit():
                raise InvalidInputError(f"stored parameter {name!r} names no dataset version")
            out[name] = Catalog(ws).get(ds_name, int(version))
        else:
            out[name] = value
    return out


def as_text(value: Any) -> str:
    """How a parameter is shown in a tracking run's params."""
    from loopml.data.dataset import Dataset

    if isinstance(value, Dataset):
        return value.ref
    if isinstance(value, str):
        return value
    return canonical_json(value, what="parameter")
