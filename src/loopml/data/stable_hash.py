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
_SHIFT = 1 << 33
_SIGN = 1 << 63  # the bits of -0.0
_EXPONENT = 0x7FF0000000000000
_MANTISSA = 0x000FFFFFFFFFFFFF
_QUIET_NAN = (
    0x7FF8000000000000  # floor division of a UInt64 by 2**33 is a logical right shift by 33
)


def prepare(series: pl.Series) -> pl.Series:
    """The series as ``hash_frame`` takes it: floats as their IEEE-754 bits (a zero-copy
    UInt64 view; Float32 widened first), everything else unchanged."""
    if not series.dtype.is_float():
        return series
    bits = series.cast(pl.Float64).to_arrow().view(pa.uint64())  # nulls keep their bitmap
    return pl.Series(series.name, bits)


def hash_frame(lf: pl.LazyFrame, column: str, dtype: pl.DataType) -> pl.LazyFrame:
    """A frame of one UInt64 column ``h``: the hash of each value of ``column``, which
    holds ``prepare``'s output for values of type ``dtype``. The mixing steps are chained
    one per ``with_columns``, so each runs once over the column."""
    col = pl.col(column)
    if dtype == pl.String or dtype == pl.Binary:
        return lf.select(_xxh3_64(col).alias("h"))
    if dtype == pl.Categorical or dtype == pl.Enum:
        return lf.select(_xxh3_64(col.cast(pl.String)).alias("h"))
    if dtype == pl.Decimal or dtype == pl.Int128 or dtype == pl.UInt128:
        # Wider than 64 bits: their exact decimal text is the canonical form.
        return lf.select(_xxh3_64(col.cast(pl.String)).alias("h"))
    if dtype.is_float():
        # -0.0 hashes as 0.0 and every NaN as the one quiet NaN.
        nan = ((col & _EXPONENT) == _EXPONENT) & ((col & _MANTISSA) != 0)
        bits = (
            pl.when(col == _SIGN)
            .then(pl.lit(0, dtype=pl.UInt64))
            .when(nan)
            .then(pl.lit(_QUIET_NAN, dtype=pl.UInt64))
            .otherwise(col)
        )
    elif dtype.is_temporal():
        bits = col.to_physical().cast(pl.Int64).reinterpret(signed=False)
    elif dtype == pl.Boolean or dtype.is_unsigned_integer():
        bits = col.cast(pl.UInt64)
    elif dtype.is_integer():
        bits = col.cast(pl.Int64).reinterpret(signed=False)
    else:
        raise TypeError(f"no stable hash for {dtype} values")
    lf = lf.select(bits.alias("h"))
    # MurmurHash3's fmix64 after a fixed xor; UInt64 multiplication wraps modulo 2**64
    # in Polars, as the finaliser needs.
    h = pl.col("h")
    for step in (
        h ^ pl.lit(_SEED, dtype=pl.UInt64),
        h ^ (h // _SHIFT),
        h * pl.lit(_FMIX_1, dtype=pl.UInt64),
        h ^ (h // _SHIFT),
        h * pl.lit(_FMIX_2, dtype=pl.UInt64),
        h ^ (h // _SHIFT),
    ):
        lf = lf.with_columns(step.alias("h"))
    return lf


def _xxh3_64(col: pl.Expr) -> pl.Expr:
    # polars_hash registers the ``nchash`` namespace on every Polars expression.
    hashed: pl.Expr = cast(Any, col).nchash.xxh3_64()
    return hashed


def hash_series(series: pl.Series) -> pl.Series:
    """The stable hash of every value of ``series`` (nulls stay null)."""
    values = prepare(series).alias("v")
    frame = hash_frame(pl.LazyFrame({"v": values}), "v", series.dtype).collect()
    return frame.to_series().alias(series.name)
