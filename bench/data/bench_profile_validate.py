"""Profile + validate 10M x 20 vs Polars describe(); validation vs pandera's polars backend.

Run: python bench/data/bench_profile_validate.py [rows]
"""

from __future__ import annotations

import sys

import numpy as np
import polars as pl
from _common import machine, row, timed

from loopml.data.profile import profile
from loopml.data.schema import infer_schema
from loopml.data.validate import validate


def make(rows: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    cols: dict[str, object] = {}
    for i in range(12):
        cols[f"f{i}"] = rng.normal(i, 1 + i, rows)
    for i in range(4):
        cols[f"i{i}"] = rng.integers(0, 1000 * (i + 1), rows)
    for i in range(4):
        cols[f"s{i}"] = pl.Series(rng.choice([f"c{j}" for j in range(5 + 10 * i)], rows))
    return pl.DataFrame(cols)


def pandera_schema(df: pl.DataFrame, schema: object) -> object:
    import pandera.polars as pa

    columns = {}
    for c in schema.columns:  # type: ignore[attr-defined]
        checks = []
        if c.min is not None:
            checks.append(pa.Check.in_range(c.min, c.max))
        if c.domain is not None:
            checks.append(pa.Check.isin(list(c.domain)))
        columns[c.name] = pa.Column(df.schema[c.name], checks=checks, nullable=c.nullable)
    return pa.DataFrameSchema(columns, strict=True)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    df = make(rows)
    print(f"{rows:,} rows x {df.width} columns on {machine()}")
    t_describe, _ = timed(lambda: df.describe(), repeat=2)
    t_profile, prof = timed(lambda: profile(df), repeat=2)
    schema = infer_schema(prof)
    t_validate, report = timed(lambda: validate(df, schema), repeat=3)
    assert report.ok, report.anomalies
    pa_schema = pandera_schema(df, schema)
    t_pandera, _ = timed(lambda: pa_schema.validate(df, lazy=True), repeat=3)  # type: ignore[attr-defined]
    both = t_profile + t_validate
    print()
    row("what", "seconds", "ratio")
    row("---", "---:", "---")
    row("polars describe()", f"{t_describe:.2f}", "")
    row("loopml profile", f"{t_profile:.2f}", "")
    row("loopml validate", f"{t_validate:.2f}", "")
    row(
        "loopml profile + validate",
        f"{both:.2f}",
        f"{t_describe / both:.2f}x faster than describe()",
    )
    row(
        "pandera polars validate",
        f"{t_pandera:.2f}",
        f"loopml {t_pandera / t_validate:.2f}x faster",
    )


if __name__ == "__main__":
    main()
