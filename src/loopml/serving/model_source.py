"""The one place serving touches ``loopml.registry``: resolve, load, predict, watch aliases.

Everything else in the package sees :class:`ServedModel` and :class:`ModelSource`, so a
change in the registry's API is absorbed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import InvalidInputError
from loopml.registry.artifact import example_table
from loopml.registry.flavors.base import ModelInput
from loopml.registry.loaded import LoadedModel
from loopml.registry.model_registry import Registry
from loopml.registry.promotion import promote
from loopml.registry.signature import FLOAT_TYPES, INT_TYPES, Signature
from loopml.serving.errors import SignatureMismatchError
from loopml.serving.json_columns import RowReader
from loopml.store.workspace import Workspace


@dataclass(frozen=True)
class Prediction:
    """Model outputs for a batch: labels (or values) and, for classifiers, probabilities."""

    labels: np.ndarray
    proba: np.ndarray | None

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])

    def slice(self, start: int, stop: int) -> Prediction:
        return Prediction(
            self.labels[start:stop], None if self.proba is None else self.proba[start:stop]
        )


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: ``name@alias`` follows the alias, ``name:3`` is pinned."""

    text: str
    name: str
    alias: str | None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if not isinstance(text, str) or not text or text.count("@") + text.count(":") > 1:
            raise InvalidInputError(
                f"{text!r} is not a model reference; use 'name', 'name:3' or 'name@alias'"
            )
        if "@" in text:
            name, alias = text.split("@", 1)
            return cls(text, name, alias)
        return cls(text, text.split(":", 1)[0], None)


