"""A 64-bit hash of column values that is the same on every platform and every release.

Distinct-count sketches are merged long after they were made, so the hash they were built
with must never change: Polars' own ``Expr.hash`` only promises stability within one
Polars version. Text and other variable-length values are hashed with XXH3-64 (seed 0,
through the ``polars-hash`` plugin) over their UTF-8 bytes; fixed-width values are mapped
to a canonical unsigned 64-bit integer (two's complement for integers, the physical
integer for dates, times and durations, IEEE-754 bits for floats with -0.0 and every NaN
made one value), xor-ed with a fixed constant and mixed with MurmurHash3's 64-bit
finaliser, a bijection, so distinct values never collide. Both are published, fixed
algorithms; ``HASH_ID`` names them in every profile, and tests pin the hashes of known
values.
"""

from __future__ import annotations

from typing import Any, cast

import polars as pl
import polars_hash  # noqa: F401  (registers the ``nchash`` expression namespace)
import pyarrow as pa

HASH_ID = "xxh3_64-utf8+murmur3-fmix64-u64/1"

_FMIX_1 = 0xFF51AFD7ED558CCD
_FMIX_2 = 0xC4CEB9FE1A85EC53
_SEED = 0x9E3779B97F4A7C15  # xor-ed in first: the finaliser alone maps 0 to 0
_SHIFT = 1 << 33  # floor division of a UInt64 by 2**33 is a logical right shift by 33


def canonical(series: pl.Series) -> pl.Series:
    """The series in the form ``hash_expr`` hashes: floats become their IEEE-754 bits
    (UInt64, -0.0 as 0.0, one NaN), categoricals become text, the rest is unchanged."""
    dtype = series.dtype
    if dtype.is_float():
        s = series.cast(pl.Float64)
        s = pl.select(
            pl.when(s.is_nan()).then(float("nan")).when(s == 0.0).then(0.0).otherwise(s)
        ).to_series()
        # A zero-copy reinterpretation of the float64 buffer (nulls keep their bitmap).
        bits = s.to_arrow().view(pa.uint64())
        return pl.Series(series.name, bits)
    if dtype == pl.Categorical or dtype == pl.Enum:
        return series.cast(pl.String)
    return series


def hash_expr(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The UInt64 hash of each value of ``col``, a column of ``canonical``'s output with
    dtype ``dtype``. Run it in a lazy query: the mixing steps reuse one subexpression."""
    if dtype == pl.String or dtype == pl.Binary:
        return _xxh3_64(col)
    if dtype == pl.Decimal or dtype == pl.Int128 or dtype == pl.UInt128:
        # Wider than 64 bits: their exact decimal text is the canonical form.
        return _xxh3_64(col.cast(pl.String))
    if dtype.is_temporal():
        return _fmix64(col.to_physical().cast(pl.Int64).reinterpret(signed=False))
    if dtype == pl.Boolean:
        return _fmix64(col.cast(pl.UInt64))
    if dtype.is_unsigned_integer():
        return _fmix64(col.cast(pl.UInt64))
    if dtype.is_integer():
        return _fmix64(col.cast(pl.Int64).reinterpret(signed=False))
    raise TypeError(f"no stable hash for {dtype} values")


def _xxh3_64(col: pl.Expr) -> pl.Expr:
    # polars_hash registers the ``nchash`` namespace on every Polars expression.
    hashed: pl.Expr = cast(Any, col).nchash.xxh3_64()
    return hashed


def _fmix64(h: pl.Expr) -> pl.Expr:
    # UInt64 multiplication wraps modulo 2**64 in Polars, as the finaliser needs.
    h = h ^ pl.lit(_SEED, dtype=pl.UInt64)
    h = h ^ (h // _SHIFT)
    h = h * pl.lit(_FMIX_1, dtype=pl.UInt64)
    h = h ^ (h // _SHIFT)
    h = h * pl.lit(_FMIX_2, dtype=pl.UInt64)
    return h ^ (h // _SHIFT)


def hash_series(series: pl.Series) -> pl.Series:
    """The stable hash of every value of ``series`` (nulls stay null)."""
    values = canonical(series).alias("v")
    return (
        pl.LazyFrame({"v": values})
        .select(hash_expr(pl.col("v"), values.dtype).alias(series.name))
        .collect()
        .to_series()
    )
