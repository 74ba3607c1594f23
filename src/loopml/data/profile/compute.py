"""Computing a profile: two vectorised Polars passes over the table.

The first pass computes every scalar statistic of every column in one query (Polars runs
the expressions in parallel), one struct per column; the second turns values into
histogram bin indices and HyperLogLog codes, which NumPy counts. Each column's results
travel in one ``_Column`` record from pass to pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import polars as pl

from loopml.core.errors import InvalidInputError
from loopml.data import hll, stable_hash
from loopml.data.histogram import Histogram, _n_bins, bin_of, choose_exponent
from loopml.data.profile.model import (
    MAX_CATEGORIES,
    TOP_K,
    ColumnProfile,
    Frequencies,
    Kind,
    Lengths,
    NumericStats,
    Profile,
    TemporalRange,
)
from loopml.data.tables import TableLike, to_polars

EXACT_DISTINCT_ROWS = 2_000_000  # exact n_unique below this many rows, HyperLogLog above


def column_kind(dtype: pl.DataType) -> Kind:
    if dtype.is_numeric():
        return "numeric"
    if dtype == pl.Boolean or dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        return "categorical"
    if dtype.is_temporal():
        return "temporal"
    return "other"


@dataclass
class _Column:
    """One column's work in progress: what the passes found, keyed by statistic name."""

    index: int
    name: str
    dtype: pl.DataType
    kind: Kind
    stats: dict[str, Any] = field(default_factory=dict)
    bins: tuple[int, int, int] | None = None  # (exponent, offset, n_bins) of its histogram
    bin_indices: np.ndarray | None = None
    hll_codes: np.ndarray | None = None
    hll_min_rank: int = 1
    sketch: bool = True  # count distinct values (exactly, or with a HyperLogLog sketch)

    @property
    def key(self) -> str:
        return f"c{self.index}"  # a name no user column can clash with inside one query

    @property
    def has_values(self) -> bool:
        return self.kind in ("numeric", "temporal")

    @property
    def needs_hll(self) -> bool:
        if not self.sketch:
            return False
        if self.has_values:
            return bool(self.stats["count"])
        if self.kind == "categorical":
            return len(self.stats["vc"]) > MAX_CATEGORIES
        return False


def profile(table: TableLike, *, distinct: bool = True) -> Profile:
    """Profile a polars/pandas/Arrow table.

    ``distinct=False`` leaves out distinct counts and their sketches (numeric and
    temporal columns, and categorical ones beyond ``MAX_CATEGORIES`` values), the costliest
    part, for callers that only compare distributions (drift, monitoring); everything
    else is the same as with them."""
    df = to_polars(table)
    cols = [
        _Column(i, name, dtype, column_kind(dtype), sketch=distinct)
        for i, (name, dtype) in enumerate(df.schema.items())
    ]
    _first_pass(df, cols)
    for c in cols:
        c.bins = _bin_plan(c)
    _second_pass(df, cols)
    return Profile(df.height, {c.name: _column_profile(df, c) for c in cols})


def _values(c: _Column) -> pl.Expr:
    """The column as float64 with NaN and infinities nulled, for moments and histograms."""
    col = pl.col(c.name)
    if c.kind == "temporal":
        return col.to_physical().cast(pl.Float64)
    if c.dtype.is_float():
        return pl.when(col.is_finite()).then(col).cast(pl.Float64)
    return col.cast(pl.Float64)


