"""What a step may return, decided from its return annotation before anything runs.

``Dataset`` and ``Model`` are ``Annotated`` aliases, so ``-> lm.Dataset`` type-checks as
a Polars DataFrame and ``-> lm.Model`` as any model object, while the marker inside tells
loopml how to store the value: tables as Parquet, models as model artifacts, plain
values as JSON.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import polars as pl

from loopml.core.errors import InvalidInputError

OutputKind = Literal["table", "model", "json", "dataset", "none", "auto"]
STORED_KINDS: tuple[str, ...] = ("table", "model", "json", "dataset")


@dataclass(frozen=True)
class Kind:
    """The marker inside ``Annotated[...]`` naming how a value is stored."""

    kind: OutputKind


Dataset = Annotated[pl.DataFrame, Kind("table")]
Model = Annotated[Any, Kind("model")]

_JSON_TYPES: tuple[Any, ...] = (
    dict,
    list,
    tuple,
    str,
    int,
    float,
    bool,
    type(None),
    collections.abc.Mapping,
    collections.abc.Sequence,
)


def _table_types() -> dict[Any, str]:
    # pandas and pyarrow are dependencies anyway; imported here, not at module import.
    import pandas as pd
    import pyarrow as pa

    return {pl.DataFrame: "polars", pd.DataFrame: "pandas", pa.Table: "arrow"}


def _catalog_dataset_type() -> type:
    from loopml.data.dataset import Dataset as CatalogDataset

    return CatalogDataset


def kind_of_annotation(annotation: Any, *, where: str) -> OutputKind:
    """The storage kind a return annotation asks for; raise for one loopml cannot store."""
    if annotation is None or annotation is type(None):
        return "none"
    if annotation is Any or annotation is typing.Any or annotation is object:
        return "auto"
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, Kind):
                return meta.kind
        return kind_of_annotation(annotation.__origin__, where=where)
    if origin in (typing.Union, types.UnionType):
        kinds = {kind_of_annotation(a, where=where) for a in typing.get_args(annotation)}
        kinds.discard("none")
        if len(kinds) == 1:
            return kinds.pop()
        return "auto"
    base = origin or annotation
    if base in _table_types():
        return "table"
    if base is _catalog_dataset_type():
        return "dataset"
    if base in _JSON_TYPES:
        return "json"
    name = getattr(annotation, "__name__", repr(annotation))
    raise InvalidInputError(
        f"{where} is annotated to return {name}, which loopml cannot store. A step returns "
        "a table (-> lm.Dataset, a Polars/pandas DataFrame or Arrow table), a model "
        "(-> lm.Model) or a JSON value (dict, list, str, int, float, bool); return one of "
        "those, or annotate -> Any to decide from the value"
    )


def kind_of_value(value: Any) -> OutputKind | None:
    """The storage kind for a returned value when the annotation left it open."""
    if value is None:
        return "none"
    if type(value) in _table_types():
        return "table"
    if isinstance(value, _catalog_dataset_type()):
        return "dataset"
    if isinstance(value, dict | list | tuple | str | int | float | bool):
        return "json"
    from loopml.registry import flavors
    from loopml.registry.loaded import LoadedModel

    if isinstance(value, LoadedModel):
        return "model"
    try:
        flavors.detect(value)
    except InvalidInputError:
        return None
    return "model"


def table_flavor(annotation: Any) -> str | None:
    """Which table library a step parameter wants: polars, pandas or arrow (or None)."""
    if typing.get_origin(annotation) is Annotated:
        annotation = annotation.__origin__
    return _table_types().get(annotation)


def accepts(annotation: Any, kind: str) -> bool:
    """Whether a parameter annotated ``annotation`` can take an upstream output of ``kind``;
    lenient (unannotated or Any accepts everything) and only strict where it is certain."""
    if annotation is None or annotation is Any or annotation is object:
        return True
    try:
        wanted = kind_of_annotation(annotation, where="parameter")
    except InvalidInputError:
        return True
    if wanted == "auto":
        return True
    if wanted in ("table", "dataset"):
        return kind in ("table", "dataset", "auto")
    if kind == "auto":
        return True
    return wanted == kind
