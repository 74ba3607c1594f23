"""Open Inference Protocol tensors <-> Arrow tables, checked against a model's signature.

Both transports decode into :class:`InputTensor` (flattened elements plus shape and
datatype), so REST JSON, Triton's binary extension and gRPC raw contents share one set of
checks. A request is either one tensor per signature column (shape ``[n]`` or ``[n, 1]``)
or one ``[n, columns]`` tensor whose columns follow the signature's order.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.serving.errors import BadRequestError, PayloadTooLargeError, SignatureMismatchError
from loopml.serving.model_source import Prediction, ServedModel

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"

COLUMN_DATATYPE = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float32": "FP32",
    "float64": "FP64",
    "string": "BYTES",
    "category": "BYTES",
    "datetime": "BYTES",
    "any": "BYTES",
}
NUMPY_DTYPE = {
    "BOOL": np.dtype("bool"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*NUMPY_DTYPE, "BYTES")
_INTEGER = {k for k in NUMPY_DTYPE if k.startswith(("INT", "UINT"))}
_FLOAT = {"FP16", "FP32", "FP64"}


@dataclass(frozen=True)
class InputTensor:
    """One decoded input: ``values`` holds the elements flattened in row-major order."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: list[Any] | np.ndarray

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray

    def json_data(self) -> list[Any]:
        flat = self.values.reshape(-1)
        if self.datatype == "BYTES":
            return [None if v is None else str(v) for v in flat.tolist()]
        return list(flat.tolist())


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


# decoding --------------------------------------------------------------------------------
def check_header(name: object, datatype: object, shape: object) -> tuple[str, str, tuple[int, ...]]:
    if not isinstance(name, str) or not name:
        raise BadRequestError("every input tensor needs a non-empty string 'name'")
    label = _label(name)
    if datatype not in DATATYPES:
        raise BadRequestError(
            f"input {label} has datatype {str(datatype)[:40]!r}; use one of {', '.join(DATATYPES)}"
        )
    if not isinstance(shape, list | tuple) or not shape or len(shape) > 8:
        raise BadRequestError(f"input {label} needs a 'shape': a list of 1 to 8 integers")
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise BadRequestError(f"input {label} has shape {list(shape)[:8]}; dimensions are >= 0")
        dims.append(int(d))
    return name, str(datatype), tuple(dims)


def from_json(
    name: object, datatype: object, shape: object, data: object, *, max_elements: int
) -> InputTensor:
    """A tensor given as JSON ``data`` (flat or nested lists)."""
    name_, dtype, dims = check_header(name, datatype, shape)
    count = element_count(name_, dims, max_elements)
    flat = _flatten(name_, data, dims, max_elements)
    if len(flat) != count:
        raise BadRequestError(
            f"input {_label(name_)} has shape {list(dims)} ({count} elements) but its data "
            f"holds {len(flat)} elements"
        )
    return InputTensor(name_, dtype, dims, flat)


def from_raw(
    name: object, datatype: object, shape: object, raw: bytes, *, max_elements: int
) -> InputTensor:
    """A tensor given as raw little-endian bytes (gRPC raw contents, Triton binary data)."""
    name_, dtype, dims = check_header(name, datatype, shape)
    count = element_count(name_, dims, max_elements)
    if dtype == "BYTES":
        values: list[Any] | np.ndarray = _split_bytes(name_, raw, count)
    else:
        np_dtype = NUMPY_DTYPE[dtype]
        if len(raw) != count * np_dtype.itemsize:
            raise BadRequestError(
                f"input {_label(name_)}: {len(raw)} raw bytes, but shape {list(dims)} of "
                f"{dtype} needs {count * np_dtype.itemsize}"
            )
        values = np.frombuffer(raw, dtype=np_dtype)
    return InputTensor(name_, dtype, dims, values)


def element_count(name: str, dims: tuple[int, ...], max_elements: int) -> int:
    count = math.prod(dims)
    if count > max_elements:
        raise PayloadTooLargeError(
            f"input {_label(name)} has {count} elements; this server takes at most "
            f"{max_elements} per tensor. Split the request"
        )
    return count


