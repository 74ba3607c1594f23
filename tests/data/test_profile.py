from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from loopml.core.errors import InvalidInputError
from loopml.data.histogram import Histogram, choose_exponent, merge
from loopml.data.profile import MAX_CATEGORIES, Profile, merge_all, profile
from loopml.data.profile import merge as merge_profiles


def _hist(values: np.ndarray) -> Histogram:
    p = profile(pl.DataFrame({"x": values}))
    h = p["x"].numeric.histogram
    assert h is not None
    return h


def test_statistics_match_polars(flights: pl.DataFrame) -> None:
    p = profile(flights)
    assert p.num_rows == flights.height
    for name in ("temp", "distance", "arr_delay", "pressure"):
        col = flights[name]
        n = p[name].numeric
        assert n is not None
        assert p[name].null_count == col.null_count()
        assert n.min == pytest.approx(col.min())
        assert n.max == pytest.approx(col.max())
        assert n.mean == pytest.approx(col.mean())
        assert n.std == pytest.approx(col.std())
        assert n.histogram is not None and n.histogram.total == col.drop_nulls().len()
        # Quantiles from the histogram are within one bin of the exact ones.
        exact = col.drop_nulls().quantile(0.5, interpolation="linear")
        assert abs(n.quantiles()["p50"] - exact) <= n.histogram.width
    carrier = p["carrier"]
    assert carrier.kind == "categorical" and carrier.distinct_exact
    assert carrier.distinct == flights["carrier"].n_unique()
    assert carrier.frequencies is not None
    expected = dict(flights["carrier"].value_counts().iter_rows())
    assert carrier.frequencies.counts == expected
    assert carrier.lengths is not None and carrier.lengths.max == 2


def test_merge_equals_profile_of_union(flights: pl.DataFrame) -> None:
    first = flights.filter(pl.col("month") <= 4)
    second = flights.filter(pl.col("month").is_between(5, 8))
    third = flights.filter(pl.col("month") > 8)
    merged = merge_all([profile(first), profile(second), profile(third)])
    whole = profile(flights)
    assert merged.num_rows == whole.num_rows
    for name, w in whole.columns.items():
        m = merged[name]
        assert (m.count, m.null_count, m.dtype) == (w.count, w.null_count, w.dtype)
        if w.numeric is not None:
            assert m.numeric is not None
            # Histograms on nested power-of-two grids merge exactly.
            assert m.numeric.histogram == w.numeric.histogram
            assert m.numeric.mean == pytest.approx(w.numeric.mean, rel=1e-9)
            assert m.numeric.std == pytest.approx(w.numeric.std, rel=1e-9)
            assert (m.numeric.min, m.numeric.max) == (w.numeric.min, w.numeric.max)
        if w.frequencies is not None:
            assert m.frequencies == w.frequencies
        # Distinct counts merge through HyperLogLog: within its error (~1.6%) + small slack.
        assert w.distinct is not None and m.distinct is not None
        assert abs(m.distinct - w.distinct) <= max(3, 0.05 * w.distinct)


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
    b=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
)
@example(a=[511.0], b=[-5e-324])  # a negative subnormal divided by a bin width underflows
@example(a=[0.0], b=[1.7976931348623157e308, -9.9792015476736e291])  # max - min overflows
def test_histogram_merge_is_exact(a: list[float], b: list[float]) -> None:
    union = np.array(a + b)
    assert merge(_hist(np.array(a)), _hist(np.array(b))) == _hist(union)


def test_histogram_grid_rules() -> None:
    k = choose_exponent(983.8, 1042.1)
    assert 2.0**k < (1042.1 - 983.8) / 200  # fine enough to see a pressure shift
    h = _hist(np.array([5.0, 5.0, 5.0]))  # a constant column still gets one bin
    assert h.counts == (3,)
    with pytest.raises(ValueError):
        h.coarsen(h.exponent - 1)


def test_distinct_is_approximate_beyond_exact_size() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 3_000_000, size=2_500_000)
    p = profile(pl.DataFrame({"x": values}))
    exact = len(np.unique(values))
    assert not p["x"].distinct_exact
    assert abs(p["x"].distinct - exact) / exact < 0.05


def test_high_cardinality_strings_keep_top_k() -> None:
    n = MAX_CATEGORIES * 3
    df = pl.DataFrame({"s": [f"v{i}" for i in range(n)] + ["hot"] * 500})
    f = profile(df)["s"].frequencies
    assert f is not None and not f.complete
    assert next(iter(f.counts)) == "hot" and f.counts["hot"] == 500
    assert f.total == df.height
    assert abs(profile(df)["s"].distinct - (n + 1)) < 0.05 * n


def test_special_values_and_types() -> None:
    df = pl.DataFrame(
        {
            "f": [1.0, float("nan"), float("inf"), None, 3.0],
            "b": [True, False, True, None, True],
            "t": [datetime(2013, 1, 1) + timedelta(days=i) for i in range(5)],
            "l": [[1], [2], None, [3], []],
        }
    )
    p = profile(df)
    f = p["f"].numeric
    assert f is not None
    assert (f.count, f.nan_count, f.inf_count, p["f"].null_count) == (2, 1, 1, 1)
    assert f.mean == 2.0
    assert p["b"].frequencies is not None and p["b"].frequencies.counts == {"true": 3, "false": 1}
    assert p["t"].kind == "temporal" and p["t"].temporal_min == "2013-01-01T00:00:00"
    assert p["t"].temporal_max == "2013-01-05T00:00:00"
    assert p["l"].kind == "other" and p["l"].null_count == 1


