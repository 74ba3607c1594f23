"""scikit-learn estimators and pipelines, stored with joblib.

joblib files are pickles: they run code when loaded. They are only ever loaded from a
workspace artifact whose every byte was verified against the digest recorded at
registration (see :mod:`loopml.registry.artifact`), never from a path a caller names.
"""

from __future__ import annotations

import copy
import logging
import threading
import types
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import InvalidInputError
from loopml.registry.flavors.base import Description, ModelInput, json_params

FILE = "model.joblib"
log = logging.getLogger("loopml.registry")


class SklearnFlavor:
    name: str = "sklearn"
    packages: tuple[str, ...] = ("scikit-learn", "joblib")
    # The same fitted estimator saves to the same bytes (joblib's zlib stream has no
    # timestamp); the pickle differs across scikit-learn, NumPy or Python versions, and
    # an estimator fitted with random_state=None differs from fit to fit.
    determinism: str = (
        "a joblib pickle: the same bytes for the same fitted estimator and versions, other "
        "bytes under another scikit-learn, NumPy or Python version"
    )

    def handles(self, model: object) -> bool:
        return hasattr(model, "predict") and any(
            c.__module__.startswith("sklearn.") for c in type(model).__mro__
        )

    def save(
        self, model: Any, directory: Path, example: ModelInput | None = None
    ) -> dict[str, Any]:
        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, directory / FILE, compress=3)
        return {"file": FILE, "class": f"{type(model).__module__}.{type(model).__qualname__}"}

    def load(self, directory: Path, info: Mapping[str, Any]) -> Any:
        import joblib

        return joblib.load(directory / str(info["file"]))

    def describe(self, model: Any) -> Description:
        from sklearn.base import is_classifier, is_regressor
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(model)
        except NotFittedError:
            raise InvalidInputError(
                f"the {type(model).__name__} is not fitted; call fit() before saving it"
            ) from None

        if is_classifier(model) and hasattr(model, "classes_"):
            return Description("classification", tuple(model.classes_), _params(model))
        if is_regressor(model):
            return Description("regression", None, _params(model))
        return Description("other", None, _params(model))

    def predict(self, model: Any, data: ModelInput, info: Mapping[str, Any]) -> np.ndarray:
        fast = _fast_twin(model, data)
        if fast is not None:
            return np.asarray(fast.predict(data))
        plain = _array_twin(model, data)
        if plain is not None:
            return np.asarray(plain.predict(plain.matrix(data)))
        return np.asarray(model.predict(data.native()))

    def predict_proba(
        self, model: Any, data: ModelInput, info: Mapping[str, Any]
    ) -> np.ndarray | None:
        if not hasattr(model, "predict_proba"):
            return None
        fast = _fast_twin(model, data)
        if fast is not None:
            return np.asarray(fast.predict_proba(data))
        plain = _array_twin(model, data)
        if plain is not None:
            return np.asarray(plain.predict_proba(plain.matrix(data)))
        return np.asarray(model.predict_proba(data.native()))


def _params(model: Any) -> dict[str, Any]:
    try:
        return json_params(model.get_params(deep=True))
    except Exception:  # a third-party estimator with a broken get_params: no params shown
        return {}


# Fast path for HistGradientBoosting with categorical features ------------------------------
# Such a model encodes its input with a fitted ColumnTransformer (an OrdinalEncoder on the
# categorical columns, a float conversion of the others). On a DataFrame that costs ~5 ms
# a call whatever the row count: most of a small batch's time. ``_ReplayEncoding`` gives
# the model the same float matrix straight from the Arrow table. It relies on private
# scikit-learn attributes, so it is only used when the fitted encoder has exactly the
# expected shape, and only after its first answer matched the regular path exactly;
# anything else (another version, another layout, an odd column) takes the regular path.

_twins: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_twins_lock = threading.Lock()
_UNSET = object()


def _fast_twin(model: Any, data: ModelInput) -> Any | None:
    twin = _twins.get(model, _UNSET) if _is_hgb(model) else None
    if twin is _UNSET:
        with _twins_lock:
            twin = _twins.get(model, _UNSET)
            if twin is _UNSET:
                twin = _make_twin(model, data)
                if twin is not _UNSET:  # decided; else try again on the next batch
                    _twins[model] = twin
    if twin is None or twin is _UNSET:
        return None
    if not twin._preprocessor.accepts(data):
        return None
    return twin


