"""The row fast path never answers differently from the general path it stands in for."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from loopml.core.errors import InvalidInputError
from loopml.registry.conform import plain_schema
from loopml.registry.signature import ColumnSpec, OutputSpec, Signature
from loopml.serving import invocations
from loopml.serving.json_columns import RowReader

TYPES = ["int64", "int8", "uint8", "float64", "float32", "bool", "string", "category"]
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "small ints": st.integers(-300, 300),
    "any ints": st.integers(-(2**70), 2**70),
    "floats": st.floats(allow_nan=True, allow_infinity=True),
    "whole floats": st.integers(-1000, 1000).map(float),
    "bools": st.booleans(),
    "text": st.text(max_size=3),
    "nulls": st.none(),
}
MIXES = [st.one_of(s, st.none()) for s in VALUES.values()] + [
    st.one_of(*VALUES.values()),
    st.one_of(VALUES["small ints"], VALUES["floats"]),
    st.one_of(VALUES["small ints"], VALUES["bools"]),
]


def signature(types: list[str]) -> Signature:
    columns = tuple(ColumnSpec(f"c{i}", t) for i, t in enumerate(types))
    return Signature(columns, OutputSpec("regression", "float64"))


def general(sig: Signature, rows: list[list[Any]]) -> pa.Table | None:
    """What the server does without the fast path: infer per column, then conform."""
    columns = dict(zip(sig.columns, map(list, zip(*rows, strict=True)), strict=True))
    try:
        return sig.prepare(invocations._columns(columns))
    except InvalidInputError:  # SignatureMismatchError is one too
        return None


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[str], list[list[Any]]]:
    types = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=4))
    kinds = [draw(st.sampled_from([*VALUES.values(), *MIXES])) for _ in types]
    n = draw(st.integers(1, 5))
    rows = [[draw(kind) for kind in kinds] for _ in range(n)]
    return types, rows


@settings(max_examples=400, deadline=None)
@given(requests())
@example((["int64"], [[1.5]]))  # Arrow's typed conversion would truncate it to 1
@example((["float64"], [[True]]))  # and take it as 1.0
@example((["int64"], [[True], [2]]))
@example((["float64"], [[2**53 + 1]]))  # not exactly a float64
@example((["int8"], [[300]]))
@example((["uint8"], [[-1]]))
@example((["string"], [[1]]))
@example((["int64"], [["1"]]))
@example((["float64", "string"], [[None, None]]))
def test_fast_path_agrees_with_the_general_path(request: tuple[list[str], list[list[Any]]]) -> None:
    types, rows = request
    sig = signature(types)
    schema = plain_schema(sig)
    assert schema is not None
    fast = RowReader(schema).read(rows)
    if fast is None:
        return  # the server takes the general path: nothing to compare
    slow = general(sig, rows)
    assert slow is not None, f"the fast path took rows the general path refuses: {rows}"
    assert fast.schema.equals(schema)
    # A column of nulls only: the general path leaves it null-typed, the fast path types it.
    slow = slow.cast(schema)
    # repr: NaN equals NaN, and -0.0 differs from 0.0.
    assert repr(fast.to_pylist()) == repr(slow.to_pylist())


def test_plain_rows_take_the_fast_path() -> None:
    sig = signature(["int64", "int8", "float64", "float32", "bool", "string", "category"])
    schema = plain_schema(sig)
    assert schema is not None
    rows = [[1, -3, 0.5, 2, True, "JFK", "B6"], [None, 4, None, 1.25, False, None, "UA"]]
    fast = RowReader(schema).read(rows)
    assert fast is not None
    assert fast.to_pylist() == [
        {"c0": 1, "c1": -3, "c2": 0.5, "c3": 2.0, "c4": True, "c5": "JFK", "c6": "B6"},
        {"c0": None, "c1": 4, "c2": None, "c3": 1.25, "c4": False, "c5": None, "c6": "UA"},
    ]


@pytest.mark.parametrize("type_", ["datetime", "any"])
def test_columns_of_several_arrow_types_have_no_plain_schema(type_: str) -> None:
    assert plain_schema(signature(["int64", type_])) is None


def test_a_reader_refuses_column_types_it_cannot_check() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        RowReader(pa.schema([("a", pa.int64()), ("t", pa.timestamp("us"))]))