def test_json_round_trip_and_foreign_inputs(jan_feb: pl.DataFrame) -> None:
    p = profile(jan_feb)
    text = p.to_json()
    json.loads(text)  # strict JSON: no NaN/Infinity literals
    assert Profile.from_json(text) == p
    assert profile(jan_feb.to_pandas()).columns["temp"] == p.columns["temp"]
    assert profile(jan_feb.to_arrow()).columns["dest"] == p.columns["dest"]


def test_empty_table_profiles() -> None:
    p = profile(
        pl.DataFrame({"x": pl.Series([], dtype=pl.Float64), "s": pl.Series([], dtype=pl.String)})
    )
    assert p.num_rows == 0 and p["x"].numeric is not None and p["x"].numeric.histogram is None
    assert p["x"].numeric.mean is None or math.isnan(p["x"].numeric.mean) is False


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="polars, pandas or Arrow"):
        profile([1, 2, 3])
    with pytest.raises(InvalidInputError, match="non-string column names"):
        profile(pd.DataFrame({0: [1], 1: [2]}))
    with pytest.raises(InvalidInputError, match="duplicate column"):
        profile(pa.table([[1], [2]], names=["a", "a"]))
    with pytest.raises(InvalidInputError, match="no columns"):
        profile(pl.DataFrame())
    with pytest.raises(InvalidInputError, match="different columns"):
        merge_profiles(profile(pl.DataFrame({"a": [1]})), profile(pl.DataFrame({"b": [1]})))
    with pytest.raises(InvalidInputError, match="Int64 in one and String"):
        merge_profiles(profile(pl.DataFrame({"a": [1]})), profile(pl.DataFrame({"a": ["x"]})))
    with pytest.raises(InvalidInputError, match="not a loopml profile"):
        Profile.from_json('{"format": "other"}')
    with pytest.raises(InvalidInputError, match="no column 'nope'"):
        profile(pl.DataFrame({"a": [1]}))["nope"]


def test_temporal_min_max_merge_by_value_not_text() -> None:
    # As text "10 days" < "9 days"; by value 9 days is the smaller.
    nine = profile(pl.DataFrame({"d": [timedelta(days=9)]}))
    ten = profile(pl.DataFrame({"d": [timedelta(days=10)]}))
    for merged in (merge_profiles(nine, ten), merge_profiles(ten, nine)):
        assert merged["d"].temporal_min == "9 days, 0:00:00"
        assert merged["d"].temporal_max == "10 days, 0:00:00"
    # Around the end of daylight saving time local clock texts run backwards: 01:50-04:00
    # comes before 01:10-05:00, though its text sorts after it.
    tz = "America/New_York"
    early = pl.DataFrame({"t": [datetime(2013, 11, 3, 5, 50)]}).with_columns(
        pl.col("t").dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    )
    late = pl.DataFrame({"t": [datetime(2013, 11, 3, 6, 10)]}).with_columns(
        pl.col("t").dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    )
    merged = merge_profiles(profile(late), profile(early))
    whole = profile(pl.concat([early, late]))
    assert merged["t"].temporal == whole["t"].temporal
    assert merged["t"].temporal_min == "2013-11-03T01:50:00-04:00"
    assert merged["t"].temporal_max == "2013-11-03T01:10:00-05:00"
    # The typed range survives a JSON round trip.
    assert Profile.from_json(merged.to_json())["t"].temporal == merged["t"].temporal


def test_stable_hash_of_known_values() -> None:
    """The sketch hash must never change: these values are pinned for good."""
    from loopml.data.stable_hash import HASH_ID, hash_series

    assert HASH_ID == "xxh3_64-utf8+murmur3-fmix64-u64/1"
    # XXH3-64 of the empty string with seed 0 is the algorithm's published test vector.
    got = hash_series(pl.Series(["", None])).to_list()
    assert got == [0x2D06800538D394C2, None]

    def fmix64(k: int) -> int:  # MurmurHash3's finaliser, written out in plain integers
        mask = (1 << 64) - 1
        k ^= 0x9E3779B97F4A7C15
        k ^= k >> 33
        k = (k * 0xFF51AFD7ED558CCD) & mask
        k ^= k >> 33
        k = (k * 0xC4CEB9FE1A85EC53) & mask
        return k ^ (k >> 33)

    ints = [0, 1, -1, 2**62, -(2**63)]
    assert hash_series(pl.Series(ints)).to_list() == [fmix64(i & ((1 << 64) - 1)) for i in ints]
    # Every integer width hashes by value, floats by their bits with -0.0 and NaNs unified.
    assert hash_series(pl.Series([1, 2], dtype=pl.Int8)).to_list() == [fmix64(1), fmix64(2)]
    assert hash_series(pl.Series([1], dtype=pl.UInt16)).to_list() == [fmix64(1)]
    floats = hash_series(pl.Series([0.0, -0.0, 1.5, float("nan"), -float("nan")])).to_list()
    assert floats[:3] == [fmix64(0), fmix64(0), fmix64(0x3FF8000000000000)]
    assert floats[3] == floats[4] == fmix64(0x7FF8000000000000)
    assert hash_series(pl.Series([1.5], dtype=pl.Float32)).to_list() == [floats[2]]
    assert hash_series(pl.Series([date(2013, 1, 2)])).to_list() == [fmix64(15707)]
    assert (
        hash_series(pl.Series(["x"], dtype=pl.Categorical)).to_list()
        == hash_series(pl.Series(["x"])).to_list()
    )
    # The pinned numbers themselves, so that a change of library or platform shows up.
    assert hash_series(pl.Series(["a", "héllo"])).to_list() == [
        16629034431890738719,
        7657728615535385375,
    ]
    assert hash_series(pl.Series([1, -1])).to_list() == [2717770620714153248, 4383717382385014336]
    assert hash_series(pl.Series([timedelta(days=9)])).to_list() == [fmix64(9 * 86_400_000_000)]