class ServedModel:
    """One loaded model version and what the protocol needs to describe it."""

    def __init__(
        self,
        loaded: LoadedModel,
        name: str,
        version: int,
        ref: str,
        *,
        artifact_id: str | None = None,
    ) -> None:
        self._loaded = loaded
        self.name = name
        self.version = version
        self.ref = ref
        self.digest = loaded.digest or ""
        # The model version's artifact in the lineage graph: prediction logs link to it.
        self.artifact_id = artifact_id
        self.flavor = loaded.flavor.name
        self._labels_from_proba = _labels_are_argmax(loaded)
        self._plans: dict[pa.Schema, _ConformPlan] = {}
        self.input_schema = plain_schema(loaded.signature)
        self.row_reader = None if self.input_schema is None else RowReader(self.input_schema)
        self._value_checks = _ValueChecks(loaded.signature)

    def __repr__(self) -> str:
        return f"ServedModel({self.name}:{self.version} via {self.ref})"

    @property
    def signature(self) -> Signature:
        return self._loaded.signature

    @property
    def columns(self) -> list[str]:
        return self._loaded.signature.columns

    def column_type(self, name: str) -> str:
        return self._loaded.signature.column(name).type

    @property
    def output_type(self) -> str:
        return self._loaded.signature.output.type

    @property
    def classes(self) -> list[Any] | None:
        return self._loaded.classes

    @property
    def has_proba(self) -> bool:
        return self._loaded.has_proba

    def check(self, table: pa.Table) -> pa.Table:
        """The table conformed to the signature; refuses missing, extra or mistyped columns,
        infinities, and missing values (null, NaN) where the signature has none."""
        conformed = self._conform(table)
        self._value_checks.apply(conformed)
        return conformed

    def _conform(self, table: pa.Table) -> pa.Table:
        schema = self.input_schema
        if schema is not None and table.num_rows and table.schema.equals(schema):
            return table  # already the signature's columns and types: prepare would keep it
        expected = set(self.columns)
        extra = [c for c in table.column_names if c not in expected]
        if extra:
            shown = ", ".join(repr(c[:80]) for c in extra[:10])
            raise SignatureMismatchError(
                f"input has column(s) the model does not take: {shown}; "
                f"model {self.name}:{self.version} takes {self.columns}"
            )
        if table.num_rows == 0:
            raise SignatureMismatchError("input has no rows; send at least one row")
        plan = self._plans.get(table.schema)
        if plan is not None:
            conformed = plan.apply(table)
            if conformed is not None:
                return conformed
        try:
            conformed = self._loaded.signature.prepare(table, what="input")
        except InvalidInputError as exc:
            raise SignatureMismatchError(str(exc)) from None
        if plan is None and len(self._plans) < MAX_PLANS:
            derived = _ConformPlan.derive(table.schema, conformed.schema)
            if derived is not None:
                self._plans[table.schema] = derived
        return conformed

    def predict(self, table: pa.Table) -> Prediction:
        """Predict a checked table (the output of :meth:`check`, possibly concatenated)."""
        # LoadedModel's prepared path: the table is already conformed, and predict()
        # would run Signature.prepare over the whole batch a second time.
        loaded = self._loaded
        data = ModelInput(table, loaded.signature)
        if self._labels_from_proba:
            # One model call instead of two: for these estimators predict() is exactly
            # classes_[argmax(predict_proba())], and each call has a large fixed cost.
            scores = np.asarray(loaded.predict_proba_prepared(data))
            classes = np.asarray(self.classes)
            return Prediction(classes[np.argmax(scores, axis=1)], scores)
        labels = np.asarray(loaded.predict_prepared(data))
        proba = None
        if self.has_proba:
            raw = loaded.predict_proba_prepared(data)
            proba = None if raw is None else np.asarray(raw)
        return Prediction(labels, proba)

    def example(self) -> pa.Table | None:
        try:
            return example_table(self._loaded)
        except InvalidInputError:
            return None


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
            raise SignatureMismatchError(
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
            raise SignatureMismatchError(
                f"column {self.name!r} row {row} holds {text}; the model takes finite "
                f"numbers{missing} in this column"
            )


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    # Nulls become NaN here; a nullable column allows both, others were refused before.
    return np.asarray(column.to_numpy())


class _ValueChecks:
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
            raise SignatureMismatchError("the input holds missing or non-finite values")


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
class _ConformPlan:
    """What Signature.prepare did to tables of one input schema, to replay per request.

    prepare picks, orders and casts columns by their types alone, and its casts are
    Arrow's safe casts; so for a schema seen before, the same safe casts give the same
    table at a fraction of the cost (clients send one schema over and over). A value a
    safe cast refuses falls back to prepare, which explains the problem."""

    indices: tuple[int, ...]
    casts: tuple[pa.DataType | None, ...]
    schema: pa.Schema

    @classmethod
    def derive(cls, source: pa.Schema, target: pa.Schema) -> _ConformPlan | None:
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


def _labels_are_argmax(loaded: LoadedModel) -> bool:
    if not loaded.has_proba or not loaded.classes or loaded.flavor.name != "sklearn":
        return False
    native = loaded.native
    final = native.steps[-1][1] if hasattr(native, "steps") else native
    return type(final).__name__ in _ARGMAX_CLASSIFIERS


def limit_native_threads(threads: int) -> None:
    """Cap OpenMP/BLAS threads for the calling thread's model calls.

    Libraries size their thread pools for big inputs; on the small batches a server sees
    the fork/join cost dominates (about 1 ms per boosting iteration for gradient boosting).
    One thread per model call, with requests batched, is faster and leaves cores for HTTP.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


class ModelSource:
    """The registry of one workspace, seen from a server."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._registry = Registry(workspace)

    def resolve_version(self, ref: str) -> tuple[str, int]:
        """(name, version) ``ref`` points to now; raises NotFoundError if it points nowhere."""
        mv = self._registry.resolve(ref)
        return mv.name, mv.version

    def loop_canary(self, ref: str) -> tuple[str, float] | None:
        """(loop, percent) of the retraining loop that moves ``ref``'s alias, or None."""
        # Imported here: a server without a canary never needs the loop's records.
        from loopml.retraining.records import canary_share

        return canary_share(self.workspace, ref)

    def load(self, ref: str) -> ServedModel:
        """Load the version ``ref`` points to, from verified bytes."""
        name, version = self.resolve_version(ref)
        return self.load_version(name, version, ref)

    def load_version(self, name: str, version: int, ref: str) -> ServedModel:
        # Load by number: if the alias moves meanwhile, the version reported is still right.
        mv = self._registry.get_version(name, version)
        loaded = self._registry.load(mv.ref)
        return ServedModel(loaded, name, version, ref, artifact_id=mv.artifact_id)

    def versions(self, name: str) -> list[int]:
        return [v.version for v in self._registry.versions(name)]

    def packages(self, name: str, version: int) -> dict[str, str]:
        """Package versions the model was saved with (``python`` included)."""
        mv = self._registry.get_version(name, version)
        return dict(self._registry.metadata(mv).packages)

    def export(self, ref: str, target: Workspace, alias: str) -> tuple[str, int, int]:
        """Copy the version ``ref`` names into ``target`` and point ``alias`` at it.

        Returns (name, version here, version there). The copy is re-saved from verified
        bytes and tagged with its origin, so the bundled model is traceable.
        """
        name, version = self.resolve_version(ref)
        mv = self._registry.get_version(name, version)
        loaded = self._registry.load(mv.ref)
        copied = Registry(target).register(
            name,
            loaded,
            description=mv.description,
            tags={**mv.tags, "exported_from": mv.ref, "exported_digest": mv.digest},
        )
        promote(target, name, copied.version, alias, reason=f"bundled copy of {mv.ref}")
        return name, version, copied.version
