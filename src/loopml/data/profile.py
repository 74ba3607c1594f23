"""Per-column statistics of a table, computed in two vectorised Polars passes and mergeable.

The first pass computes every scalar statistic of every column in one query (Polars runs
the expressions in parallel); the second turns values into histogram bin indices and
HyperLogLog codes, which NumPy counts. Everything a profile holds merges exactly (counts,
moments, min/max, histograms on nested power-of-two grids, HyperLogLog registers) except
top-k frequencies beyond ``MAX_CATEGORIES`` values, which merge approximately.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl

from loopml.core.errors import InvalidInputError
from loopml.data import hll
from loopml.data.histogram import Histogram, _n_bins, bin_of, choose_exponent
from loopml.data.histogram import merge as merge_histograms
from loopml.data.tables import TableLike, to_polars

PROFILE_FORMAT = "loopml.profile/1"
MAX_CATEGORIES = 1000  # frequency tables up to this many values are kept whole
TOP_K = 100  # beyond that, the most frequent values plus an "other" count
EXACT_DISTINCT_ROWS = 2_000_000  # exact n_unique below this many rows, HyperLogLog above
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

Kind = Literal["numeric", "categorical", "temporal", "other"]


def column_kind(dtype: pl.DataType) -> Kind:
    if dtype.is_numeric():
        return "numeric"
    if dtype == pl.Boolean or dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        return "categorical"
    if dtype.is_temporal():
        return "temporal"
    return "other"


@dataclass(frozen=True)
class NumericStats:
    """Moments and histogram of the finite values (NaN and infinities counted apart)."""

    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    nan_count: int = 0
    inf_count: int = 0
    histogram: Histogram | None = None

    def quantiles(self) -> dict[str, float]:
        if self.histogram is None or self.min is None or self.max is None:
            return {}
        values = self.histogram.quantiles(QUANTILES, self.min, self.max)
        return {f"p{round(q * 100)}": v for q, v in zip(QUANTILES, values, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "quantiles": self.quantiles(),
        }
        d["histogram"] = None if self.histogram is None else self.histogram.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericStats:
        h = d.get("histogram")
        return cls(
            count=int(d["count"]),
            mean=_opt_float(d.get("mean")),
            std=_opt_float(d.get("std")),
            min=_opt_float(d.get("min")),
            max=_opt_float(d.get("max")),
            nan_count=int(d.get("nan_count", 0)),
            inf_count=int(d.get("inf_count", 0)),
            histogram=None if h is None else Histogram.from_dict(h),
        )

    def merge(self, other: NumericStats) -> NumericStats:
        n = self.count + other.count
        if self.count == 0 or other.count == 0:
            base = self if self.count else other
            return replace(
                base,
                nan_count=self.nan_count + other.nan_count,
                inf_count=self.inf_count + other.inf_count,
            )
        assert self.mean is not None and other.mean is not None
        assert self.min is not None and other.min is not None
        assert self.max is not None and other.max is not None
        # Chan et al.'s parallel update of mean and sum of squared deviations.
        m2a = (self.std or 0.0) ** 2 * (self.count - 1)
        m2b = (other.std or 0.0) ** 2 * (other.count - 1)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = m2a + m2b + delta * delta * self.count * other.count / n
        hist = None
        if self.histogram is not None and other.histogram is not None:
            hist = merge_histograms(self.histogram, other.histogram)
        return NumericStats(
            count=n,
            mean=mean,
            std=math.sqrt(m2 / (n - 1)) if n > 1 else None,
            min=min(self.min, other.min),
            max=max(self.max, other.max),
            nan_count=self.nan_count + other.nan_count,
            inf_count=self.inf_count + other.inf_count,
            histogram=hist,
        )


@dataclass(frozen=True)
class Frequencies:
    """Value counts; ``complete`` when every distinct value is listed."""

    counts: dict[str, int]
    other: int = 0
    complete: bool = True

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.other

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "other": self.other, "complete": self.complete}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Frequencies:
        return cls(
            {str(k): int(v) for k, v in d["counts"].items()},
            int(d.get("other", 0)),
            bool(d.get("complete", True)),
        )

    def merge(self, other: Frequencies) -> Frequencies:
        counts = dict(self.counts)
        for k, v in other.counts.items():
            counts[k] = counts.get(k, 0) + v
        return _frequencies(counts, self.other + other.other, self.complete and other.complete)


def _frequencies(counts: dict[str, int], other: int, complete: bool) -> Frequencies:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if complete and len(ordered) <= MAX_CATEGORIES:
        return Frequencies(dict(ordered), other, True)
    kept = ordered[:TOP_K]
    rest = sum(v for _, v in ordered[TOP_K:])
    return Frequencies(dict(kept), other + rest, False)


@dataclass(frozen=True)
class Lengths:
    """String lengths in characters."""

    min: int | None
    max: int | None
    mean: float | None

    def merge(self, other: Lengths, n_self: int, n_other: int) -> Lengths:
        if self.min is None or n_self == 0:
            return other
        if other.min is None or n_other == 0:
            return self
        assert self.max is not None and other.max is not None
        assert self.mean is not None and other.mean is not None
        mean = (self.mean * n_self + other.mean * n_other) / (n_self + n_other)
        return Lengths(min(self.min, other.min), max(self.max, other.max), mean)


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    dtype: str
    kind: Kind
    count: int
    null_count: int
    distinct: int | None = None
    distinct_exact: bool = False
    numeric: NumericStats | None = None
    frequencies: Frequencies | None = None
    lengths: Lengths | None = None
    temporal_min: str | None = None
    temporal_max: str | None = None
    hll: str | None = None

    @property
    def non_null(self) -> int:
        return self.count - self.null_count

    @property
    def null_fraction(self) -> float:
        return self.null_count / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "count": self.count,
            "null_count": self.null_count,
            "distinct": self.distinct,
            "distinct_exact": self.distinct_exact,
            "numeric": None if self.numeric is None else self.numeric.to_dict(),
            "frequencies": None if self.frequencies is None else self.frequencies.to_dict(),
            "lengths": None if self.lengths is None else self.lengths.__dict__,
            "temporal_min": self.temporal_min,
            "temporal_max": self.temporal_max,
            "hll": self.hll,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        kind = d["kind"]
        if kind not in ("numeric", "categorical", "temporal", "other"):
            raise ValueError(f"unknown column kind {kind!r}")
        lengths = d.get("lengths")
        return cls(
            name=str(d["name"]),
            dtype=str(d["dtype"]),
            kind=kind,
            count=int(d["count"]),
            null_count=int(d["null_count"]),
            distinct=None if d.get("distinct") is None else int(d["distinct"]),
            distinct_exact=bool(d.get("distinct_exact", False)),
            numeric=None if d.get("numeric") is None else NumericStats.from_dict(d["numeric"]),
            frequencies=(
                None if d.get("frequencies") is None else Frequencies.from_dict(d["frequencies"])
            ),
            lengths=None if lengths is None else Lengths(**lengths),
            temporal_min=d.get("temporal_min"),
            temporal_max=d.get("temporal_max"),
            hll=d.get("hll"),
        )

    def merge(self, other: ColumnProfile, hash_ok: bool) -> ColumnProfile:
        if self.dtype != other.dtype:
            raise InvalidInputError(
                f"cannot merge profiles: column {self.name!r} is {self.dtype} in one and "
                f"{other.dtype} in the other"
            )
        numeric = None
        if self.numeric is not None and other.numeric is not None:
            numeric = self.numeric.merge(other.numeric)
        freqs = None
        if self.frequencies is not None and other.frequencies is not None:
            freqs = self.frequencies.merge(other.frequencies)
        lengths = None
        if self.lengths is not None and other.lengths is not None:
            lengths = self.lengths.merge(other.lengths, self.non_null, other.non_null)
        registers = None
        if hash_ok and self.hll is not None and other.hll is not None:
            registers = np.maximum(hll.decode(self.hll), hll.decode(other.hll))
        if freqs is not None and freqs.complete:
            distinct: int | None = len(freqs.counts)
            exact = True
        elif registers is not None:
            distinct, exact = round(hll.estimate(registers)), False
        else:
            # No sketch to combine: the larger side is a lower bound.
            distinct = max(self.distinct or 0, other.distinct or 0) or None
            exact = False
        return ColumnProfile(
            name=self.name,
            dtype=self.dtype,
            kind=self.kind,
            count=self.count + other.count,
            null_count=self.null_count + other.null_count,
            distinct=distinct,
            distinct_exact=exact,
            numeric=numeric,
            frequencies=freqs,
            lengths=lengths,
            temporal_min=_pick(min, self.temporal_min, other.temporal_min),
            temporal_max=_pick(max, self.temporal_max, other.temporal_max),
            hll=None if registers is None else hll.encode(registers),
        )


@dataclass(frozen=True)
class Profile:
    """Statistics of a table; JSON-serialisable and mergeable with ``merge``."""

    num_rows: int
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    hash_id: str = hll.HASH_ID

    def __getitem__(self, name: str) -> ColumnProfile:
        try:
            return self.columns[name]
        except KeyError:
            raise InvalidInputError(
                f"the profile has no column {name!r}; it has {list(self.columns)}"
            ) from None

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "num_rows": self.num_rows,
            "hash_id": self.hash_id,
            "columns": [c.to_dict() for c in self.columns.values()],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        if not isinstance(d, dict) or d.get("format") != PROFILE_FORMAT:
            raise InvalidInputError(f"not a loopml profile (expected format {PROFILE_FORMAT!r})")
        try:
            cols = [ColumnProfile.from_dict(c) for c in d["columns"]]
            return cls(int(d["num_rows"]), {c.name: c for c in cols}, str(d["hash_id"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"malformed loopml profile: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Profile:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"a profile must be JSON: {exc}") from None
        return cls.from_dict(data)


def merge(a: Profile, b: Profile) -> Profile:
    """The profile of the union of the two tables a and b were computed from."""
    if list(a.columns) != list(b.columns):
        raise InvalidInputError(
            "cannot merge profiles with different columns: "
            f"only in the first {sorted(set(a.columns) - set(b.columns))}, "
            f"only in the second {sorted(set(b.columns) - set(a.columns))}"
        )
    hash_ok = a.hash_id == b.hash_id
    cols = {name: a.columns[name].merge(b.columns[name], hash_ok) for name in a.columns}
    return Profile(a.num_rows + b.num_rows, cols, a.hash_id if hash_ok else "mixed")


def merge_all(profiles: Iterable[Profile]) -> Profile:
    it = iter(profiles)
    try:
        out = next(it)
    except StopIteration:
        raise InvalidInputError("no profiles to merge") from None
    for p in it:
        out = merge(out, p)
    return out


# --- computing a profile ---------------------------------------------------------------


def profile(table: TableLike) -> Profile:
    """Profile a polars/pandas/Arrow table."""
    df = to_polars(table)
    kinds = {name: column_kind(dtype) for name, dtype in df.schema.items()}
    stats = _first_pass(df, kinds)
    bins = _bin_plan(df, kinds, stats)
    codes = _second_pass(df, kinds, stats, bins)
    cols = {}
    for i, (name, dtype) in enumerate(df.schema.items()):
        cols[name] = _column(df, i, name, dtype, kinds[name], stats, bins, codes)
    return Profile(df.height, cols)


def _values(df: pl.DataFrame, name: str, kind: Kind) -> pl.Expr:
    """The column as float64 with NaN and infinities nulled, for moments and histograms."""
    c = pl.col(name)
    dtype = df.schema[name]
    if kind == "temporal":
        return c.to_physical().cast(pl.Float64)
    if dtype.is_float():
        return pl.when(c.is_finite()).then(c).cast(pl.Float64)
    return c.cast(pl.Float64)


def _as_text(c: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        return c.cast(pl.String).str.to_lowercase()
    return c.cast(pl.String)


def _first_pass(df: pl.DataFrame, kinds: dict[str, Kind]) -> dict[str, Any]:
    exprs: list[pl.Expr] = []
    exact = df.height <= EXACT_DISTINCT_ROWS
    for i, (name, dtype) in enumerate(df.schema.items()):
        c = pl.col(name)
        kind = kinds[name]
        exprs.append(c.null_count().alias(f"{i}:nulls"))
        if kind in ("numeric", "temporal"):
            v = _values(df, name, kind)
            exprs += [
                v.count().alias(f"{i}:count"),
                v.mean().alias(f"{i}:mean"),
                v.std().alias(f"{i}:std"),
                v.min().alias(f"{i}:min"),
                v.max().alias(f"{i}:max"),
            ]
            if dtype.is_float():
                exprs += [
                    c.is_nan().sum().alias(f"{i}:nan"),
                    c.is_infinite().sum().alias(f"{i}:inf"),
                ]
            if kind == "temporal":
                exprs += [c.min().alias(f"{i}:tmin"), c.max().alias(f"{i}:tmax")]
            if df.height >= hll.FILTER_ROWS:
                exprs.append(c.approx_n_unique().alias(f"{i}:approx"))
            if exact and dtype.is_integer():
                # Exact counts matter for spotting ID columns; floats get HyperLogLog only.
                exprs.append(c.drop_nulls().n_unique().alias(f"{i}:distinct"))
        elif kind == "categorical":
            text = _as_text(c, dtype)
            exprs.append(
                text.drop_nulls().value_counts(sort=True, name="n").implode().alias(f"{i}:vc")
            )
            if dtype != pl.Boolean:
                lengths = text.str.len_chars()
                exprs += [
                    lengths.min().alias(f"{i}:lmin"),
                    lengths.max().alias(f"{i}:lmax"),
                    lengths.mean().alias(f"{i}:lmean"),
                ]
    try:
        row = df.lazy().select(exprs).collect().row(0, named=True)
    except pl.exceptions.PolarsError as exc:
        raise InvalidInputError(f"cannot profile the table: {exc}") from None
    return row


def _bin_plan(
    df: pl.DataFrame, kinds: dict[str, Kind], stats: dict[str, Any]
) -> dict[int, tuple[int, int, int]]:
    """(exponent, offset, n_bins) of each column that gets a histogram."""
    plan = {}
    for i, name in enumerate(df.columns):
        if kinds[name] in ("numeric", "temporal") and stats[f"{i}:count"]:
            lo, hi = float(stats[f"{i}:min"]), float(stats[f"{i}:max"])
            k = choose_exponent(lo, hi)
            plan[i] = (k, bin_of(lo, k), _n_bins(lo, hi, k))
    return plan


def _needs_hll(i: int, kind: Kind, stats: dict[str, Any]) -> bool:
    if kind in ("numeric", "temporal"):
        return bool(stats[f"{i}:count"])
    if kind == "categorical":
        return len(stats[f"{i}:vc"]) > MAX_CATEGORIES
    return False


def _second_pass(
    df: pl.DataFrame,
    kinds: dict[str, Kind],
    stats: dict[str, Any],
    bins: dict[int, tuple[int, int, int]],
) -> dict[str, np.ndarray]:
    """Histogram bin indices and HyperLogLog codes, each column a query run in parallel."""
    lf = df.lazy()
    queries: dict[str, pl.LazyFrame] = {}
    for i, name in enumerate(df.columns):
        if i in bins:
            k, offset, _ = bins[i]
            v = _values(df, name, kinds[name])
            # Division by a power of two and floor are exact in float64, so bins nest;
            # except that a negative quotient can underflow to -0.0 (see bin_of).
            quotient = v / math.ldexp(1.0, k)
            bin_ = quotient.floor()
            if k > 0 and offset < 0:  # only a division by more than 1 underflows
                bin_ = pl.when((quotient == 0) & (v < 0)).then(-1.0).otherwise(bin_)
            idx = (bin_ - offset).cast(pl.Int32)
            queries[f"{i}:bin"] = lf.select(idx.alias("x")).drop_nulls()
        if _needs_hll(i, kinds[name], stats):
            col = pl.col(name)
            q = lf.select(col).drop_nulls()
            rows_with_values = df.height - int(stats[f"{i}:nulls"])
            approx = int(stats.get(f"{i}:approx") or rows_with_values)
            min_rank = hll.min_rank(approx)
            # Registers depend only on the set of values: hash each distinct value once,
            # or only the values that can still raise a register.
            if approx * 8 < rows_with_values:
                q = q.unique()
            elif min_rank > 1:
                q = q.filter(hll.rank_at_least(col, min_rank))
            queries[f"{i}:hll"] = q.select(hll.code_expr(col).alias("x"))
            queries[f"{i}:hll_rank"] = pl.LazyFrame(
                {"x": [min_rank if approx * 8 >= rows_with_values else 1]}
            )
    if not queries:
        return {}
    frames = pl.collect_all(list(queries.values()))
    return {key: f["x"].to_numpy() for key, f in zip(queries, frames, strict=True)}


def _column(
    df: pl.DataFrame,
    i: int,
    name: str,
    dtype: pl.DataType,
    kind: Kind,
    stats: dict[str, Any],
    bins: dict[int, tuple[int, int, int]],
    codes: dict[str, np.ndarray],
) -> ColumnProfile:
    nulls = int(stats[f"{i}:nulls"])
    registers = None
    if f"{i}:hll" in codes:
        registers = hll.registers_from_codes(codes[f"{i}:hll"])
        if not registers.all() and int(codes[f"{i}:hll_rank"][0]) > 1:
            # A register saw nothing above the cut-off: redo this column without it.
            lf = df.lazy().select(pl.col(name)).drop_nulls()
            codes_all = lf.select(hll.code_expr(pl.col(name))).collect().to_series()
            registers = hll.registers_from_codes(codes_all.to_numpy())
    sketch = None if registers is None else hll.encode(registers)
    exact_distinct = stats.get(f"{i}:distinct")
    distinct: int | None = None if exact_distinct is None else int(exact_distinct)
    if distinct is None and registers is not None:
        distinct = round(hll.estimate(registers))
    base = ColumnProfile(
        name, str(dtype), kind, df.height, nulls, distinct, exact_distinct is not None
    )
    if kind in ("numeric", "temporal"):
        hist = None
        if i in bins:
            k, offset, n = bins[i]
            hist = Histogram.from_indices(k, offset, codes[f"{i}:bin"], n)
        numeric = NumericStats(
            count=int(stats[f"{i}:count"]),
            mean=_opt_float(stats[f"{i}:mean"]),
            std=_opt_float(stats[f"{i}:std"]),
            min=_opt_float(stats[f"{i}:min"]),
            max=_opt_float(stats[f"{i}:max"]),
            nan_count=int(stats.get(f"{i}:nan") or 0),
            inf_count=int(stats.get(f"{i}:inf") or 0),
            histogram=hist,
        )
        return replace(
            base,
            numeric=numeric,
            hll=sketch,
            temporal_min=_iso(stats.get(f"{i}:tmin")),
            temporal_max=_iso(stats.get(f"{i}:tmax")),
        )
    if kind == "categorical":
        vc = stats[f"{i}:vc"]
        complete = len(vc) <= MAX_CATEGORIES
        top = vc if complete else vc[:TOP_K]
        counts = {str(r[name]): int(r["n"]) for r in top}
        other = 0 if complete else sum(int(r["n"]) for r in vc[TOP_K:])
        lengths = None
        if dtype != pl.Boolean:
            lmean = stats[f"{i}:lmean"]
            lengths = Lengths(
                stats[f"{i}:lmin"], stats[f"{i}:lmax"], None if lmean is None else float(lmean)
            )
        return replace(
            base,
            distinct=len(vc) if complete else distinct,
            distinct_exact=complete,
            frequencies=Frequencies(counts, other, complete),
            lengths=lengths,
            hll=sketch,
        )
    return base


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _pick(fn: Any, a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return str(fn(a, b))
