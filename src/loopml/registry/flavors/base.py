"""What every flavor provides: detect, save, load, predict on a prepared table, describe.

A flavor never sees a raw user table: :class:`ModelInput` holds the Arrow table the
signature already checked, and hands it over in the form the library wants.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.registry.signature import Signature, Task


@dataclass(frozen=True)
class ModelInput:
    """A validated input batch, convertible to what each library eats."""

    table: pa.Table
    signature: Signature

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def pandas(self) -> Any:
        import pandas as pd

        # Column by column rather than Table.to_pandas(): for the small batches a server
        # sees, to_pandas' fixed cost dominates, and numeric columns convert without a copy.
        specs = {spec.name: spec for spec in self.signature.inputs}
        columns: dict[str, Any] = {}
        for name, col in zip(self.table.column_names, self.table.columns, strict=True):
            spec = specs.get(name)
            if spec is not None and spec.type == "category":
                columns[name] = _categorical(col, tuple(spec.categories or ()))
            elif col.null_count == 0 and (
                pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
            ):
                columns[name] = col.to_numpy()
            else:
                columns[name] = col.to_pandas()
        return pd.DataFrame(columns, index=pd.RangeIndex(self.table.num_rows), copy=False)

    def numpy(self, dtype: Any = None) -> np.ndarray:
        columns = [self.table.column(i).to_numpy() for i in range(self.table.num_columns)]
        return np.column_stack(columns).astype(dtype) if dtype else np.column_stack(columns)

    def native(self) -> Any:
        """The form the model was trained on: a DataFrame, or an array for array models."""
        return self.numpy() if self.signature.input_format == "array" else self.pandas()


def _categorical(col: pa.ChunkedArray, categories: tuple[Any, ...]) -> Any:
    """The column coded against the training categories, in the training order.

    Same categories, same order as in training: codes mean the same thing. A value never
    seen in training is missing (code -1), as the model saw nothing like it."""
    import pandas as pd

    value_set, dtype = _category_plan(categories)
    if value_set is not None:
        try:
            codes = pc.fill_null(pc.index_in(col, value_set=value_set), -1)
            return pd.Categorical.from_codes(codes.to_numpy().astype(np.int32), dtype=dtype)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    # Values Arrow cannot match against the categories (mixed or exotic types): pandas
    # decides membership, as it did in training.
    values = col.to_pandas()
    return pd.Categorical(values.where(values.isin(list(categories))), dtype=dtype)


@functools.lru_cache(maxsize=256)
def _category_plan(categories: tuple[Any, ...]) -> tuple[pa.Array | None, Any]:
    """Built once per model column: the lookup array and the pandas dtype."""
    import pandas as pd

    dtype = pd.CategoricalDtype(list(categories))
    try:
        value_set: pa.Array | None = pa.array(list(categories))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        value_set = None
    return value_set, dtype


@dataclass(frozen=True)
class Description:
    task: Task
    classes: tuple[Any, ...] | None
    params: dict[str, Any] = field(default_factory=dict)


class Flavor(Protocol):
    """One model library. ``packages`` are the distributions whose versions matter."""

    name: str
    packages: tuple[str, ...]

    def handles(self, model: object) -> bool: ...

    def save(
        self, model: Any, directory: Path, example: ModelInput | None = None
    ) -> dict[str, Any]:
        """Write the model under ``directory``; return what ``load`` needs (JSON-able).

        ``example`` is a validated sample of the training input, for libraries that trace
        the model to save it."""
        ...

    def load(self, directory: Path, info: Mapping[str, Any]) -> Any: ...

    def describe(self, model: Any) -> Description: ...

    def predict(self, model: Any, data: ModelInput, info: Mapping[str, Any]) -> np.ndarray: ...

    def predict_proba(
        self, model: Any, data: ModelInput, info: Mapping[str, Any]
    ) -> np.ndarray | None:
        """Class probabilities, or None when the model has none."""
        ...


def module_of(model: object) -> str:
    """The top-level package a model's class comes from, without importing anything."""
    return type(model).__module__.split(".")[0]


def json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Hyper-parameters reduced to what JSON and a model card can show."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value
        elif isinstance(value, np.generic):
            out[key] = value.item()
        elif isinstance(value, list | tuple) and all(
            isinstance(v, bool | int | float | str) for v in value
        ):
            out[key] = list(value)
        else:
            out[key] = type(value).__name__ if hasattr(value, "get_params") else repr(value)[:200]
    return out
