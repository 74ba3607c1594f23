"""Turning whatever table a caller hands over into one Arrow table.

Models accept pandas and polars DataFrames, Arrow tables and record batches, and 2-D
NumPy arrays; everything below this module sees a ``pyarrow.Table``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from loopml.core.errors import InvalidInputError

ACCEPTED = "a pandas or polars DataFrame, a pyarrow Table or RecordBatch, or a 2-D NumPy array"


def array_column_names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def to_arrow(data: Any, *, what: str = "input") -> pa.Table:
    """Convert without copying where the library allows it."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("polars") and hasattr(data, "to_arrow"):
        return data.to_arrow()
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            try:
                return pa.Table.from_pandas(data, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InvalidInputError(
                    f"{what}: a pandas column holds values of mixed or unsupported types "
                    f"({exc}); give each column one type"
                ) from None
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise InvalidInputError(
                f"{what} is a {data.ndim}-D array; models take 2-D arrays (rows x features)"
            )
        names = array_column_names(data.shape[1])
        return pa.table({n: pa.array(data[:, i]) for i, n in enumerate(names)})
    raise InvalidInputError(f"{what} must be {ACCEPTED}, not {type(data).__name__}")


def is_array(data: Any) -> bool:
    return isinstance(data, np.ndarray)


def head(table: pa.Table, n: int) -> pa.Table:
    return table.slice(0, min(n, table.num_rows))