def _flatten(name: str, data: object, dims: tuple[int, ...], limit: int) -> list[Any]:
    """The elements of flat ``data``, or of nested ``data`` whose nesting is ``dims``.

    Nested lists must have exactly the shape's lengths at every level: a ragged array
    whose total happens to match (``[[1, 2, 3], [4]]`` for ``[2, 2]``) is refused."""
    if not isinstance(data, list):
        raise BadRequestError(f"input {_label(name)} needs 'data': a JSON array of elements")
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    # Iterative, so a deeply nested hostile payload cannot exhaust the stack.
    stack: list[tuple[list[Any], int, int]] = [(data, 0, 0)]
    while stack:
        items, i, depth = stack.pop()
        if i == 0 and (depth >= len(dims) or len(items) != dims[depth]):
            raise BadRequestError(
                f"input {_label(name)}: nested data does not have shape {list(dims)}; send "
                "lists of exactly those lengths, or the elements flat"
            )
        leaf_level = depth == len(dims) - 1
        while i < len(items):
            v = items[i]
            i += 1
            if isinstance(v, list) == leaf_level:
                raise BadRequestError(
                    f"input {_label(name)}: nested data does not have shape {list(dims)}; "
                    "every element must sit at the same depth"
                )
            if not leaf_level:
                stack.append((items, i, depth))
                stack.append((v, 0, depth + 1))
                break
            out.append(v)
            if len(out) > limit:
                raise PayloadTooLargeError(f"input {_label(name)} has too many elements")
    return out


def _split_bytes(name: str, raw: bytes, count: int) -> list[Any]:
    out: list[Any] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(raw):
            raise BadRequestError(f"input {_label(name)}: raw BYTES contents end early")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise BadRequestError(f"input {_label(name)}: raw BYTES element overruns its data")
        out.append(raw[pos : pos + size])
        pos += size
    if pos != len(raw):
        raise BadRequestError(f"input {_label(name)}: raw BYTES contents have trailing bytes")
    return out


def to_table(tensors: Sequence[InputTensor], model: ServedModel, *, max_rows: int) -> pa.Table:
    """The request's rows as a table named after the model's columns (not yet conformed)."""
    if not tensors:
        raise BadRequestError("the request has no inputs; send one tensor per column")
    columns = model.columns
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise BadRequestError(f"input tensor(s) {[_label(n) for n in dupes]} given twice")
    if len(tensors) == 1 and len(tensors[0].shape) == 2 and tensors[0].name not in columns:
        return _matrix_table(tensors[0], model, max_rows)
    missing = [c for c in columns if c not in names]
    extra = [n for n in names if n not in columns]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing[:20]}")
        if extra:
            parts.append(f"unknown input(s) {[_label(n) for n in extra[:20]]}")
        raise SignatureMismatchError(
            f"{'; '.join(parts)}: model {model.name}:{model.version} takes one tensor per "
            f"column {columns}, or a single [rows, {len(columns)}] tensor"
        )
    rows = tensors[0].rows
    arrays = {}
    for t in tensors:
        if len(t.shape) > 2 or (len(t.shape) == 2 and t.shape[1] != 1):
            raise SignatureMismatchError(
                f"input {_label(t.name)} has shape {list(t.shape)}; a column tensor is [rows] "
                "or [rows, 1]"
            )
        if t.rows != rows:
            raise SignatureMismatchError(
                f"inputs disagree on the number of rows: {_label(tensors[0].name)} has {rows}, "
                f"{_label(t.name)} has {t.rows}"
            )
        arrays[t.name] = _column(t.name, t.datatype, t.values, model.column_type(t.name))
    _check_rows(rows, max_rows)
    return pa.table({c: arrays[c] for c in columns})


def _matrix_table(t: InputTensor, model: ServedModel, max_rows: int) -> pa.Table:
    rows, width = t.shape
    columns = model.columns
    if width != len(columns):
        raise SignatureMismatchError(
            f"input {_label(t.name)} has shape {[rows, width]}, but model "
            f"{model.name}:{model.version} takes {len(columns)} columns {columns}"
        )
    _check_rows(rows, max_rows)
    data = {}
    for j, col in enumerate(columns):
        values = t.values[j::width] if width > 1 else t.values
        data[col] = _column(f"{t.name}[:, {j}] ({col})", t.datatype, values, model.column_type(col))
    return pa.table(data)


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise SignatureMismatchError("the request has no rows; send at least one")
    if rows > max_rows:
        raise PayloadTooLargeError(
            f"the request has {rows} rows; this server takes at most {max_rows} per request. "
            "Split it, or score files with `loopml predict`"
        )


