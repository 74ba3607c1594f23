"""What a model takes and returns, inferred from its training data, and enforced at predict.

A signature lists the input columns in training order with their types (and, for
categorical columns, the categories seen in training), and what the model outputs. Every
``predict`` goes through :meth:`Signature.prepare`, which reorders columns, applies only
lossless casts, and refuses missing columns or incompatible types with a message naming
each offending column. The package versions a model was saved with travel with it;
loading warns when the installed ones differ.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import InvalidInputError
from loopml.registry import table as tables

InputFormat = Literal["table", "array"]
Task = Literal["classification", "regression", "other"]

INT_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
FLOAT_TYPES = ("float32", "float64")
ANY = "any"
COLUMN_TYPES = (*INT_TYPES, *FLOAT_TYPES, "bool", "string", "category", "datetime", ANY)
BASE_PACKAGES = ("numpy", "pandas", "pyarrow", "loopml")


class ModelEnvironmentWarning(UserWarning):
    """A model was saved with package versions other than the installed ones."""


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    nullable: bool = True
    categories: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnSpec:
        cats = d.get("categories")
        col_type = str(d["type"])
        if col_type not in COLUMN_TYPES:
            raise InvalidInputError(
                f"column {d.get('name')!r} has unknown type {col_type!r}; "
                f"known: {', '.join(COLUMN_TYPES)}"
            )
        return cls(
            str(d["name"]),
            col_type,
            bool(d.get("nullable", True)),
            None if cats is None else tuple(cats),
        )


@dataclass(frozen=True)
class OutputSpec:
    task: Task
    type: str
    classes: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task, "type": self.type}
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputSpec:
        classes = d.get("classes")
        return cls(d["task"], str(d["type"]), None if classes is None else tuple(classes))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[ColumnSpec, ...]
    output: OutputSpec
    input_format: InputFormat = "table"
    _by_name: dict[str, ColumnSpec] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        self._by_name.update({c.name: c for c in self.inputs})

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.inputs]

    def column(self, name: str) -> ColumnSpec:
        return self._by_name[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_format": self.input_format,
            "inputs": [c.to_dict() for c in self.inputs],
            "output": self.output.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signature:
        try:
            return cls(
                tuple(ColumnSpec.from_dict(c) for c in d["inputs"]),
                OutputSpec.from_dict(d["output"]),
                d.get("input_format", "table"),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"malformed model signature: missing {exc}") from None

    # enforcement ------------------------------------------------------------------
    def prepare(self, data: Any, *, what: str = "input") -> pa.Table:
        """The input as an Arrow table with exactly the signature's columns and types."""
        if tables.is_array(data) and self.input_format == "table":
            raise InvalidInputError(
                f"{what} is a NumPy array but the model was trained on a table with columns "
                f"{_preview(self.columns)}; pass a DataFrame with those columns"
            )
        tbl = tables.to_arrow(data, what=what)
        if tables.is_array(data) and tbl.num_columns != len(self.inputs):
            raise InvalidInputError(
                f"{what} has {tbl.num_columns} columns but the model takes {len(self.inputs)}"
            )
        missing = [c for c in self.columns if c not in tbl.column_names]
        if missing:
            raise InvalidInputError(
                f"{what} is missing column(s) {_preview(missing)} that the model was trained "
                f"with; it has {_preview(tbl.column_names)}. Add the missing columns"
            )
        problems: list[str] = []
        out: list[pa.ChunkedArray] = []
        for spec in self.inputs:
            col = tbl.column(spec.name)
            try:
                out.append(_conform(col, spec))
            except _TypeMismatch as exc:
                problems.append(str(exc))
        if problems:
            raise InvalidInputError(
                f"{what} has columns of the wrong type: {'; '.join(problems)}. "
                "Cast them to the types the model was trained with"
            )
        return pa.Table.from_arrays(out, names=self.columns)

    def incompatibilities(self, other: Signature) -> list[str]:
        """Why input that fits ``other`` may not fit this signature (empty if it does)."""
        problems = []
        for spec in self.inputs:
            theirs = other._by_name.get(spec.name)
            if theirs is None:
                problems.append(f"column {spec.name!r} is new (the other model does not take it)")
            elif not _convertible(theirs.type, spec.type):
                problems.append(
                    f"column {spec.name!r} is {spec.type} here but {theirs.type} in the other"
                )
        if self.output.task != other.output.task:
            problems.append(f"task is {self.output.task}, the other's is {other.output.task}")
        elif self.output.classes is not None and self.output.classes != other.output.classes:
            problems.append(
                f"classes are {list(self.output.classes)}, the other's are "
                f"{list(other.output.classes or ())}"
            )
        return problems


