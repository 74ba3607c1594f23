"""Why loopml's distinct-count sketch is its own: Apache DataSketches vs loopml's HLL.

Run: python bench/data/bench_distinct.py   (needs `pip install datasketches`)

DataSketches' Python binding updates one value per call, so a column costs a Python loop;
loopml hashes and buckets the whole column in Polars. Both use 2**12 registers.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from loopml.data import hll, stable_hash


def main() -> None:
    import datasketches

    n = 10_000_000
    values = np.random.default_rng(0).integers(0, n // 2, n)
    truth = len(np.unique(values))

    start = time.perf_counter()
    sketch = datasketches.hll_sketch(hll.P)
    for v in values.tolist():
        sketch.update(v)
    t_ds, est_ds = time.perf_counter() - start, sketch.get_estimate()

    start = time.perf_counter()
    hashed = stable_hash.hash_frame(pl.LazyFrame({"x": values}), "x", pl.Int64)
    codes = hashed.select(hll.code_expr(pl.col("h"))).collect().to_series()
    est_lm = hll.estimate(hll.registers_from_codes(codes.to_numpy()))
    t_lm = time.perf_counter() - start

    print(f"{n:,} int64 values, {truth:,} distinct")
    print("| sketch | seconds | estimate | error |")
    print("|---|---:|---:|---:|")
    for name, t, est in (("DataSketches hll_sketch", t_ds, est_ds), ("loopml hll", t_lm, est_lm)):
        print(f"| {name} | {t:.2f} | {est:,.0f} | {abs(est - truth) / truth:.2%} |")
    print(f"loopml is {t_ds / t_lm:.1f}x faster")


if __name__ == "__main__":
    main()