# Fast path for estimators on numeric columns ----------------------------------------------
# An estimator fitted on a DataFrame checks every input's column names and dtypes through
# pandas: for a LogisticRegression on a few rows that is ~90% of a call. Its twin is a
# shallow copy without the recorded names, given the float matrix in the fitted column
# order straight from the Arrow table -- the same numbers the DataFrame path hands the
# estimator after its checks. Like the encoding twin above, it is used only after its
# first answers matched the regular path's exactly, and only on all-numeric input with
# no missing values; anything else takes the regular path.

_array_twins: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _array_twin(model: Any, data: ModelInput) -> _ArrayTwin | None:
    twin = _array_twins.get(model, _UNSET)
    if twin is _UNSET:
        with _twins_lock:
            twin = _array_twins.get(model, _UNSET)
            if twin is _UNSET:
                twin = _ArrayTwin.make(model, data)
                if twin is not _UNSET:
                    _array_twins[model] = twin
    if twin is None or twin is _UNSET or not twin.accepts(data):
        return None
    return twin


class _ArrayTwin:
    def __init__(self, model: Any, names: list[str]) -> None:
        twin = copy.copy(model)
        for key, value in list(vars(twin).items()):
            if isinstance(value, types.MethodType) and value.__self__ is model:
                setattr(twin, key, types.MethodType(value.__func__, twin))
        del twin.feature_names_in_
        self._twin = twin
        self.names = names
        self.predict: Any = twin.predict
        self.predict_proba: Any = getattr(twin, "predict_proba", None)

    @classmethod
    def make(cls, model: Any, data: ModelInput) -> Any:
        """A twin, None where it cannot apply, or _UNSET to decide on a later batch."""
        names = getattr(model, "feature_names_in_", None)
        if names is None or hasattr(model, "steps") or hasattr(model, "transformers"):
            return None  # pipelines and column transformers select columns by name
        if not type(model).__module__.startswith("sklearn."):
            return None  # a subclass may read its input by column name
        twin = cls(model, [str(n) for n in names])
        if not twin.accepts(data):
            return _UNSET
        try:
            native = data.native()
            expected = [model.predict(native)]
            if twin.predict_proba is not None:
                expected.append(model.predict_proba(native))
        except Exception:  # the regular path decides, and explains, on such input
            return _UNSET
        try:
            matrix = twin.matrix(data)
            got = [twin.predict(matrix)]
            if twin.predict_proba is not None:
                got.append(twin.predict_proba(matrix))
            agrees = all(_same(a, b) for a, b in zip(got, expected, strict=True))
        except Exception:
            agrees = False
        if not agrees:
            log.warning("the array input path of %s disagrees with scikit-learn's; not used", model)
            return None
        return twin

    def accepts(self, data: ModelInput) -> bool:
        table = data.table
        if table.num_columns != len(self.names) or data.signature.input_format == "array":
            return False
        for name in self.names:
            index = table.schema.get_field_index(name)
            if index < 0:
                return False
            column = table.column(index)
            if not _plain_number(column.type) or column.null_count:
                return False
        return True

    def matrix(self, data: ModelInput) -> np.ndarray:
        # Column-major, as NumPy gets it from a DataFrame of separate columns: BLAS sums
        # in another order over a row-major matrix, and the last bit of a score differs.
        table = data.table
        columns = [table.column(n).to_numpy() for n in self.names]
        out = np.empty((table.num_rows, len(columns)), dtype=np.result_type(*columns), order="F")
        for k, column in enumerate(columns):
            out[:, k] = column
        return out


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _is_hgb(model: Any) -> bool:
    return type(model).__name__ in (
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    )


def _make_twin(model: Any, data: ModelInput) -> Any | None:
    try:
        replay = _ReplayEncoding(model)
    except _NotApplicable:
        return None
    twin = copy.copy(model)
    # A fitted model may hold methods bound to itself (scikit-learn keeps _raw_predict so);
    # bound to the original, they would bypass the twin's encoding.
    for key, value in list(vars(twin).items()):
        if isinstance(value, types.MethodType) and value.__self__ is model:
            setattr(twin, key, types.MethodType(value.__func__, twin))
    twin._preprocessor = replay
    if not replay.accepts(data):
        return _UNSET
    try:
        expected = model._raw_predict(data.native())
        agrees = np.array_equal(twin._raw_predict(data), expected, equal_nan=True)
    except Exception:  # the regular path decides, and explains, on such input
        return _UNSET
    if not agrees:
        log.warning("the fast input path of %s disagrees with scikit-learn's; not used", model)
        return None
    return twin


