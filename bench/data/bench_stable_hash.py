"""The sketch's stable hash vs Polars' own hash, and what it costs a whole profile.

Run: python bench/data/bench_stable_hash.py [rows]

Distinct-count sketches used ``Expr.hash``, whose values may change with any Polars
release; they now use XXH3-64 for text (polars-hash) and MurmurHash3's fmix64 for 64-bit
values. Part 1 times the HyperLogLog codes of one column both ways (hash + register index
+ rank, as ``hll.code_expr`` computes them); part 2 profiles the 20-column table of
bench_profile_validate.py with the stable hash, and with ``Expr.hash`` put back in its
place, in the same process (the only difference between the two).
"""

from __future__ import annotations

import sys
from unittest import mock

import numpy as np
import polars as pl
from _common import machine, row, timed
from bench_profile_validate import make

from loopml.data import hll, stable_hash
from loopml.data.profile import profile


def _polars_hash(lf: pl.LazyFrame, column: str, dtype: pl.DataType) -> pl.LazyFrame:
    return lf.select(pl.col(column).hash(seed=0).alias("h"))


def _codes(values: pl.Series, hasher: object) -> np.ndarray:
    prepared = stable_hash.prepare(values) if hasher is stable_hash.hash_frame else values
    hashed = hasher(pl.LazyFrame({"v": prepared}), "v", values.dtype)  # type: ignore[operator]
    return hashed.select(hll.code_expr(pl.col("h"))).collect().to_series().to_numpy()


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    rng = np.random.default_rng(0)
    columns = {
        "int64": pl.Series(rng.integers(0, rows // 2, rows)),
        "float64": pl.Series(rng.normal(0, 1, rows)),
        "string": pl.Series(rng.integers(0, rows // 2, rows // 5)).cast(pl.String),
    }
    print(f"{rows:,} rows on {machine()}\n")
    row("HLL codes of one column", "Polars hash (s)", "stable hash (s)", "ratio")
    row("---", "---:", "---:", "---:")
    for name, values in columns.items():
        t_polars, _ = timed(lambda v=values: _codes(v, _polars_hash), repeat=3)
        t_stable, _ = timed(lambda v=values: _codes(v, stable_hash.hash_frame), repeat=3)
        row(
            f"{name} ({values.len():,})",
            f"{t_polars:.3f}",
            f"{t_stable:.3f}",
            f"{t_stable / t_polars:.2f}x",
        )

    df = make(rows // 4)
    t_stable = t_polars = float("inf")
    for _ in range(3):  # alternated, so that a change in machine load hits both alike
        t_stable = min(t_stable, timed(lambda: profile(df))[0])
        with (
            mock.patch.object(stable_hash, "hash_frame", _polars_hash),
            mock.patch.object(stable_hash, "prepare", lambda s: s),
        ):
            t_polars = min(t_polars, timed(lambda: profile(df))[0])
    print()
    row(f"profile {df.height:,} x {df.width}", "Polars hash (s)", "stable hash (s)", "ratio")
    row("---", "---:", "---:", "---:")
    row("whole profile", f"{t_polars:.2f}", f"{t_stable:.2f}", f"{t_stable / t_polars:.2f}x")


if __name__ == "__main__":
    main()