def _column(name: str, datatype: str, values: list[Any] | np.ndarray, col_type: str) -> pa.Array:
    label = _label(name)
    try:
        if isinstance(values, np.ndarray):
            arr = pa.array(values.astype(np.float32) if datatype == "FP16" else values)
        elif datatype == "BYTES":
            arr = _bytes_column(label, values)
        else:
            arr = _json_column(label, datatype, values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as exc:
        raise SignatureMismatchError(
            f"input {label} does not hold valid {datatype} values: {str(exc)[:200]}"
        ) from None
    if col_type == "datetime" and pa.types.is_string(arr.type):
        try:
            arr = pc.cast(arr, pa.timestamp("us"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise SignatureMismatchError(
                f"input {label} must hold ISO-8601 timestamps such as '2013-01-01T05:00:00'"
            ) from None
    return arr


def _bytes_column(label: str, values: list[Any] | np.ndarray) -> pa.Array:
    out: list[str | None] = []
    for v in values:
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise SignatureMismatchError(
                    f"input {label} holds bytes that are not UTF-8"
                ) from None
        elif v is not None and not isinstance(v, str):
            raise SignatureMismatchError(
                f"input {label} is BYTES but holds a {type(v).__name__}; send strings"
            )
        out.append(v)
    return pa.array(out, type=pa.string())


def _json_column(label: str, datatype: str, values: list[Any] | np.ndarray) -> pa.Array:
    # Let Arrow infer first, then cast safely: 1.5 never silently becomes 1, "1" never 1.
    arr = pa.array(values)
    t = arr.type
    ok = (
        pa.types.is_null(t)
        or (datatype == "BOOL" and pa.types.is_boolean(t))
        or (datatype in _INTEGER and pa.types.is_integer(t))
        or (datatype in _FLOAT and (pa.types.is_integer(t) or pa.types.is_floating(t)))
    )
    if not ok:
        raise SignatureMismatchError(f"input {label} is {datatype} but holds {t} values")
    target = pa.float32() if datatype == "FP16" else pa.from_numpy_dtype(NUMPY_DTYPE[datatype])
    return pc.cast(arr, target, safe=True)


# encoding --------------------------------------------------------------------------------
def outputs(
    model: ServedModel, prediction: Prediction, requested: Sequence[str] | None = None
) -> list[OutputTensor]:
    available = {spec.name for spec in output_specs(model)}
    wanted = list(requested) if requested else sorted(available, key=_output_order)
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise BadRequestError(
            f"unknown output(s) {[_label(n) for n in unknown]}; this model has {sorted(available)}"
        )
    out = []
    for name in wanted:
        if name == PREDICT:
            labels = _typed_labels(model, prediction.labels)
            out.append(OutputTensor(PREDICT, _datatype_of(labels), labels.shape, labels))
        elif prediction.proba is not None:
            proba = np.asarray(prediction.proba, dtype=np.float64)
            out.append(OutputTensor(PREDICT_PROBA, "FP64", proba.shape, proba))
    return out


def _output_order(name: str) -> int:
    return 0 if name == PREDICT else 1


def _typed_labels(model: ServedModel, labels: np.ndarray) -> np.ndarray:
    declared = model.output_type
    if declared in COLUMN_DATATYPE and COLUMN_DATATYPE[declared] != "BYTES":
        try:
            return labels.astype(np.dtype(declared), copy=False)
        except (TypeError, ValueError):
            return labels
    return labels


def _datatype_of(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind in "biuf":
        name = values.dtype.name
        return COLUMN_DATATYPE.get(name, "FP64")
    return "BYTES"


def input_specs(model: ServedModel) -> list[TensorSpec]:
    return [TensorSpec(c, COLUMN_DATATYPE[model.column_type(c)], (-1,)) for c in model.columns]


def output_specs(model: ServedModel) -> list[TensorSpec]:
    declared = COLUMN_DATATYPE.get(model.output_type, "BYTES")
    specs = [TensorSpec(PREDICT, declared, (-1,))]
    if model.has_proba:
        n = len(model.classes or ()) or -1
        specs.append(TensorSpec(PREDICT_PROBA, "FP64", (-1, n)))
    return specs


def raw_bytes(t: OutputTensor) -> bytes:
    """Little-endian contents for gRPC raw outputs and Triton's binary extension."""
    if t.datatype == "BYTES":
        parts = []
        for v in t.values.reshape(-1).tolist():
            b = str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(t.values, dtype=NUMPY_DTYPE[t.datatype]).tobytes()


def _label(name: str) -> str:
    # Names come from clients: quote and cut them so a hostile one cannot flood a message.
    return repr(name[:80] + ("…" if len(name) > 80 else ""))