class _NotApplicable(Exception):
    pass


class _ReplayEncoding:
    def __init__(self, model: Any) -> None:
        pre = getattr(model, "_preprocessor", None)
        names = getattr(model, "feature_names_in_", None)
        if pre is None or names is None or type(pre).__name__ != "ColumnTransformer":
            raise _NotApplicable
        steps = [t for t in pre.transformers_ if t[0] != "remainder"]
        if len(steps) != 2 or [t[0] for t in steps] != ["encoder", "numerical"]:
            raise _NotApplicable
        (_, encoder, cat_mask), (_, numeric, num_mask) = steps
        if (
            type(encoder).__name__ != "OrdinalEncoder"
            or type(numeric).__name__ != "FunctionTransformer"
            or encoder.handle_unknown != "use_encoded_value"
            or not _is_nan(encoder.unknown_value)
            or not _is_nan(encoder.encoded_missing_value)
            or np.dtype(encoder.dtype) != np.float64
            or getattr(pre, "sparse_output_", False)
        ):
            raise _NotApplicable
        cat_mask, num_mask = np.asarray(cat_mask), np.asarray(num_mask)
        if cat_mask.dtype != bool or not np.array_equal(cat_mask, ~num_mask):
            raise _NotApplicable
        self.categorical = [str(n) for n in np.asarray(names)[cat_mask]]
        self.numeric = [str(n) for n in np.asarray(names)[num_mask]]
        self.categories: list[tuple[str, ...]] = []
        for cats in encoder.categories_:
            values = list(cats)
            if values and (values[-1] is None or _is_nan(values[-1])):
                values.pop()  # missing values seen in training: they still encode as NaN
            if not all(isinstance(v, str) for v in values):
                raise _NotApplicable
            self.categories.append(tuple(values))
        self._lookups: dict[tuple[tuple[Any, ...], tuple[str, ...]], np.ndarray] = {}
        self._value_sets = [pa.array(c, pa.string()) for c in self.categories]

    def accepts(self, data: ModelInput) -> bool:
        schema = data.table.schema
        specs = {s.name: s for s in data.signature.inputs}
        for name in self.categorical:
            spec = specs.get(name)
            index = schema.get_field_index(name)
            if spec is None or spec.type != "category" or index < 0:
                return False
            if not pa.types.is_string(schema.field(index).type):
                return False
        for name in self.numeric:
            spec = specs.get(name)
            index = schema.get_field_index(name)
            if spec is None or spec.type == "category" or index < 0:
                return False
            if not _plain_number(schema.field(index).type):
                return False
        return True

    def transform(self, data: ModelInput) -> np.ndarray:
        table = data.table
        out = np.empty((table.num_rows, len(self.categorical) + len(self.numeric)))
        specs = {s.name: s for s in data.signature.inputs}
        for k, name in enumerate(self.categorical):
            lookup = self._lookup(k, tuple(specs[name].categories or ()))
            index = pc.fill_null(pc.index_in(table.column(name), value_set=self._value_sets[k]), -1)
            out[:, k] = lookup[index.to_numpy()]
        offset = len(self.categorical)
        for k, name in enumerate(self.numeric):
            out[:, offset + k] = table.column(name).to_numpy()
        return out

    def _lookup(self, k: int, allowed: tuple[Any, ...]) -> np.ndarray:
        """Code per encoder category (index -1, the last entry, is "not found": NaN).

        As in ModelInput.pandas, a value outside the signature's categories is missing."""
        key = (allowed, self.categories[k])
        lookup = self._lookups.get(key)
        if lookup is None:
            keep = set(allowed)
            codes = [float(i) if c in keep else np.nan for i, c in enumerate(self.categories[k])]
            lookup = np.array([*codes, np.nan], dtype=np.float64)
            self._lookups[key] = lookup
        return lookup


def _plain_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value
