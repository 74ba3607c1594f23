"""Conforming request tables to a model's signature, fast, and refusing what it cannot take.

A server conforms each request once and predicts batches of them
(:meth:`loopml.registry.loaded.LoadedModel.conform` and ``predict_conformed``). Clients
send one schema over and over, so what :meth:`Signature.prepare` did to a schema is
replayed (:class:`ConformPlan`); missing and non-finite values are refused naming their
column and row (:class:`ValueChecks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import InvalidInputError
from loopml.registry.signature import FLOAT_TYPES, INT_TYPES, Signature

if TYPE_CHECKING:
    from loopml.registry.loaded import LoadedModel

MAX_PLANS = 64


@dataclass(frozen=True)
class _ValueCheck:
    """What one column of a conformed table may not hold.

    A model trained without missing values in a column fails (or worse, answers) on one;
    an infinity no model handles. Both are the client's mistake: a 422 naming the column
    and row, never a 500 from inside the model. A column trained with missing values
    takes null and NaN (which is how NumPy spells missing), not infinities."""

    index: int
    name: str
    is_float: bool
    nullable: bool

    def explain(self, table: pa.Table) -> None:
        """Raise for the first bad value of this column, if it holds one."""
        column = table.column(self.index)
        if column.null_count and not self.nullable:
            row = pc.index(pc.is_null(column), True).as_py()
            raise InvalidInputError(
                f"column {self.name!r} row {row} is missing (null); the model was trained "
                "without missing values in this column. Send a value"
            )
        if not self.is_float:
            return
        values = _floats(column)
        bad = np.isinf(values) if self.nullable else ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            text = "NaN" if np.isnan(values[row]) else str(values[row]).replace("inf", "Infinity")
            missing = "" if self.nullable else " or missing values"
            raise InvalidInputError(
                f"column {self.name!r} row {row} holds {text}; the model takes finite "
                f"numbers{missing} in this column"
            )


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    # Nulls become NaN here; a nullable column allows both, others were refused before.
    return np.asarray(column.to_numpy())


class ValueChecks:
    """Every column's check, done in one pass on the request path (one NumPy call over
    all float columns); the column-by-column search runs only to explain a failure."""

    def __init__(self, signature: Signature) -> None:
        self.checks: list[_ValueCheck] = []
        for i, spec in enumerate(signature.inputs):
            is_float = spec.type in FLOAT_TYPES
            if is_float or not spec.nullable:
                self.checks.append(_ValueCheck(i, spec.name, is_float, spec.nullable))
        self._not_null = [c.index for c in self.checks if not c.nullable]
        self._finite = [c.index for c in self.checks if c.is_float and not c.nullable]
        self._no_inf = [c.index for c in self.checks if c.is_float and c.nullable]

    def apply(self, table: pa.Table) -> None:
        clean = not any(table.column(i).null_count for i in self._not_null)
        if clean and self._finite:
            clean = bool(np.isfinite(_stacked(table, self._finite)).all())
        if clean and self._no_inf:
            clean = not np.isinf(_stacked(table, self._no_inf)).any()
        if not clean:
            for check in self.checks:
                check.explain(table)
            raise InvalidInputError("the input holds missing or non-finite values")


def _stacked(table: pa.Table, indices: list[int]) -> np.ndarray:
    parts = [_floats(table.column(i)) for i in indices]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def plain_schema(signature: Signature) -> pa.Schema | None:
    """The types Signature.prepare gives columns that already fit, if each has one.

    Input in exactly these types passes prepare unchanged. Columns typed ``datetime``
    or ``any`` accept several Arrow types, so a model with one has no such schema."""
    fields = []
    for spec in signature.inputs:
        if spec.type in INT_TYPES or spec.type in FLOAT_TYPES:
            t = pa.from_numpy_dtype(np.dtype(spec.type))
        elif spec.type in ("string", "category"):
            t = pa.string()
        elif spec.type == "bool":
            t = pa.bool_()
        else:
            return None
        fields.append(pa.field(spec.name, t))
    return pa.schema(fields)


@dataclass(frozen=True)
class ConformPlan:
    """What Signature.prepare did to tables of one input schema, to replay per request.

    prepare picks, orders and casts columns by their types alone, and its casts are
    Arrow's safe casts; so for a schema seen before, the same safe casts give the same
    table at a fraction of the cost (clients send one schema over and over). A value a
    safe cast refuses falls back to prepare, which explains the problem."""

    indices: tuple[int, ...]
    casts: tuple[pa.DataType | None, ...]
    schema: pa.Schema

    @classmethod
    def derive(cls, source: pa.Schema, target: pa.Schema) -> ConformPlan | None:
        indices = tuple(source.get_field_index(name) for name in target.names)
        if -1 in indices:  # a duplicated or unknown name: leave it to prepare every time
            return None
        casts = tuple(
            None if source.field(i).type == field.type else field.type
            for i, field in zip(indices, target, strict=True)
        )
        return cls(indices, casts, target)

    def apply(self, table: pa.Table) -> pa.Table | None:
        columns = []
        for index, cast in zip(self.indices, self.casts, strict=True):
            column = table.column(index)
            if cast is not None:
                try:
                    column = pc.cast(column, cast, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return None
            columns.append(column)
        return pa.Table.from_arrays(columns, schema=self.schema)


# scikit-learn classifiers whose predict() is defined as the argmax of predict_proba().
_ARGMAX_CLASSIFIERS = frozenset(
    {
        "HistGradientBoostingClassifier",
        "GradientBoostingClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
    }
)


def labels_are_argmax(loaded: LoadedModel) -> bool:
    if not loaded.has_proba or not loaded.classes or loaded.flavor.name != "sklearn":
        return False
    native = loaded.native
    final = native.steps[-1][1] if hasattr(native, "steps") else native
    return type(final).__name__ in _ARGMAX_CLASSIFIERS