class _TypeMismatch(Exception):
    pass


def _preview(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = len(names) - limit
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"


def arrow_type_name(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        name = str(t)
        return (
            "float32"
            if name == "halffloat"
            else {"float": "float32", "double": "float64"}.get(name, name)
        )
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_dictionary(t):
        return "category"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "datetime"
    if pa.types.is_null(t):
        return ANY
    raise InvalidInputError(f"columns of type {t} are not supported as model inputs")


def _kind(type_name: str) -> str:
    if type_name in INT_TYPES:
        return "int"
    if type_name in FLOAT_TYPES:
        return "float"
    if type_name in ("string", "category"):
        return "text"
    return type_name


def _convertible(src: str, dst: str) -> bool:
    if ANY in (src, dst) or src == dst:
        return True
    s, d = _kind(src), _kind(dst)
    return s == d or (s, d) in {("int", "float"), ("float", "int")}


def _conform(col: pa.ChunkedArray, spec: ColumnSpec) -> pa.ChunkedArray:
    actual = arrow_type_name(col.type)
    if spec.type == ANY or actual == ANY:
        return col
    if not _convertible(actual, spec.type):
        raise _TypeMismatch(f"{spec.name!r} is {actual}, the model expects {spec.type}")
    kind = _kind(spec.type)
    try:
        if kind in ("int", "float"):
            # Arrow's safe cast refuses truncation and overflow: 1.5 never becomes 1.
            return pc.cast(col, pa.from_numpy_dtype(np.dtype(spec.type)), safe=True)
        if kind == "text":
            return pc.cast(col, pa.string()) if actual == "category" else col
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _TypeMismatch(
            f"{spec.name!r} is {actual} and cannot be converted to {spec.type} without "
            f"losing values ({exc})"
        ) from None
    return col


# inference ----------------------------------------------------------------------------
def _categories(data: Any, name: str, col: pa.ChunkedArray) -> tuple[Any, ...]:
    # pandas knows the category order the model was fitted with; keep it.
    if type(data).__module__.startswith("pandas"):
        return tuple(_plain(v) for v in data[name].cat.categories)
    combined = col.combine_chunks()
    if isinstance(combined, pa.DictionaryArray):
        return tuple(_plain(v) for v in combined.dictionary.to_pylist())
    return tuple(sorted(_plain(v) for v in pc.unique(combined).to_pylist() if v is not None))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def infer_inputs(data: Any) -> tuple[tuple[ColumnSpec, ...], InputFormat]:
    tbl = tables.to_arrow(data, what="training data")
    if tbl.num_columns == 0:
        raise InvalidInputError("training data has no columns")
    specs = []
    for name in tbl.column_names:
        col = tbl.column(name)
        type_name = arrow_type_name(col.type)
        cats = _categories(data, name, col) if type_name == "category" else None
        specs.append(ColumnSpec(name, type_name, col.null_count > 0, cats))
    return tuple(specs), ("array" if tables.is_array(data) else "table")


def infer_output(
    task: Task, predictions: Any | None, classes: Iterable[Any] | None = None
) -> OutputSpec:
    out_type = ANY
    if predictions is not None:
        arr = np.asarray(predictions)
        out_type = arr.dtype.name if arr.dtype.kind in "biuf" else "string"
    return OutputSpec(
        task, out_type, None if classes is None else tuple(_plain(c) for c in classes)
    )


# package versions ---------------------------------------------------------------------
def package_versions(packages: Iterable[str]) -> dict[str, str]:
    out = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in (*BASE_PACKAGES, *packages):
        found = _installed_version(name)
        if found is not None:
            out[name] = found
    return out


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    # The same module can ship under another distribution's name: `xgboost-cpu` installs
    # the `xgboost` module, and the model needs that module's version whichever it was.
    for dist in _module_providers().get(name.replace("-", "_"), ()):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def _module_providers() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def check_versions(saved: Mapping[str, str], relevant: Iterable[str], *, what: str) -> list[str]:
    """Warn (and return the messages) for each relevant package whose version differs."""
    installed = package_versions(relevant)
    messages = []
    for name in ("python", *relevant):
        want, have = saved.get(name), installed.get(name)
        if name == "python" and want and have:
            # Patch releases do not change how models load or predict.
            want, have = ".".join(want.split(".")[:2]), ".".join(have.split(".")[:2])
        if want is not None and want != have:
            messages.append(
                f"{what} was saved with {name} {want}, but {have or 'no version'} is installed; "
                f"loading may fail or predictions may differ. Install {name}=={want} or "
                "re-train and register a new version"
            )
    for message in messages:
        warnings.warn(message, ModelEnvironmentWarning, stacklevel=3)
    return messages