def test_sketch_registers_are_pinned() -> None:
    # The whole sketch (hash, register index, rank) of a known column, as a digest.
    from loopml.core.hashing import digest_bytes

    p = profile(pl.DataFrame({"i": list(range(20_000)), "s": [f"v{i}" for i in range(20_000)]}))
    assert p.hash_id == "xxh3_64-utf8+murmur3-fmix64-u64/1"
    sketches = {name: digest_bytes((p[name].hll or "").encode()) for name in ("i", "s")}
    assert sketches == {
        "i": "b3:f07879a6948b44bff63c8d8eda14d9314a87dd6ec3525483c73e087e48455aa3",
        "s": "b3:27fb8fd949db8b0028d5eadd2936f6686a4ef5ca24e1a60c40dcd672128642fc",
    }


def test_merging_sketches_of_another_hash_is_refused() -> None:
    from dataclasses import replace

    a = profile(pl.DataFrame({"x": [1.0, 2.0]}))
    old = replace(profile(pl.DataFrame({"x": [3.0]})), hash_id="polars-1.9.0-seed0")
    with pytest.raises(InvalidInputError, match=r"different hashes.*recompute"):
        merge_profiles(a, old)
    # Profiles without sketches do not depend on the hash and still merge.
    cats = profile(pl.DataFrame({"c": ["a"]}))
    merged = merge_profiles(cats, replace(cats, hash_id="polars-1.9.0-seed0"))
    assert merged["c"].count == 2


def test_sketch_treats_signed_zeros_and_nans_alike() -> None:
    # The float fast path (no NaN, no zero) and the unifying path hash alike.
    from loopml.data import stable_hash

    rng = np.random.default_rng(3)
    values = pl.Series(rng.normal(size=5000))
    lf = pl.LazyFrame({"v": stable_hash.prepare(values)})
    fast = stable_hash.hash_frame(lf, "v", pl.Float64, special_floats=False).collect()["h"]
    assert fast.equals(stable_hash.hash_frame(lf, "v", pl.Float64).collect()["h"])
    base = list(rng.normal(size=5000))
    a = profile(pl.DataFrame({"x": [*base, 0.0, float("nan")]}))["x"].hll
    b = profile(pl.DataFrame({"x": [*base, -0.0, -float("nan")]}))["x"].hll
    assert a is not None and a == b


def test_profile_without_distinct_counts_is_otherwise_identical(flights: pl.DataFrame) -> None:
    # Monitoring profiles served traffic without distinct counts (their costliest part):
    # everything drift, quality and latency read must be what the full profile holds.
    part = flights.head(50_000).with_columns(
        late=pl.col("arr_delay") > 0, when=pl.datetime(2013, pl.col("month"), pl.col("day"))
    )
    full, light = profile(part), profile(part, distinct=False)
    assert light.num_rows == full.num_rows and list(light.columns) == list(full.columns)
    for name, f in full.columns.items():
        c = light[name]
        assert (c.dtype, c.kind, c.count, c.null_count) == (f.dtype, f.kind, f.count, f.null_count)
        assert c.numeric == f.numeric and c.frequencies == f.frequencies, name
        assert c.lengths == f.lengths and c.temporal == f.temporal, name
        assert c.hll is None
        if f.kind == "categorical" and f.frequencies is not None and f.frequencies.complete:
            assert (c.distinct, c.distinct_exact) == (f.distinct, True), name
        elif f.kind in ("numeric", "temporal"):
            assert c.distinct is None and f.distinct is not None, name
    numeric = [c for c in full.columns.values() if c.kind == "numeric"]
    assert numeric and all(c.hll is not None for c in numeric)  # the full one sketched them
    # Two light profiles still merge into the light profile of the union.
    a, b = part.head(20_000), part.tail(30_000)
    merged = merge_profiles(profile(a, distinct=False), profile(b, distinct=False))
    assert merged.columns["distance"].numeric == light.columns["distance"].numeric