def _as_text(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        return col.cast(pl.String).str.to_lowercase()
    return col.cast(pl.String)


def _statistics(c: _Column, height: int) -> list[pl.Expr]:
    col = pl.col(c.name)
    exprs = [col.null_count().alias("nulls")]
    if c.has_values:
        v = _values(c)
        exprs += [
            v.count().alias("count"),
            v.mean().alias("mean"),
            v.std().alias("std"),
            v.min().alias("min"),
            v.max().alias("max"),
        ]
        if c.dtype.is_float():
            exprs += [
                col.is_nan().sum().alias("nan"),
                col.is_infinite().sum().alias("inf"),
                (col == 0.0).sum().alias("zeros"),
            ]
        if c.kind == "temporal":
            physical = col.to_physical().cast(pl.Int64)
            exprs += [
                col.min().alias("tmin"),
                col.max().alias("tmax"),
                physical.min().alias("pmin"),
                physical.max().alias("pmax"),
            ]
        if c.sketch and height >= hll.FILTER_ROWS:
            exprs.append(col.approx_n_unique().alias("approx"))
        if c.sketch and height <= EXACT_DISTINCT_ROWS and c.dtype.is_integer():
            # Exact counts matter for spotting ID columns; floats get HyperLogLog only.
            exprs.append(col.drop_nulls().n_unique().alias("distinct"))
    elif c.kind == "categorical":
        text = _as_text(col, c.dtype)
        exprs.append(text.drop_nulls().value_counts(sort=True, name="n").implode().alias("vc"))
        if c.dtype != pl.Boolean:
            lengths = text.str.len_chars()
            exprs += [
                lengths.min().alias("lmin"),
                lengths.max().alias("lmax"),
                lengths.mean().alias("lmean"),
            ]
    return exprs


def _first_pass(df: pl.DataFrame, cols: list[_Column]) -> None:
    query = [pl.struct(_statistics(c, df.height)).alias(c.key) for c in cols]
    try:
        row = df.lazy().select(query).collect().row(0, named=True)
    except pl.exceptions.PolarsError as exc:
        raise InvalidInputError(f"cannot profile the table: {exc}") from None
    for c in cols:
        c.stats = row[c.key]


def _bin_plan(c: _Column) -> tuple[int, int, int] | None:
    if not c.has_values or not c.stats["count"]:
        return None
    lo, hi = float(c.stats["min"]), float(c.stats["max"])
    k = choose_exponent(lo, hi)
    return k, bin_of(lo, k), _n_bins(lo, hi, k)


def _second_pass(df: pl.DataFrame, cols: list[_Column]) -> None:
    """Histogram bin indices and HyperLogLog codes, each column a query run in parallel."""
    lf = df.lazy()
    queries: list[tuple[_Column, str, pl.LazyFrame]] = []
    for c in cols:
        if c.bins is not None:
            k, offset, _ = c.bins
            v = _values(c)
            # Division by a power of two and floor are exact in float64, so bins nest;
            # except that a negative quotient can underflow to -0.0 (see bin_of).
            quotient = v / math.ldexp(1.0, k)
            bin_ = quotient.floor()
            if k > 0 and offset < 0:  # only a division by more than 1 underflows
                bin_ = pl.when((quotient == 0) & (v < 0)).then(-1.0).otherwise(bin_)
            idx = (bin_ - offset).cast(pl.Int32)
            queries.append((c, "bins", lf.select(idx.alias("x")).drop_nulls()))
        if c.needs_hll:
            queries.append((c, "hll", _hll_query(df, c)))
    if not queries:
        return
    frames = pl.collect_all([q for _, _, q in queries])
    for (c, what, _), frame in zip(queries, frames, strict=True):
        values = frame["x"].to_numpy()
        if what == "bins":
            c.bin_indices = values
        else:
            c.hll_codes = values


def _hll_query(df: pl.DataFrame, c: _Column, *, prefilter: bool = True) -> pl.LazyFrame:
    values = stable_hash.prepare(df[c.name]).alias("v")
    q = pl.LazyFrame({"v": values}).drop_nulls()
    rows_with_values = df.height - int(c.stats["nulls"])
    approx = int(c.stats.get("approx") or rows_with_values)
    # Registers depend only on the set of values: hash each distinct value once, or only
    # the values that can still raise a register.
    if approx * 8 < rows_with_values:
        q = q.unique()
        c.hll_min_rank = 1
    else:
        c.hll_min_rank = hll.min_rank(approx) if prefilter else 1
    special = bool(c.stats.get("nan") or c.stats.get("zeros"))
    h = stable_hash.hash_frame(q, "v", c.dtype, special_floats=special)
    if c.hll_min_rank > 1:
        h = h.filter(hll.rank_at_least(pl.col("h"), c.hll_min_rank))
    return h.select(hll.code_expr(pl.col("h")).alias("x"))


def _registers(df: pl.DataFrame, c: _Column) -> np.ndarray | None:
    if c.hll_codes is None:
        return None
    registers = hll.registers_from_codes(c.hll_codes)
    if not registers.all() and c.hll_min_rank > 1:
        # A register saw nothing above the cut-off: redo this column without it.
        codes = _hll_query(df, c, prefilter=False).collect()["x"].to_numpy()
        registers = hll.registers_from_codes(codes)
    return registers


def _column_profile(df: pl.DataFrame, c: _Column) -> ColumnProfile:
    s = c.stats
    registers = _registers(df, c)
    sketch = None if registers is None else hll.encode(registers)
    exact_distinct = s.get("distinct")
    distinct: int | None = None if exact_distinct is None else int(exact_distinct)
    if distinct is None and registers is not None:
        distinct = round(hll.estimate(registers))
    base = ColumnProfile(
        c.name,
        str(c.dtype),
        c.kind,
        df.height,
        int(s["nulls"]),
        distinct,
        exact_distinct is not None,
        hll=sketch,
    )
    if c.has_values:
        hist = None
        if c.bins is not None and c.bin_indices is not None:
            k, offset, n = c.bins
            hist = Histogram.from_indices(k, offset, c.bin_indices, n)
        numeric = NumericStats(
            count=int(s["count"]),
            mean=_opt_float(s["mean"]),
            std=_opt_float(s["std"]),
            min=_opt_float(s["min"]),
            max=_opt_float(s["max"]),
            nan_count=int(s.get("nan") or 0),
            inf_count=int(s.get("inf") or 0),
            histogram=hist,
        )
        temporal = None
        if c.kind == "temporal" and s["pmin"] is not None:
            temporal = TemporalRange(
                int(s["pmin"]), int(s["pmax"]), _display(s["tmin"]), _display(s["tmax"])
            )
        return replace(base, numeric=numeric, temporal=temporal)
    if c.kind == "categorical":
        vc = s["vc"]
        complete = len(vc) <= MAX_CATEGORIES
        top = vc if complete else vc[:TOP_K]
        counts = {str(r[c.name]): int(r["n"]) for r in top}
        other = 0 if complete else sum(int(r["n"]) for r in vc[TOP_K:])
        lengths = None
        if c.dtype != pl.Boolean:
            lmean = s["lmean"]
            lengths = Lengths(s["lmin"], s["lmax"], None if lmean is None else float(lmean))
        return replace(
            base,
            distinct=len(vc) if complete else distinct,
            distinct_exact=complete,
            frequencies=Frequencies(counts, other, complete),
            lengths=lengths,
        )
    return base


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


def _display(value: Any) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)
