"""The profile of a table as data: per-column statistics that merge exactly.

Everything a profile holds merges exactly (counts, moments, min/max, histograms on nested
power-of-two grids, HyperLogLog registers) except top-k frequencies beyond
``MAX_CATEGORIES`` values, which merge approximately. How a profile is computed from a
table is in ``compute.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from loopml.core.errors import InvalidInputError
from loopml.data import hll
from loopml.data.histogram import Histogram
from loopml.data.histogram import merge as merge_histograms
from loopml.data.stable_hash import HASH_ID

PROFILE_FORMAT = "loopml.profile/1"
MAX_CATEGORIES = 1000  # frequency tables up to this many values are kept whole
TOP_K = 100  # beyond that, the most frequent values plus an "other" count
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

Kind = Literal["numeric", "categorical", "temporal", "other"]


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
class TemporalRange:
    """Earliest and latest value of a date, time, datetime or duration column.

    ``min`` and ``max`` are the physical integers (days, or units since the epoch or
    midnight; UTC for time-zone-aware datetimes), which order correctly; the texts are
    for display. Texts do not order: "10 days" sorts before "9 days"."""

    min: int
    max: int
    min_text: str
    max_text: str

    def merge(self, other: TemporalRange) -> TemporalRange:
        lo = self if self.min <= other.min else other
        hi = self if self.max >= other.max else other
        return TemporalRange(lo.min, hi.max, lo.min_text, hi.max_text)


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
    temporal: TemporalRange | None = None
    hll: str | None = None

    @property
    def temporal_min(self) -> str | None:
        return None if self.temporal is None else self.temporal.min_text

    @property
    def temporal_max(self) -> str | None:
        return None if self.temporal is None else self.temporal.max_text

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
            "temporal_min_value": None if self.temporal is None else self.temporal.min,
            "temporal_max_value": None if self.temporal is None else self.temporal.max,
            "hll": self.hll,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        kind = d["kind"]
        if kind not in ("numeric", "categorical", "temporal", "other"):
            raise ValueError(f"unknown column kind {kind!r}")
        lengths = d.get("lengths")
        numeric = None if d.get("numeric") is None else NumericStats.from_dict(d["numeric"])
        return cls(
            name=str(d["name"]),
            dtype=str(d["dtype"]),
            kind=kind,
            count=int(d["count"]),
            null_count=int(d["null_count"]),
            distinct=None if d.get("distinct") is None else int(d["distinct"]),
            distinct_exact=bool(d.get("distinct_exact", False)),
            numeric=numeric,
            frequencies=(
                None if d.get("frequencies") is None else Frequencies.from_dict(d["frequencies"])
            ),
            lengths=None if lengths is None else Lengths(**lengths),
            temporal=_temporal_from_dict(d, numeric),
            hll=d.get("hll"),
        )

    def merge(self, other: ColumnProfile) -> ColumnProfile:
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
        if self.hll is not None and other.hll is not None:
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
            temporal=_merge_temporal(self.temporal, other.temporal),
            hll=None if registers is None else hll.encode(registers),
        )


@dataclass(frozen=True)
class Profile:
    """Statistics of a table; JSON-serialisable and mergeable with ``merge``."""

    num_rows: int
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    hash_id: str = HASH_ID

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
    hash_a, hash_b = _sketch_hash(a), _sketch_hash(b)
    if hash_a is not None and hash_b is not None and hash_a != hash_b:
        raise InvalidInputError(
            "cannot merge profiles whose distinct-count sketches were made with different "
            f"hashes ({hash_a!r} and {hash_b!r}); recompute the older profile from its data "
            "(lm.datasets.profile(table)) and merge that"
        )
    cols = {name: a.columns[name].merge(b.columns[name]) for name in a.columns}
    return Profile(a.num_rows + b.num_rows, cols, hash_a or hash_b or a.hash_id)


def _sketch_hash(p: Profile) -> str | None:
    """The hash a profile's sketches were made with; None when it holds no sketch."""
    return p.hash_id if any(c.hll is not None for c in p.columns.values()) else None


def merge_all(profiles: Iterable[Profile]) -> Profile:
    it = iter(profiles)
    try:
        out = next(it)
    except StopIteration:
        raise InvalidInputError("no profiles to merge") from None
    for p in it:
        out = merge(out, p)
    return out


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


def _merge_temporal(a: TemporalRange | None, b: TemporalRange | None) -> TemporalRange | None:
    if a is None:
        return b
    if b is None:
        return a
    return a.merge(b)


def _temporal_from_dict(d: dict[str, Any], numeric: NumericStats | None) -> TemporalRange | None:
    lo, hi = d.get("temporal_min"), d.get("temporal_max")
    if lo is None or hi is None:
        return None
    lo_value, hi_value = d.get("temporal_min_value"), d.get("temporal_max_value")
    if (lo_value is None or hi_value is None) and numeric is not None:
        # Profiles stored before the physical values were kept: their float moments hold
        # the same physical min/max.
        lo_value, hi_value = numeric.min, numeric.max
    if lo_value is None or hi_value is None:
        return None
    return TemporalRange(int(lo_value), int(hi_value), str(lo), str(hi))
