"""Turning whatever table a user hands us into Polars, with clear errors for the rest."""

from __future__ import annotations

from typing import Any

import polars as pl

from loopml.core.errors import InvalidInputError

TableLike = Any  # pl.DataFrame | pl.LazyFrame | pd.DataFrame | pa.Table | pa.RecordBatch


def to_polars(table: TableLike, *, what: str = "table") -> pl.DataFrame:
    """An eager Polars frame for any supported table type; no copy where avoidable."""
    if isinstance(table, pl.DataFrame):
        df = table
    elif isinstance(table, pl.LazyFrame):
        df = table.collect()
    else:
        df = _from_foreign(table, what)
    check_columns(df.columns, what)
    return df


def _from_foreign(table: Any, what: str) -> pl.DataFrame:
    module = type(table).__module__.split(".")[0]
    if module == "pandas":
        import pandas as pd

        if not isinstance(table, pd.DataFrame):
            raise InvalidInputError(f"{what} is a pandas {type(table).__name__}, not a DataFrame")
        names = list(table.columns)
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise InvalidInputError(
                f"{what} has non-string column names {bad[:5]!r}; rename them to strings"
            )
        check_columns(names, what)
        # A default RangeIndex carries no data; any other index is kept as columns.
        keep_index = not isinstance(table.index, pd.RangeIndex)
        try:
            return pl.from_pandas(table, include_index=keep_index)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise InvalidInputError(f"cannot convert {what} from pandas: {exc}") from None
    if module == "pyarrow":
        import pyarrow as pa

        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if not isinstance(table, pa.Table):
            raise InvalidInputError(f"{what} is a pyarrow {type(table).__name__}, not a Table")
        check_columns(table.column_names, what)
        try:
            out = pl.from_arrow(table)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise InvalidInputError(f"cannot convert {what} from Arrow: {exc}") from None
        assert isinstance(out, pl.DataFrame)
        return out
    raise InvalidInputError(
        f"{what} must be a polars, pandas or Arrow table, not {type(table).__name__}"
    )


def check_columns(names: list[str], what: str) -> None:
    if not names:
        raise InvalidInputError(f"{what} has no columns")
    seen: set[str] = set()
    dups = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dups:
        raise InvalidInputError(f"{what} has duplicate column names {dups}; make them unique")
    empty = [n for n in names if not n]
    if empty:
        raise InvalidInputError(f"{what} has a column with an empty name; name every column")
